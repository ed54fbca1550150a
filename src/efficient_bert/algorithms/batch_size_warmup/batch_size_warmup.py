"""Batch-size warmup: train on a growing part of each batch early in the run.

ModernBERT (Warner et al. 2024, "Smarter, Better, Faster, Longer") raises the batch size linearly from
a small one to the full one over the start of training: early steps, whose gradients agree anyway, are
cheap, so the model takes more of them. Schedule here, at run progress ``t`` (the budget's fraction,
or the elapsed fraction of ``max_duration`` without a budget):

    rows(t) = n * (min_fraction + (1 - min_fraction) * t / warmup)   for t < warmup, else n

where ``n`` is the batch the dataloader gives this rank, rounded down to a multiple of ``multiple``
(at least ``multiple``, at most ``n``). The first ``rows(t)`` rows are trained; the rest of the batch
is skipped: a warmup over 10% of the run from a quarter of the batch skips about 4% of the rows the
run draws. Composer counts a batch's samples and tokens before algorithms run, so its sample and
token counters (and throughput figures) count the rows drawn, skipped ones included, which also keeps
streaming's mid-epoch resumption exact; a ``max_duration`` in samples or tokens is therefore refused.
Works with any MLM batch of per-row entries (tensors and the collator's host-side lists).
"""

from __future__ import annotations

from typing import Any, Mapping

from composer.core import Algorithm, Event, State
from composer.loggers import Logger

from efficient_bert.algorithms.batch_selection import batch_rows, refuse_row_counted_duration, select_rows
from efficient_bert.budget import run_progress
from efficient_bert.registries import ALGORITHMS


def warmup_rows(progress: float, rows: int, min_fraction: float, warmup: float, multiple: int = 8) -> int:
    """How many of a batch's ``rows`` to train at ``progress`` (the module docstring's schedule)."""
    fraction = 1.0 if progress >= warmup else min_fraction + (1.0 - min_fraction) * progress / warmup
    kept = int(rows * fraction) // multiple * multiple
    return min(rows, max(kept, multiple))


def apply_batch_size_warmup(batch: Mapping[str, Any], rows: int) -> dict[str, Any]:
    """The first ``rows`` rows of every per-row entry of ``batch``."""
    return select_rows(batch, range(min(rows, batch_rows(batch))))


@ALGORITHMS.register("batch_size_warmup")
class BatchSizeWarmup(Algorithm):
    """Trains the first ``warmup_rows(t, n, min_fraction, warmup, multiple)`` rows of each batch
    (ModernBERT's batch-size warmup), at ``AFTER_DATALOADER``, before Composer splits microbatches.

    Args:
        warmup: the fraction of the run (budget or ``max_duration``) over which the batch grows.
        min_fraction: the batch at the start, as a fraction of the full one.
        multiple: trained rows are a multiple of this (keeps the shapes few for compiled models).
    """

    def __init__(self, warmup: float = 0.1, min_fraction: float = 0.25, multiple: int = 8):
        if not 0.0 < warmup <= 1.0:
            raise ValueError(f"warmup is a fraction of the run in (0, 1], got {warmup}")
        if not 0.0 < min_fraction <= 1.0:
            raise ValueError(f"min_fraction is a fraction of the batch in (0, 1], got {min_fraction}")
        if multiple < 1:
            raise ValueError(f"multiple must be at least 1, got {multiple}")
        self.warmup, self.min_fraction, self.multiple = warmup, min_fraction, multiple

    def __repr__(self) -> str:
        return f"BatchSizeWarmup(warmup={self.warmup}, min_fraction={self.min_fraction}, multiple={self.multiple})"

    def match(self, event: Event, state: State) -> bool:
        return event in (Event.FIT_START, Event.AFTER_DATALOADER)

    def apply(self, event: Event, state: State, logger: Logger) -> None:
        if event == Event.FIT_START:
            refuse_row_counted_duration(state, "batch-size warmup")
            return
        progress = run_progress(state)
        drawn = batch_rows(state.batch)
        rows = warmup_rows(progress, drawn, self.min_fraction, self.warmup, self.multiple)
        if rows < drawn:
            state.batch = apply_batch_size_warmup(state.batch, rows)
        logger.log_metrics({"batch_size_warmup/rows": rows})
