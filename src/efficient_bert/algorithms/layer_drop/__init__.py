"""Progressive layer dropping (Zhang & He 2020) as a Composer algorithm.

The method's README (paper, schedule, example) is beside this file."""

from efficient_bert.algorithms.layer_drop.layer_drop import (LayerDrop, apply_layer_drop, keep_probability,
                                                             layer_keep_probabilities)

__all__ = ["LayerDrop", "apply_layer_drop", "keep_probability", "layer_keep_probabilities"]
