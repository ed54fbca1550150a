"""Batch-size warmup: train on a growing part of each batch early in the run.

The method's README (paper, schedule, example) is beside this file."""

from efficient_bert.algorithms.batch_size_warmup.batch_size_warmup import (BatchSizeWarmup, apply_batch_size_warmup,
                                                                           warmup_rows, warmup_sizes)

__all__ = ["BatchSizeWarmup", "apply_batch_size_warmup", "warmup_rows", "warmup_sizes"]
