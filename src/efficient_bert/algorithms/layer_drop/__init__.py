"""Progressive layer dropping (Zhang & He 2020) as a Composer algorithm.

The method's README (paper, schedule, example) is beside this file."""

from efficient_bert.algorithms.layer_drop.layer_drop import (
    keep_probability, layer_keep_probabilities, apply_layer_drop, LayerDrop,
)

__all__ = ["LayerDrop", "apply_layer_drop", "keep_probability", "layer_keep_probabilities"]
