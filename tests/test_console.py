"""The console line: what a user sees while training."""

from datetime import timedelta
from types import SimpleNamespace

from composer.core import Time

from efficient_bert.callbacks.console import ConsoleLog, duration


def state(batch, max_duration="300ba", elapsed=None, wall=0.0):
    return SimpleNamespace(timestamp=SimpleNamespace(batch=batch, total_wct=timedelta(seconds=wall)),
                           max_duration=Time.from_timestring(max_duration),
                           get_elapsed_duration=lambda: None if elapsed is None else Time(elapsed, "dur"))


def test_durations_have_units():
    assert [duration(s) for s in (0.4, 45, 200, 3600 * 2 + 300)] == ["0s", "45s", "3m20s", "2h05m"]


def test_one_line_with_what_there_is():
    console = ConsoleLog("100ba")
    console.log_metrics({"loss/train/total": 6.41274, "throughput/tokens_per_sec": 12345.0})
    # no budget: the total in batches, the time left from the elapsed fraction of max_duration
    assert console.step_line(state(200, elapsed=2 / 3, wall=100.0)) == "[batch 200/300] loss 6.4127 | 12.3k tok/s | ETA 50s"
    console.log_metrics({"budget/fraction": 0.25, "budget/wall_hours": 0.01, "throughput/device/mfu": 0.553})
    # a budget: max_duration is only a cap; the time left follows the budget's clock (36 s spent for 25%)
    assert console.step_line(state(200, "100000ba")) == (
        "[batch 200] loss 6.4127 | 12.3k tok/s | MFU 55.3% | budget 25% | ETA 1m48s")
