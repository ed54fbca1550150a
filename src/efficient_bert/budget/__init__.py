"""The training budget: a time limit in hours that decides when a run stops and what follows its progress.

- :class:`TrainingBudget` (a callback) counts training time, wall clock or Reference System Time, and
  stops the run when the budget is spent.
- Everything that follows the budget reads :func:`efficient_bert.progress.run_progress`: the fraction
  of the budget used, or of ``max_duration`` in a run without a budget. So each piece also works in a
  run without one:
  :class:`BudgetSchedule` (the LR), :class:`BudgetEvalInterval` (when to evaluate),
  :class:`BudgetEarlyStop`, :class:`TimeMarkerExport` (HF exports at fractions of the budget), and the
  algorithms whose schedules are fractions of the run.
- :func:`extra_forward` wraps forward passes that only choose data; :mod:`.calibrate` measures the
  factor that turns this machine's seconds into reference seconds.
"""

from efficient_bert.budget.early_stop import BudgetEarlyStop
from efficient_bert.budget.eval_interval import BudgetEvalInterval
from efficient_bert.budget.schedule import BudgetSchedule, budget_multiplier
from efficient_bert.budget.time_markers import TimeMarkerExport
from efficient_bert.budget.training_budget import TrainingBudget, extra_forward, find_budget
from efficient_bert.progress import run_progress

__all__ = ["BudgetEarlyStop", "BudgetEvalInterval", "BudgetSchedule", "TimeMarkerExport", "TrainingBudget",
           "budget_multiplier", "extra_forward", "find_budget", "run_progress"]
