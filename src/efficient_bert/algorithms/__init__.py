"""Efficient-training methods as Composer algorithms, each with its functional form.

Each method has its own folder (``layer_stacking/``, ``layer_drop/``, ``selective_backprop/``,
``rho_loss/``, ``sophia_hessian/``, ``batch_size_warmup/``): the functional form, the ``Algorithm``,
and a README with the paper, the exact schedule and a plain ``composer.Trainer`` example. None
depends on this library's YAML layer. Shared pieces: :mod:`.batch_selection` (per-row losses and
row subsets of MLM batches) and :mod:`.dynamic_depth` (the base of stacking and layer drop).
"""

from composer.algorithms import GradientClipping

from efficient_bert.algorithms.batch_size_warmup import BatchSizeWarmup, apply_batch_size_warmup, warmup_rows
from efficient_bert.algorithms.layer_drop import (LayerDrop, apply_layer_drop, keep_probability,
                                                  layer_keep_probabilities)
from efficient_bert.algorithms.layer_stacking import LayerStacking, apply_layer_stacking, stacking_depths
from efficient_bert.algorithms.rho_loss import (IrreducibleLosses, RHOLoss, apply_rho_loss,
                                                extract_irreducible_losses)
from efficient_bert.algorithms.selective_backprop import (SelectiveBackprop, apply_selective_backprop,
                                                          selection_probabilities)
from efficient_bert.algorithms.sophia_hessian import SophiaHessian, apply_sophia_hessian
from efficient_bert.registries import ALGORITHMS

ALGORITHMS.register("gradient_clipping", GradientClipping)  # Composer's

__all__ = ["BatchSizeWarmup", "IrreducibleLosses", "LayerDrop", "LayerStacking", "RHOLoss", "SelectiveBackprop",
           "SophiaHessian", "apply_batch_size_warmup", "apply_layer_drop", "apply_layer_stacking", "apply_rho_loss",
           "apply_selective_backprop", "apply_sophia_hessian", "extract_irreducible_losses", "keep_probability",
           "layer_keep_probabilities", "selection_probabilities", "stacking_depths", "warmup_rows"]
