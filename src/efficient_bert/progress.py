"""How far a run is: the fraction of its training budget used, or of ``max_duration`` without one.

What follows the run's progress (layer stacking and dropping, batch-size warmup, the budget's LR
schedule and evaluations) reads :func:`run_progress`, so each works in a run with a budget and in
one without. The budget itself (:class:`efficient_bert.budget.TrainingBudget`) is a
:class:`BudgetProgress`; this module needs only Composer.
"""

from __future__ import annotations

from typing import Optional

from composer.core import Callback, State


class BudgetProgress(Callback):
    """A callback that counts a training budget of ``seconds`` on its ``clock``: ``used_seconds`` and
    ``fraction`` are what the run has used at the end of the last step."""

    seconds: float
    clock: str

    @property
    def used_seconds(self) -> float:
        raise NotImplementedError

    @property
    def fraction(self) -> float:
        raise NotImplementedError


def find_budget(state: State) -> Optional[BudgetProgress]:
    """The run's budget among the Trainer's callbacks, if any."""
    return next((cb for cb in state.callbacks if isinstance(cb, BudgetProgress)), None)


def run_progress(state: State) -> float:
    """The fraction of the budget used, or of ``max_duration`` when the run has no budget."""
    budget = find_budget(state)
    if budget is not None:
        return budget.fraction
    elapsed = state.get_elapsed_duration()
    return 0.0 if elapsed is None else float(elapsed.value)
