"""The registries of configurable components, one per YAML section that names components.

Each component registers itself next to its code (``OPTIMIZERS.register("lion", Lion)`` in
``optim/lion.py``); importing a package registers its components, and :func:`load_components`
imports them all. ``context`` names what the builder supplies rather than the YAML: the
parameter groups for an optimizer, the trained batch size for an algorithm, and so on.
"""

from __future__ import annotations

from efficient_bert.registry import Registry

MODELS = Registry("model", context=("tokenizer", "max_seq_len"))
OPTIMIZERS = Registry("optimizer", context=("params",))  # params: efficient_bert.optim.param_groups(model)
SCHEDULERS = Registry("scheduler")
ALGORITHMS = Registry("algorithm", context=("train_batch_size",))  # the global batch a step trains on
CALLBACKS = Registry("callback", context=("save_folder",))  # the run's local record folder
LOGGERS = Registry("logger", context=("run_name",))


def load_components() -> None:
    """Import every package whose modules register components."""
    import efficient_bert.algorithms  # noqa: F401
    import efficient_bert.budget  # noqa: F401
    import efficient_bert.callbacks  # noqa: F401
    import efficient_bert.model.hf_bert  # noqa: F401
    import efficient_bert.model.mosaic_bert.factory  # noqa: F401
    import efficient_bert.optim  # noqa: F401
