"""The training budget: a time limit in hours that decides when a run stops and what follows its progress.

- :class:`TrainingBudget` (a callback) counts training time, wall clock or Reference System Time, and
  stops the run when the budget is spent.
- Everything that follows the budget reads :func:`efficient_bert.progress.run_progress`: the fraction
  of the budget used, or of ``max_duration`` in a run without a budget. So each piece also works in a
  run without one:
  :class:`BudgetSchedule` (the LR), :class:`BudgetEvalInterval` (when to evaluate; :class:`EvalInterval` without a budget),
  :class:`BudgetEarlyStop`, :class:`TimeMarkerExport` (HF exports at fractions of the budget), and the
  algorithms whose schedules are fractions of the run.
- :func:`extra_forward` wraps forward passes that only choose data; :mod:`.calibrate` measures the
  factor that turns this machine's seconds into reference seconds.

The names below import on first use, so that ``efficient-bert calibrate --help`` stays light.
"""

from efficient_bert.lazy import lazy_exports

_EXPORTS = {
    "BudgetEarlyStop": "efficient_bert.budget.early_stop",
    **dict.fromkeys(("BudgetEvalInterval", "EvalInterval"), "efficient_bert.budget.eval_interval"),
    **dict.fromkeys(("BudgetSchedule", "budget_multiplier"), "efficient_bert.budget.schedule"),
    "TimeMarkerExport": "efficient_bert.budget.time_markers",
    **dict.fromkeys(("TrainingBudget", "extra_forward", "find_budget"), "efficient_bert.budget.training_budget"),
    "run_progress": "efficient_bert.progress",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
