"""When to evaluate: every fixed interval (:class:`EvalInterval`), or in fractions of the training
budget, denser at its start and end (:class:`BudgetEvalInterval`, academic-budget-bert's
``--validation_begin_proportion`` / ``--validation_end_proportion``).

Both make the last evaluation at the last step, before that step's checkpoint is written. Composer's
own interval makes it after the fit ends, once the final checkpoint is on disk: that checkpoint
then lacks the last evaluation, so a resumed or extended run loses it, and a run killed during it
cannot finish it.
"""

from __future__ import annotations

from typing import Any, Optional, Union

from composer.core import Event, State, Time
from composer.utils.misc import create_interval_scheduler

from efficient_bert.budget.training_budget import find_budget
from efficient_bert.progress import run_progress


class EvalInterval:
    """An ``eval_interval`` callable for Composer's Trainer: every ``interval`` (``"500ba"``, ``"1ep"``,
    ``"10000000tok"`` ...) and at the end of training, at the last step (or the last epoch's end)."""

    def __init__(self, interval: Union[str, int, Time[Any]]):
        self.periodic = create_interval_scheduler(interval, include_end_of_training=False, checkpoint_events=False)
        self.evaluated_batch: Optional[int] = None

    def __call__(self, state: State, event: Event) -> bool:
        if event not in (Event.BATCH_END, Event.EPOCH_END):
            return False
        batch = int(state.timestamp.batch)
        elapsed = state.get_elapsed_duration()
        due = self.periodic(state, event) or (elapsed is not None and elapsed >= 1.0)
        if not due or batch == self.evaluated_batch:  # the last step may also end an interval or the epoch
            return False
        self.evaluated_batch = batch
        return True


class BudgetEvalInterval:
    """An ``eval_interval`` callable for Composer's Trainer.

    Evaluates after the first step at which progress (the budget's fraction, or the elapsed
    fraction of ``max_duration`` without a budget) reaches the next point, then schedules the
    following point ``every`` later; inside the first ``begin_proportion`` of the budget the step is
    ``every_begin``, inside the last ``end_proportion`` it is ``every_end``. The step on which the
    budget runs out is always evaluated.
    """

    def __init__(self, every: float, begin_proportion: float = 0.0, end_proportion: float = 0.0,
                 every_begin: Optional[float] = None, every_end: Optional[float] = None):
        for name, value in (("every", every), ("every_begin", every_begin), ("every_end", every_end)):
            if value is not None and not 0.0 < value <= 1.0:
                raise ValueError(f"{name} is a fraction of the budget in (0, 1], got {value}")
        self.every = every
        self.begin_proportion, self.end_proportion = begin_proportion, end_proportion
        self.every_begin = every_begin or every
        self.every_end = every_end or every
        self.next_point: Optional[float] = None

    def step_at(self, progress: float) -> float:
        if progress < self.begin_proportion:
            return self.every_begin
        if progress >= 1.0 - self.end_proportion:
            return self.every_end
        return self.every

    def __call__(self, state: State, event: Event) -> bool:
        if event != Event.BATCH_END:
            return False
        p = run_progress(state)
        if self.next_point is None:  # first step of this process; a resumed run skips points passed
            self.next_point = self.step_at(0.0)
            self._advance_past(p)
        budget = find_budget(state)
        if (budget is not None and budget.spent) or p >= 1.0:
            return True
        if p < self.next_point:
            return False
        self._advance_past(p)
        return True

    def _advance_past(self, p: float) -> None:
        while self.next_point <= p:
            self.next_point += self.step_at(self.next_point)
