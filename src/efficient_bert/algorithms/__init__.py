"""Efficient-training methods as Composer algorithms, each with its functional form.

Every algorithm here works in any Composer Trainer (``algorithms=[LayerStacking()]``) and does
not depend on this library's YAML layer.
"""

from efficient_bert.algorithms.batch_size_warmup import BatchSizeWarmup, apply_batch_size_warmup, warmup_rows
from efficient_bert.algorithms.layer_drop import (LayerDrop, apply_layer_drop, keep_probability,
                                                  layer_keep_probabilities)
from efficient_bert.algorithms.layer_stacking import LayerStacking, apply_layer_stacking, stacking_depths
from efficient_bert.algorithms.rho_loss import (IrreducibleLosses, RHOLoss, apply_rho_loss,
                                                extract_irreducible_losses)
from efficient_bert.algorithms.selective_backprop import (SelectiveBackprop, apply_selective_backprop,
                                                          selection_probabilities)
from efficient_bert.algorithms.sophia_hessian import SophiaHessian, apply_sophia_hessian

__all__ = ["BatchSizeWarmup", "IrreducibleLosses", "LayerDrop", "LayerStacking", "RHOLoss", "SelectiveBackprop",
           "SophiaHessian", "apply_batch_size_warmup", "apply_layer_drop", "apply_layer_stacking", "apply_rho_loss",
           "apply_selective_backprop", "apply_sophia_hessian", "extract_irreducible_losses", "keep_probability",
           "layer_keep_probabilities", "selection_probabilities", "stacking_depths", "warmup_rows"]
