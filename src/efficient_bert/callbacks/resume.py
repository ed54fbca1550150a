"""Exact resumption mid-epoch: the checkpoint's RNG state, restored where the uninterrupted run used it."""

from __future__ import annotations

from typing import Any, Optional

from composer.core import Callback, State
from composer.loggers import Logger
from composer.utils import reproducibility


class RestoreRNGMidEpoch(Callback):
    """Loads a checkpoint's RNG state (Composer's per-rank list) at the first ``AFTER_DATALOADER``.

    Composer restores it only when a resumed run starts an epoch: a run resumed mid-epoch drew its
    dropout from another state than the uninterrupted run did. Loaded after the dataloader has
    yielded the first batch, the state is the one the uninterrupted run had at that point: creating
    the dataloader's iterator draws from the RNG, fetching a batch does not (masks are drawn by
    counter, :class:`~efficient_bert.data.mlm_collator.MLMCollator`).
    """

    def __init__(self, rng_state: Optional[list[dict[str, Any]]]):
        self.rng_state = rng_state

    def after_dataloader(self, state: State, logger: Logger) -> None:
        if self.rng_state is not None:
            reproducibility.load_rng_state(self.rng_state)
            self.rng_state = None
