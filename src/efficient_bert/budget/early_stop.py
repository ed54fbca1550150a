"""Stop a run whose eval loss is still above a threshold at a given point of its budget
(academic-budget-bert's ``--early_stop_time`` / ``--early_stop_eval_loss``)."""

from __future__ import annotations

import logging
from typing import Optional

from composer.core import Callback, State
from composer.loggers import Logger

from efficient_bert.progress import run_progress

log = logging.getLogger(__name__)


class BudgetEarlyStop(Callback):
    """At the first evaluation at or after ``at_fraction`` of the budget (or of ``max_duration``
    without one), stop if ``<label>/<metric>`` exceeds ``max_eval_loss``. Checked once."""

    def __init__(self, at_fraction: float, max_eval_loss: float, label: str = "eval",
                 metric: str = "LanguageCrossEntropy"):
        if not 0.0 < at_fraction <= 1.0:
            raise ValueError(f"early_stop_time is a fraction of the budget in (0, 1], got {at_fraction}")
        self.at_fraction, self.max_eval_loss = at_fraction, max_eval_loss
        self.label, self.metric = label, metric
        self.checked = False
        self.stopped_at: Optional[int] = None

    def eval_end(self, state: State, logger: Logger) -> None:
        if self.checked:
            return
        progress = run_progress(state)
        metric = state.eval_metrics.get(self.label, {}).get(self.metric)
        if progress < self.at_fraction or metric is None:
            return
        self.checked = True
        loss = float(metric.compute())
        if loss > self.max_eval_loss:
            self.stopped_at = int(state.timestamp.batch)
            log.warning("early stop: %s/%s = %.4f > %.4f at %.0f%% of the budget (batch %d); stopping the run",
                        self.label, self.metric, loss, self.max_eval_loss, 100 * progress, self.stopped_at)
            logger.log_metrics({"budget/early_stopped": 1})
            state.stop_training()
        else:
            log.info("early-stop check passed: %s/%s = %.4f <= %.4f at %.0f%% of the budget", self.label,
                     self.metric, loss, self.max_eval_loss, 100 * progress)

    def state_dict(self):
        return {"checked": self.checked}

    def load_state_dict(self, state) -> None:
        self.checked = bool(state["checked"])
