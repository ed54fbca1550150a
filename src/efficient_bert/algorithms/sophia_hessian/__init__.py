"""Sophia-G's Hessian estimate (Liu et al. 2023) as a Composer algorithm, for a SophiaG optimizer.

The method's README (paper, schedule, example) is beside this file."""

from efficient_bert.algorithms.sophia_hessian.sophia_hessian import (SophiaHessian, apply_sophia_hessian,
                                                                     sampled_label_loss)

__all__ = ["SophiaHessian", "apply_sophia_hessian", "sampled_label_loss"]
