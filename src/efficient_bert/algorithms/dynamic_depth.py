"""What layer stacking and layer drop share: they change which encoder layers a step runs.

Both act through the model's layer plan (:func:`efficient_bert.model.layer_plan.attach_layer_plan`),
attached when training starts; both leave some parameters without a gradient in a step (so DDP must
look for unused parameters) and without optimizer state until they first train.

Composer saves and loads optimizers through ``torch.distributed.checkpoint``, which refuses to load
a checkpoint that lacks state for a trainable parameter. Before each checkpoint,
:func:`fill_missing_optimizer_state` gives such parameters the state a zero-gradient step at zero
learning rate creates (zero moments for Adam-like methods): the parameters do not move, and a
stacked layer's state is cleared again when it joins (``optimizer_state="fresh"``).
"""

from __future__ import annotations

from typing import Iterable, Optional

import torch
from composer.core import Algorithm, Event, State
from composer.loggers import Logger

from efficient_bert.model.layer_plan import LayerPlan, attach_layer_plan


# the events at which Composer's CheckpointSaver may write (algorithms run before callbacks)
CHECKPOINT_EVENTS = (Event.BATCH_CHECKPOINT, Event.EPOCH_CHECKPOINT, Event.ITERATION_CHECKPOINT, Event.FIT_END)


@torch.no_grad()
def fill_missing_optimizer_state(optimizers: Iterable[torch.optim.Optimizer]) -> int:
    """Create state for every trainable parameter that has none; returns how many got one."""
    filled = 0
    for optimizer in optimizers:
        missing = [p for g in optimizer.param_groups for p in g["params"] if p.requires_grad and p not in optimizer.state]
        if not missing:
            continue
        missing_ids = {id(p) for p in missing}
        saved_grads = {}
        saved_lrs = []
        for group in optimizer.param_groups:
            saved_lrs.append(group["lr"])
            group["lr"] = torch.zeros_like(group["lr"]) if torch.is_tensor(group["lr"]) else 0.0
            for p in group["params"]:
                if id(p) in missing_ids:
                    p.grad = torch.zeros_like(p)
                else:  # parameters with state sit this step out
                    saved_grads[p] = p.grad
                    p.grad = None
        try:
            optimizer.step()
        finally:
            for group, lr in zip(optimizer.param_groups, saved_lrs):
                group["lr"] = lr
            for p in missing:
                p.grad = None
            for p, grad in saved_grads.items():
                p.grad = grad
        filled += len(missing)
    return filled


class DynamicDepthAlgorithm(Algorithm):
    """Base of the algorithms that change the running layers: handles ``INIT`` (the plan) and the
    checkpoint events; a subclass names the other events it acts on in ``events`` and implements
    :meth:`start` and :meth:`step`."""

    events: tuple[Event, ...] = ()

    def __init__(self, layers_path: Optional[str] = None):
        self.layers_path = layers_path
        self._plan: Optional[LayerPlan] = None

    @property
    def find_unused_parameters(self) -> bool:
        return True  # a layer that does not run in a step gets no gradient

    def match(self, event: Event, state: State) -> bool:
        return event in (Event.INIT, *self.events, *CHECKPOINT_EVENTS)

    def apply(self, event: Event, state: State, logger: Logger) -> None:
        if event in CHECKPOINT_EVENTS:  # layers that never ran have no optimizer state yet
            fill_missing_optimizer_state(state.optimizers)
        elif event == Event.INIT:
            self._plan = attach_layer_plan(state.model, self.layers_path)
            self.start(state)
        else:
            self.step(event, state, logger)

    def start(self, state: State) -> None:
        """At ``INIT``, with ``self._plan`` attached."""

    def step(self, event: Event, state: State, logger: Logger) -> None:
        raise NotImplementedError
