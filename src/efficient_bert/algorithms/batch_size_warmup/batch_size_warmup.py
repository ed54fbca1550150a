"""Batch-size warmup: train on a growing part of each batch early in the run.

ModernBERT (Warner et al. 2024, "Smarter, Better, Faster, Longer") raises the batch size from a small
one to the full one over the start of training: early steps, whose gradients agree anyway, are cheap,
so the run takes more of them. Its schedule (``curve="modernbert"``, the default), with ``n`` the batch
the dataloader gives this rank and the sizes ``s_0 < s_1 < ... < s_{K-1} < n`` from
``min_fraction * n`` up in steps of ``multiple`` rows: size ``s_k`` trains while the run's progress
``t`` (the budget's fraction, or the elapsed fraction of ``max_duration`` without a budget) is below

    warmup * (s_0 + ... + s_k) / (s_0 + ... + s_{K-1})

and then the full batch. The budget a size uses grows with the size, so every size trains about the
same number of steps: the batch grows linearly in steps, as ModernBERT's does in tokens seen over its
``batch_size_warmup_tokens`` (its sizes step by one microbatch). ``curve="linear"`` instead grows the
batch linearly in ``t``: ``rows(t) = n * (min_fraction + (1 - min_fraction) * t / warmup)``, rounded down
to a multiple of ``multiple``.

The first ``rows`` rows are trained; the rest of the batch is skipped. Composer counts a batch's
samples and tokens before algorithms run, so its sample and token counters (and throughput figures)
count the rows drawn, skipped ones included, which also keeps streaming's mid-epoch resumption exact;
a ``max_duration`` in samples or tokens is therefore refused. Works with any MLM batch of per-row
entries (tensors and the collator's host-side lists).
"""

from __future__ import annotations

from typing import Any, Mapping

from composer.core import Algorithm, Event, State
from composer.loggers import Logger

from efficient_bert.algorithms.batch_selection import batch_rows, refuse_row_counted_duration, select_rows
from efficient_bert.progress import run_progress


CURVES = ("modernbert", "linear")


def warmup_sizes(rows: int, min_fraction: float, multiple: int = 8) -> list[int]:
    """The batch sizes below the full ``rows`` that the ModernBERT curve steps through."""
    first = min(rows, max(multiple, int(rows * min_fraction) // multiple * multiple))
    return list(range(first, rows, multiple))


def warmup_rows(progress: float, rows: int, min_fraction: float, warmup: float, multiple: int = 8,
                curve: str = "modernbert") -> int:
    """How many of a batch's ``rows`` to train at ``progress`` (the module docstring's schedules)."""
    if progress >= warmup:
        return rows
    if curve == "linear":
        kept = int(rows * (min_fraction + (1.0 - min_fraction) * progress / warmup)) // multiple * multiple
        return min(rows, max(kept, multiple))
    sizes = warmup_sizes(rows, min_fraction, multiple)
    total, reached = sum(sizes), 0
    for size in sizes:
        reached += size
        if progress < warmup * reached / total:
            return size
    return rows


def apply_batch_size_warmup(batch: Mapping[str, Any], rows: int) -> dict[str, Any]:
    """The first ``rows`` rows of every per-row entry of ``batch``."""
    return select_rows(batch, range(min(rows, batch_rows(batch))))


class BatchSizeWarmup(Algorithm):
    """Trains the first ``warmup_rows(t, n, min_fraction, warmup, multiple, curve)`` rows of each batch
    (ModernBERT's batch-size warmup), at ``AFTER_DATALOADER``, before Composer splits microbatches.

    Args:
        warmup: the fraction of the run (budget or ``max_duration``) over which the batch grows.
        min_fraction: the batch at the start, as a fraction of the full one.
        multiple: trained rows are a multiple of this (keeps the shapes few for compiled models).
        curve: ``"modernbert"`` (equal steps at each size) or ``"linear"`` (rows linear in progress).
    """

    def __init__(self, warmup: float = 0.1, min_fraction: float = 0.25, multiple: int = 8,
                 curve: str = "modernbert"):
        if not 0.0 < warmup <= 1.0:
            raise ValueError(f"warmup is a fraction of the run in (0, 1], got {warmup}")
        if not 0.0 < min_fraction <= 1.0:
            raise ValueError(f"min_fraction is a fraction of the batch in (0, 1], got {min_fraction}")
        if multiple < 1:
            raise ValueError(f"multiple must be at least 1, got {multiple}")
        if curve not in CURVES:
            raise ValueError(f"curve must be one of {', '.join(CURVES)}, got {curve!r}")
        self.warmup, self.min_fraction, self.multiple, self.curve = warmup, min_fraction, multiple, curve

    def __repr__(self) -> str:
        return (f"BatchSizeWarmup(warmup={self.warmup}, min_fraction={self.min_fraction}, multiple={self.multiple}, "
                f"curve={self.curve!r})")

    def match(self, event: Event, state: State) -> bool:
        return event in (Event.FIT_START, Event.AFTER_DATALOADER)

    def apply(self, event: Event, state: State, logger: Logger) -> None:
        if event == Event.FIT_START:
            refuse_row_counted_duration(state, "batch-size warmup")
            return
        progress = run_progress(state)
        drawn = batch_rows(state.batch)
        rows = warmup_rows(progress, drawn, self.min_fraction, self.warmup, self.multiple, self.curve)
        if rows < drawn:
            state.batch = apply_batch_size_warmup(state.batch, rows)
        logger.log_metrics({"batch_size_warmup/rows": rows})
