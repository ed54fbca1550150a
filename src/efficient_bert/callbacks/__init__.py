"""Composer callbacks: training budget, time-marker exports, budget-scheduled evaluation and early
stopping, HF export, evaluation history, non-finite loss guard, data-parallel replica check."""

from efficient_bert.callbacks.budget import TrainingBudget, extra_forward, find_budget
from efficient_bert.callbacks.early_stop import BudgetEarlyStop
from efficient_bert.callbacks.eval_history import EvalHistory
from efficient_bert.callbacks.eval_schedule import BudgetEvalInterval
from efficient_bert.callbacks.hf_export import HFExport, export_hf
from efficient_bert.callbacks.metrics_file import METRICS_FILE, MetricsFile
from efficient_bert.callbacks.nan_guard import NaNGuard, NonFiniteLossError
from efficient_bert.callbacks.replica_check import ReplicaCheck, ReplicaDivergenceError
from efficient_bert.callbacks.time_markers import TimeMarkerExport

__all__ = ["METRICS_FILE", "BudgetEarlyStop", "BudgetEvalInterval", "EvalHistory", "HFExport", "MetricsFile",
           "NaNGuard", "NonFiniteLossError", "ReplicaCheck", "ReplicaDivergenceError", "TimeMarkerExport",
           "TrainingBudget", "export_hf", "extra_forward", "find_budget"]
