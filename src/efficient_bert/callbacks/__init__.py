"""Composer callbacks: HF export, evaluation history, non-finite loss guard."""

from efficient_bert.callbacks.eval_history import EvalHistory
from efficient_bert.callbacks.hf_export import HFExport, export_hf
from efficient_bert.callbacks.nan_guard import NaNGuard, NonFiniteLossError

__all__ = ["EvalHistory", "HFExport", "NaNGuard", "NonFiniteLossError", "export_hf"]
