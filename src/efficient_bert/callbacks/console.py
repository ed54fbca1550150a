"""The console: one line per log interval and one per evaluation (rank 0), in place of Composer's dump.

    [batch 200/300] loss 6.4127 | 12.3k tok/s | budget 41% | ETA 54s
    [eval @ batch 200] loss 6.3812, accuracy 7.95% (unigram floor 6.5634)

A line has what there is: the step (of the total when ``max_duration`` is in batches), the training
loss, tokens/s from the speed monitor, MFU where it is known (GPUs), the budget used and the time
left in training time (from the budget, else from the elapsed fraction of ``max_duration``). Every
metric still goes to ``metrics.jsonl`` and the loggers.
"""

from __future__ import annotations

from typing import Any, Optional

from composer.core import State, Time, TimeUnit
from composer.loggers import Logger, LoggerDestination
from composer.utils import dist

from efficient_bert.run_files import BUDGET_FRACTION, BUDGET_WALL_HOURS


def duration(seconds: float) -> str:
    """``45s``, ``3m20s``, ``2h05m``."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class ConsoleLog(LoggerDestination):
    """Prints a line every ``interval`` (a Composer time string in batches or epochs) and after each evaluation."""

    def __init__(self, interval: str = "100ba"):
        self.interval = Time.from_timestring(interval)
        if self.interval.unit not in (TimeUnit.BATCH, TimeUnit.EPOCH):
            raise ValueError(f"console_log_interval is counted in batches or epochs (100ba, 1ep), got {interval}")
        self.latest: dict[str, float] = {}

    def log_metrics(self, metrics: dict[str, Any], step: Optional[int] = None) -> None:
        for key, value in metrics.items():
            value = value.item() if hasattr(value, "item") else value
            if isinstance(value, (int, float)):
                self.latest[key] = float(value)

    def batch_checkpoint(self, state: State, logger: Logger) -> None:  # after every BATCH_END callback logged
        if self.interval.unit == TimeUnit.BATCH and int(state.timestamp.batch) % self.interval.value == 0:
            self._print(self.step_line(state))

    def epoch_end(self, state: State, logger: Logger) -> None:
        if self.interval.unit == TimeUnit.EPOCH and int(state.timestamp.epoch) % self.interval.value == 0:
            self._print(self.step_line(state))

    def eval_end(self, state: State, logger: Logger) -> None:  # the trainer logged the eval metrics just before
        metrics = {key[len("metrics/"):]: value for key, value in self.latest.items() if key.startswith("metrics/eval/")}
        parts = [f"loss {metrics['eval/LanguageCrossEntropy']:.4f}"] if "eval/LanguageCrossEntropy" in metrics else []
        if "eval/MaskedAccuracy" in metrics:
            parts.append(f"accuracy {100 * metrics['eval/MaskedAccuracy']:.2f}%")
        floor = f" (unigram floor {metrics['eval/UnigramEntropy']:.4f})" if "eval/UnigramEntropy" in metrics else ""
        self._print(f"[eval @ batch {int(state.timestamp.batch)}] {', '.join(parts)}{floor}")

    def step_line(self, state: State) -> str:
        batch = int(state.timestamp.batch)
        total = state.max_duration  # with a budget, max_duration is only a cap: no total then
        by_batches = total is not None and total.unit == TimeUnit.BATCH and BUDGET_FRACTION not in self.latest
        of = f"/{total.value}" if by_batches else ""
        parts = []
        if "loss/train/total" in self.latest:
            parts.append(f"loss {self.latest['loss/train/total']:.4f}")
        if "throughput/tokens_per_sec" in self.latest:
            parts.append(f"{self.latest['throughput/tokens_per_sec'] / 1000:.1f}k tok/s")
        if "throughput/device/mfu" in self.latest:
            parts.append(f"MFU {100 * self.latest['throughput/device/mfu']:.1f}%")
        left = self.time_left(state)
        if BUDGET_FRACTION in self.latest:
            parts.append(f"budget {100 * min(self.latest['budget/fraction'], 1.0):.0f}%")
        if left is not None:
            parts.append(f"ETA {duration(left)}")
        return f"[batch {batch}{of}] " + " | ".join(parts)

    def time_left(self, state: State) -> Optional[float]:
        """Training seconds left: from the budget's clock, else the elapsed fraction of max_duration."""
        if BUDGET_FRACTION in self.latest and BUDGET_WALL_HOURS in self.latest:
            fraction, spent = min(self.latest[BUDGET_FRACTION], 1.0), self.latest[BUDGET_WALL_HOURS] * 3600
        else:
            elapsed = state.get_elapsed_duration()
            fraction = None if elapsed is None else float(elapsed.value)
            spent = state.timestamp.total_wct.total_seconds()
        if fraction is None or not 0 < fraction < 1:
            return None
        return spent * (1.0 - fraction) / fraction

    @staticmethod
    def _print(line: str) -> None:
        if dist.get_global_rank() == 0:
            print(line, flush=True)
