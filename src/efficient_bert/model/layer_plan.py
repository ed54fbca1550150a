"""Which encoder layers run: the state that layer stacking and layer dropping share.

Dynamic-depth methods never add or remove parameters: the model keeps all its layers (so DDP,
FSDP, optimizers and checkpoints see one fixed parameter set), and a :class:`LayerPlan` attached
to the model chooses, for each forward pass, the layers that run:

- ``depth``: only the first ``depth`` layers exist for now (progressive stacking grows it);
- ``dropped``: layers skipped in the current training step (progressive layer dropping); a
  skipped layer is the identity. Evaluation never drops.

The plan swaps the encoder's ``nn.ModuleList`` for the running layers while the hooked module's
forward runs and puts it back afterwards (even when the forward raises), so state dicts,
parameter names and checkpoints always hold every layer.
"""

from __future__ import annotations

import contextlib
from typing import Iterable, Iterator, Optional

from torch import nn

# Where the transformer layers live, relative to a ComposerModel or the HF module itself
LAYER_PATHS = ("bert.layers", "bert.encoder.layer", "roberta.encoder.layer", "encoder.layer", "layers",
               "model.layers")  # the last: ModernBERT (ours and transformers')
_PLAN_ATTRIBUTE = "_efficient_bert_layer_plan"


def _unwrap(model: nn.Module) -> nn.Module:
    """The module under DDP/FSDP wrappers (``.module``); Composer applies algorithms before wrapping."""
    while isinstance(getattr(model, "module", None), nn.Module):
        model = model.module
    return model


def find_encoder_layers(model: nn.Module, path: Optional[str] = None) -> tuple[nn.Module, nn.Module, str]:
    """``(root, owner, attribute)``: the ``nn.ModuleList`` of ``model``'s transformer layers is
    ``owner.<attribute>``, and ``root`` is the module whose forward runs them.

    ``path`` (dotted, e.g. ``bert.encoder.layer``) names the list for models the known paths miss.
    The known paths are tried under ``model`` and then under ``model.model``: a ComposerModel's
    wrapped module, which is the root then, because Composer's ``eval_forward`` calls the wrapper's
    ``forward`` directly while the wrapped module is always called (and its hooks always run).
    """
    model = _unwrap(model)
    roots = [model] + ([model.model] if isinstance(getattr(model, "model", None), nn.Module) else [])
    for root in roots:
        for candidate in [path] if path else LAYER_PATHS:
            owner_path, _, attr = candidate.rpartition(".")
            try:
                owner = root.get_submodule(owner_path) if owner_path else root
            except AttributeError:
                continue
            if isinstance(owner._modules.get(attr), nn.ModuleList):
                return root, owner, attr
    raise ValueError(f"{type(model).__name__} has no encoder layer list at {path or ' / '.join(LAYER_PATHS)}; "
                     "pass the dotted path of its nn.ModuleList of transformer layers as layers_path")


class LayerPlan:
    """The running subset of a model's encoder layers; see the module docstring."""

    def __init__(self, owner: nn.Module, attribute: str):
        self.owner, self.attribute = owner, attribute
        self.layers: nn.ModuleList = owner._modules[attribute]
        self.depth = len(self.layers)
        self.dropped: frozenset[int] = frozenset()
        self._cache: dict[tuple[int, ...], nn.ModuleList] = {}

    @property
    def total(self) -> int:
        return len(self.layers)

    def set_depth(self, depth: int) -> None:
        if not 1 <= depth <= self.total:
            raise ValueError(f"depth must be in [1, {self.total}], got {depth}")
        self.depth = depth

    def running(self, training: bool) -> list[int]:
        """Indices of the layers a forward pass runs (in training, less this step's dropped ones)."""
        kept = range(self.depth)
        return [i for i in kept if i not in self.dropped] if training else list(kept)

    @contextlib.contextmanager
    def applied(self, training: bool) -> Iterator[None]:
        """Within the block, the encoder's layer list holds only the running layers."""
        indices = tuple(self.running(training))
        if len(indices) == self.total:
            yield
            return
        if indices not in self._cache:
            self._cache[indices] = nn.ModuleList([self.layers[i] for i in indices])
        self.owner._modules[self.attribute] = self._cache[indices]
        try:
            yield
        finally:
            self.owner._modules[self.attribute] = self.layers


def attach_layer_plan(model: nn.Module, layers_path: Optional[str] = None) -> LayerPlan:
    """The plan attached to ``model``: the one already there, or a new one attached with its forward hooks."""
    existing = find_layer_plan(model)
    if existing is not None:
        return existing
    model, owner, attribute = find_encoder_layers(model, layers_path)
    plan = LayerPlan(owner, attribute)
    active: list[contextlib.AbstractContextManager] = []

    def before(module: nn.Module, args: tuple) -> None:
        context = plan.applied(module.training)
        context.__enter__()
        active.append(context)

    def after(module: nn.Module, args: tuple, output: object) -> None:
        if active:
            active.pop().__exit__(None, None, None)

    model.register_forward_pre_hook(before)
    model.register_forward_hook(after, always_call=True)  # restores the full list even on an exception
    object.__setattr__(model, _PLAN_ATTRIBUTE, plan)  # a plain attribute, not a submodule
    return plan


def find_layer_plan(model: nn.Module) -> Optional[LayerPlan]:
    """The plan of ``model`` or of any module inside it, if a dynamic-depth method attached one."""
    for module in _unwrap(model).modules():
        plan = module.__dict__.get(_PLAN_ATTRIBUTE)
        if plan is not None:
            return plan
    return None


def running_layer_count(model: nn.Module, training: Optional[bool] = None) -> Optional[int]:
    """How many encoder layers a forward pass runs now, or None when no plan is attached."""
    plan = find_layer_plan(model)
    if plan is None:
        return None
    return len(plan.running(_unwrap(model).training if training is None else training))


@contextlib.contextmanager
def truncated_to_depth(model: nn.Module, configs: Iterable[object] = ()) -> Iterator[None]:
    """Within the block, ``model`` holds only its first ``depth`` layers and each config in
    ``configs`` says so (``num_hidden_layers``): what an export of a partly stacked model saves."""
    plan = find_layer_plan(model)
    if plan is None or plan.depth == plan.total:
        yield
        return
    configs = list(configs)
    saved = []
    for c in configs:
        fields = depth_fields(vars(c), plan.depth)
        saved.append({k: getattr(c, k) for k in fields})
        for k, v in fields.items():
            setattr(c, k, v)
    try:
        with plan.applied(training=False):
            yield
    finally:
        for c, fields in zip(configs, saved):
            for k, v in fields.items():
                setattr(c, k, v)


def depth_fields(config: dict, depth: int) -> dict:
    """The config entries that say a model has ``depth`` layers: ``num_hidden_layers``, and the
    per-layer ``layer_types`` list where there is one (ModernBERT's global/local pattern)."""
    fields: dict = {"num_hidden_layers": depth}
    if isinstance(config.get("layer_types"), list):
        fields["layer_types"] = config["layer_types"][:depth]
    return fields
