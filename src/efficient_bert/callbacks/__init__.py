"""Composer callbacks: HF export, evaluation history, the metrics file, the console line, non-finite
loss guard, data-parallel replica check, mid-epoch RNG restore, trained-token counts, the speed monitor;
Composer's other monitors and loggers by name. The budget's callbacks live in :mod:`efficient_bert.budget`."""

from composer.callbacks import LRMonitor, MemoryMonitor, RuntimeEstimator

from efficient_bert.callbacks import loggers  # noqa: F401  (registers the experiment loggers)
from efficient_bert.callbacks.console import ConsoleLog
from efficient_bert.callbacks.eval_history import EvalHistory
from efficient_bert.callbacks.hf_export import HFExport
from efficient_bert.callbacks.metrics_file import METRICS_FILE, MetricsFile
from efficient_bert.callbacks.nan_guard import NaNGuard, NonFiniteLossError
from efficient_bert.callbacks.replica_check import ReplicaCheck, ReplicaDivergenceError
from efficient_bert.callbacks.resume import RestoreRNGMidEpoch
from efficient_bert.callbacks.speed_monitor import SpeedMonitor
from efficient_bert.callbacks.trained_counts import TrainedCounts
from efficient_bert.registries import CALLBACKS

CALLBACKS.register("speed_monitor", SpeedMonitor)
CALLBACKS.register("lr_monitor", LRMonitor)
CALLBACKS.register("memory_monitor", MemoryMonitor)
CALLBACKS.register("runtime_estimator", RuntimeEstimator)

__all__ = ["METRICS_FILE", "ConsoleLog", "EvalHistory", "HFExport", "MetricsFile", "NaNGuard", "NonFiniteLossError",
           "ReplicaCheck", "ReplicaDivergenceError", "RestoreRNGMidEpoch", "SpeedMonitor", "TrainedCounts"]
