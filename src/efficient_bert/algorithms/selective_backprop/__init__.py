"""Selective backprop (Jiang et al. 2019) for masked-language modelling, as a Composer algorithm.

The method's README (paper, schedule, example) is beside this file."""

from efficient_bert.algorithms.selective_backprop.selective_backprop import (SelectiveBackprop,
                                                                             apply_selective_backprop, draw_selected,
                                                                             loss_percentiles, selection_probabilities)

__all__ = ["SelectiveBackprop", "apply_selective_backprop", "draw_selected", "loss_percentiles",
           "selection_probabilities"]
