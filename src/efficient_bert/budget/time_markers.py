"""HF-format exports at fractions of the training budget, ready for fine-tuning (academic-budget-bert's
``--finetune_time_markers``)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional, Sequence

from composer.core import State
from composer.loggers import Logger
from composer.utils import dist

from efficient_bert.budget.training_budget import find_budget
from efficient_bert.callbacks.hf_export import export_with_card
from efficient_bert.callbacks.outputs import WritesOutputs
from efficient_bert.model_card import TrainingFacts

log = logging.getLogger(__name__)


class TimeMarkerExport(WritesOutputs):
    """After the first step at which the run's budget fraction reaches each marker, write an HF export
    with its model card to ``folder/marker-<m>`` (rank 0), once per marker, resumed runs included. Must
    come after the budget in the callback list; the export runs outside the budget's counted time.
    """

    def __init__(self, markers: Sequence[float], folder: str, facts: Optional[TrainingFacts] = None):
        bad = [m for m in markers if not 0.0 < m <= 1.0]
        if bad:
            raise ValueError(f"finetune_time_markers are fractions of the budget in (0, 1], got {bad}")
        self.markers = sorted(set(float(m) for m in markers))
        self.folder = Path(folder)
        self.done: list[float] = []
        self.facts = facts

    def path(self, marker: float) -> Path:
        return self.folder / f"marker-{marker:g}"

    def check_outputs(self) -> None:
        taken = [str(self.path(m)) for m in self.markers if m not in self.done and self.path(m).exists()]
        if taken:
            raise FileExistsError(f"time-marker exports already exist: {', '.join(taken)}; move them or choose "
                                  "another save_folder")

    def fit_start(self, state: State, logger: Logger) -> None:
        if find_budget(state) is None:
            raise ValueError("TimeMarkerExport marks fractions of a training budget: add a TrainingBudget callback")
        self.check_outputs()

    def batch_end(self, state: State, logger: Logger) -> None:
        fraction = find_budget(state).fraction
        for marker in self.markers:
            if marker not in self.done and fraction >= marker:
                if dist.get_global_rank() == 0:
                    export_with_card(state, self.path(marker), self.facts)
                    log.info("budget marker %g reached at %s: HF export in %s", marker, state.timestamp.batch,
                             self.path(marker))
                dist.barrier()
                self.done.append(marker)
                logger.log_metrics({"budget/marker": marker})

    def state_dict(self) -> dict[str, Any]:
        return {"done": list(self.done)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.done = [float(m) for m in state["done"]]
