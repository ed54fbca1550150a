"""What layer stacking and layer drop share: they change which encoder layers a step runs.

Both act through the model's layer plan (:func:`efficient_bert.model.layer_plan.layer_plan`),
attached when training starts; both leave some parameters without a gradient in a step (so DDP must
look for unused parameters) and without optimizer state until they first train (so a checkpoint
fills that state in before it is written).
"""

from __future__ import annotations

from typing import Optional

from composer.core import Algorithm, Event, State
from composer.loggers import Logger

from efficient_bert.model.layer_plan import LayerPlan, layer_plan
from efficient_bert.optim.missing_state import CHECKPOINT_EVENTS, fill_missing_optimizer_state


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
            self._plan = layer_plan(state.model, self.layers_path)
            self.start(state)
        else:
            self.step(event, state, logger)

    def start(self, state: State) -> None:
        """At ``INIT``, with ``self._plan`` attached."""

    def step(self, event: Event, state: State, logger: Logger) -> None:
        raise NotImplementedError
