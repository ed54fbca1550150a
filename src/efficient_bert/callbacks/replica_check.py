"""Check that data-parallel replicas hold the same weights: DDP keeps them identical bit for bit, so
any difference means a rank ran a different step (a layer-drop or selection draw that differed, a
non-deterministic custom algorithm, a rank that skipped a batch)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Optional

import torch
from composer.core import Callback, State
from composer.loggers import Logger
from composer.utils import dist

from efficient_bert.model.checkpoint import unwrap

log = logging.getLogger(__name__)


class ReplicaDivergenceError(RuntimeError):
    pass


def weight_digest(model: torch.nn.Module) -> torch.Tensor:
    """Per parameter, the float64 sum and sum of squares: equal on every rank iff the replicas agree
    (up to a collision no real divergence produces)."""
    parts = []
    for p in unwrap(model).parameters():
        x = p.detach().double()
        parts.append(torch.stack([x.sum(), (x * x).sum()]))
    return torch.cat(parts)


class ReplicaCheck(Callback):
    """At the end of training (and every ``interval`` batches when set), gather every rank's weight
    digest and raise :class:`ReplicaDivergenceError` if they differ. Rank 0 writes the digests of
    all ranks to ``path`` (JSON) when given. Does nothing in a one-process run, and under FSDP
    (whose ranks hold different shards by design)."""

    def __init__(self, interval: Optional[int] = None, path: Optional[str] = None):
        self.interval = interval
        self.path = Path(path) if path else None

    def batch_end(self, state: State, logger: Logger) -> None:
        if self.interval and int(state.timestamp.batch) % self.interval == 0:
            self.check(state, logger)

    def fit_end(self, state: State, logger: Logger) -> None:
        self.check(state, logger)

    def check(self, state: State, logger: Logger) -> None:
        if dist.get_world_size() == 1 or state.fsdp_enabled:
            return
        digest = weight_digest(state.model)
        gathered = [d.cpu() for d in dist.all_gather(digest)]
        worst = max(float((g - gathered[0]).abs().max()) for g in gathered)
        batch = int(state.timestamp.batch)
        logger.log_metrics({"replica_check/max_abs_diff": worst})
        if self.path is not None and dist.get_global_rank() == 0:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps({"batch": batch, "world_size": len(gathered), "max_abs_diff": worst,
                                             "digests": [g.tolist() for g in gathered]}))
        if worst != 0.0:
            raise ReplicaDivergenceError(
                f"the {len(gathered)} data-parallel replicas hold different weights at batch {batch} (largest "
                f"digest difference {worst:g}): some rank ran a different step. Check algorithms whose random "
                "draws must match across ranks, and data loaders that give ranks unequal numbers of batches")
        log.info("replica check at batch %d: %d ranks identical", batch, len(gathered))
