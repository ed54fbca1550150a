"""Learning-rate schedules over training progress measured as the fraction of a time budget.

academic-budget-bert (Izsak et al. 2021) and cramming (Geiping & Goldstein 2023) schedule the LR
on the time used, not on the step: the schedule then ends exactly when the budget does, whatever
the machine's speed. Progress ``p`` is :meth:`TrainingBudget.expected_fraction` when a budget is
set (the LR chosen after step k drives step k+1, which ends about two step times after the last
accounted step), else Composer's elapsed fraction of ``max_duration``.

With warm-up fraction ``w`` and final LR ratio ``alpha_f``, the multiplier of the base LR is
``p / w`` for ``p < w``; after it, with ``q = (p - w) / (1 - w)``:

- ``linear``: ``1 - (1 - alpha_f) q`` (academic-budget-bert ``--lr_schedule time --curve linear``)
- ``cosine``: ``alpha_f + (1 - alpha_f) (1 + cos(pi q)) / 2``
- ``exponential``: ``alpha_f ** q`` (from 1 down to ``alpha_f``; needs ``alpha_f > 0``)
- ``one_cycle``: cramming's triangular one-cycle: linear up to the peak at ``w`` (default 0.5),
  linear down to ``alpha_f``
- ``wsd``: warmup-stable-decay (trapezoidal; Hägele et al. 2024, "Scaling Laws and Compute-Optimal
  Training Beyond Fixed Training Durations"): ``1`` until the last ``cooldown`` of the budget, then
  the 1-sqrt cooldown ``alpha_f + (1 - alpha_f) (1 - sqrt(c))``, with ``c`` going from 0 to 1 over
  the cooldown
- ``constant``: ``1``
"""

from __future__ import annotations

import math
from typing import Optional

from composer.core import State
from composer.optim import ComposerScheduler

from efficient_bert.budget.training_budget import find_budget
from efficient_bert.progress import run_progress

CURVES = ("linear", "cosine", "exponential", "one_cycle", "wsd", "constant")


def budget_multiplier(progress: float, curve: str, warmup: float, alpha_f: float, cooldown: float = 0.2) -> float:
    """The LR multiplier at ``progress`` in [0, 1] (the formulas of the module docstring)."""
    p = min(max(progress, 0.0), 1.0)
    if p < warmup:
        return p / warmup
    if curve == "wsd":
        c = (p - (1.0 - cooldown)) / cooldown
        return 1.0 if c <= 0.0 else alpha_f + (1.0 - alpha_f) * (1.0 - math.sqrt(c))
    q = (p - warmup) / (1.0 - warmup) if warmup < 1.0 else 1.0
    if curve in ("linear", "one_cycle"):
        return 1.0 - (1.0 - alpha_f) * q
    if curve == "cosine":
        return alpha_f + (1.0 - alpha_f) * 0.5 * (1.0 + math.cos(math.pi * q))
    if curve == "exponential":
        return alpha_f ** q
    return 1.0


class BudgetSchedule(ComposerScheduler):
    """A Composer scheduler whose progress is the fraction of the training budget used.

    Args:
        curve: one of ``linear | cosine | exponential | one_cycle | wsd | constant``.
        warmup: warm-up length as a fraction of the budget (``one_cycle``: the peak; default 0.5).
        alpha_f: final LR as a fraction of the base LR.
        cooldown: ``wsd`` only: the fraction of the budget, at its end, over which the LR cools down.
    """

    def __init__(self, curve: str = "linear", warmup: Optional[float] = None, alpha_f: float = 0.0,
                 cooldown: float = 0.2):
        if curve not in CURVES:
            raise ValueError(f"unknown schedule curve {curve!r}; choose from {', '.join(CURVES)}")
        warmup = (0.5 if curve == "one_cycle" else 0.06) if warmup is None else warmup
        if not 0.0 <= warmup < 1.0:
            raise ValueError(f"warmup is a fraction of the budget in [0, 1), got {warmup}")
        if curve == "exponential" and not alpha_f > 0:
            raise ValueError("the exponential curve needs alpha_f > 0")
        if curve == "wsd" and not 0.0 < cooldown <= 1.0 - warmup:
            raise ValueError(f"cooldown is a fraction of the budget in (0, 1 - warmup], got {cooldown}")
        self.curve, self.warmup, self.alpha_f, self.cooldown = curve, warmup, alpha_f, cooldown

    def progress(self, state: State) -> float:
        budget = find_budget(state)
        return budget.expected_fraction(steps_ahead=2) if budget is not None else run_progress(state)

    def __call__(self, state: State, ssr: float = 1.0) -> float:
        return budget_multiplier(self.progress(state), self.curve, self.warmup, self.alpha_f, self.cooldown)
