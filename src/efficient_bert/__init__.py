"""efficient-bert: fast, budget-aware pretraining of BERT-style encoders on MosaicML Composer.

The public API, as ``composer`` exposes its own: models, algorithms, optimizers, the budget, the
callbacks and the data pieces. Each name imports its module on first use, so ``import
efficient_bert`` (and the ``efficient-bert`` command's ``--help``) stays light; importing the package
also registers Mosaic BERT with transformers' Auto classes (:mod:`efficient_bert.model.auto_classes`).
"""

from efficient_bert.model import auto_classes
from efficient_bert.lazy import lazy_exports

__version__ = "0.1.0"

_MODULES = {
    "efficient_bert.model": ["ComposerMLM", "MosaicBertConfig", "MosaicBertForMaskedLM",
                             "MosaicBertForSequenceClassification", "MosaicBertModel", "build_hf_bert",
                             "build_mosaic_bert", "export_hf", "load_pretrained"],
    "efficient_bert.algorithms": ["BatchSizeWarmup", "IrreducibleLosses", "LayerDrop", "LayerStacking", "RHOLoss",
                                  "SelectiveBackprop", "SophiaHessian", "apply_batch_size_warmup", "apply_layer_drop",
                                  "apply_layer_stacking", "apply_rho_loss", "apply_selective_backprop",
                                  "apply_sophia_hessian", "extract_irreducible_losses"],
    "efficient_bert.optim": ["Lamb", "Lion", "SophiaG", "decoupled_adamw", "param_groups"],
    "efficient_bert.budget": ["BudgetEarlyStop", "BudgetEvalInterval", "BudgetSchedule", "EvalInterval",
                              "TimeMarkerExport", "TrainingBudget", "extra_forward", "find_budget", "run_progress"],
    "efficient_bert.callbacks": ["CheckpointOnSignal", "ConsoleLog", "EvalHistory", "HFExport", "MetricsFile",
                                 "NaNGuard", "ReplicaCheck"],
    "efficient_bert.data": ["MLMCollator", "StreamingTextDataset", "build_mlm_dataloader", "load_tokenizer",
                            "train_wordpiece"],
}
_EXPORTS = {name: module for module, names in _MODULES.items() for name in names}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)

auto_classes.install()
