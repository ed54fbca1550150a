"""Efficient-training methods as Composer algorithms, each with its functional form.

Each method has its own folder (``layer_stacking/``, ``layer_drop/``, ``selective_backprop/``,
``rho_loss/``, ``sophia_hessian/``, ``batch_size_warmup/``): the functional form, the ``Algorithm``,
and a README with the paper, the exact schedule and a plain ``composer.Trainer`` example. None
depends on this library's YAML layer. Shared pieces: :mod:`.batch_selection` (per-row losses and
row subsets of MLM batches) and :mod:`.dynamic_depth` (the base of stacking and layer drop). The
names below import on first use.
"""

from efficient_bert.lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(("BatchSizeWarmup", "apply_batch_size_warmup", "warmup_rows", "warmup_sizes"),
                    "efficient_bert.algorithms.batch_size_warmup.batch_size_warmup"),
    **dict.fromkeys(("LayerDrop", "apply_layer_drop", "keep_probability", "layer_keep_probabilities"),
                    "efficient_bert.algorithms.layer_drop.layer_drop"),
    **dict.fromkeys(("LayerStacking", "apply_layer_stacking", "stacking_depths"),
                    "efficient_bert.algorithms.layer_stacking.layer_stacking"),
    **dict.fromkeys(("IrreducibleLosses", "RHOLoss", "apply_rho_loss", "extract_irreducible_losses"),
                    "efficient_bert.algorithms.rho_loss.rho_loss"),
    **dict.fromkeys(("SelectiveBackprop", "apply_selective_backprop", "selection_probabilities"),
                    "efficient_bert.algorithms.selective_backprop.selective_backprop"),
    **dict.fromkeys(("SophiaHessian", "apply_sophia_hessian"), "efficient_bert.algorithms.sophia_hessian.sophia_hessian"),
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
