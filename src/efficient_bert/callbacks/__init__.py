"""Composer callbacks: HF export, evaluation history, the metrics file, the console line, non-finite
loss guard, data-parallel replica check, mid-epoch RNG restore, trained-token counts, the speed monitor,
a checkpoint on SIGTERM.
The budget's callbacks live in :mod:`efficient_bert.budget`."""

from efficient_bert.callbacks.checkpoint_on_signal import CheckpointOnSignal, RunInterrupted
from efficient_bert.callbacks.console import ConsoleLog
from efficient_bert.callbacks.eval_history import EvalHistory
from efficient_bert.callbacks.hf_export import HFExport
from efficient_bert.callbacks.metrics_file import METRICS_FILE, MetricsFile
from efficient_bert.callbacks.nan_guard import NaNGuard, NonFiniteLossError
from efficient_bert.callbacks.outputs import WritesOutputs
from efficient_bert.callbacks.replica_check import ReplicaCheck, ReplicaDivergenceError
from efficient_bert.callbacks.resume import RestoreRNGMidEpoch
from efficient_bert.callbacks.speed_monitor import SpeedMonitor
from efficient_bert.callbacks.trained_counts import TrainedCounts

__all__ = ["METRICS_FILE", "CheckpointOnSignal", "ConsoleLog", "EvalHistory", "HFExport", "MetricsFile", "NaNGuard",
           "NonFiniteLossError", "ReplicaCheck", "ReplicaDivergenceError", "RestoreRNGMidEpoch", "RunInterrupted",
           "SpeedMonitor", "TrainedCounts", "WritesOutputs"]
