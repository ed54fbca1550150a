"""Selective backprop (Jiang et al. 2019) for masked-language modelling, as a Composer algorithm.

Jiang, Wong, Zhou, Andersen, Dean, Ganger, Joshi, Kaminsky, Kozuch, Lipton, Pillai. "Accelerating
Deep Learning by Focusing on the Biggest Losers", 2019. Kaddour et al., "No Train No Gain",
NeurIPS 2023 (history of 5000 losses; β = 1 selects about half).

Composer's own ``SelectiveBackprop`` keeps a fixed fraction of the highest per-example losses of
classification batches; this one follows Jiang et al.'s probabilistic rule and computes each
sequence's MLM loss over its masked tokens only (dense or sparse-prediction logits).
"""

from __future__ import annotations

import collections
import logging
from typing import Any, Optional

import torch
from composer.core import Algorithm, Event, State
from composer.loggers import Logger
from composer.utils import dist

from efficient_bert.algorithms.batch_selection import (DrawsCandidatePool, batch_rows, concat_rows,
                                                       pool_and_train_rows, score_pool, select_rows, step_rows,
                                                       trained_samples_to_batches)

log = logging.getLogger(__name__)


def loss_percentiles(losses: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
    """For each loss, the fraction of ``history`` below it, ties counting half."""
    ordered = history.double().sort().values
    below = torch.searchsorted(ordered, losses.double(), right=False)
    upto = torch.searchsorted(ordered, losses.double(), right=True)
    return (below + 0.5 * (upto - below)) / len(ordered)


def selection_probabilities(losses: torch.Tensor, history: torch.Tensor, beta: float) -> torch.Tensor:
    """Jiang et al.'s rule: P(select) = percentile(loss in history) ** β."""
    return loss_percentiles(losses, history) ** beta


def draw_selected(probabilities: torch.Tensor, generator: Optional[torch.Generator] = None) -> list[int]:
    """One Bernoulli draw per candidate: the indices selected."""
    draws = torch.rand(len(probabilities), generator=generator, dtype=torch.float64)
    return torch.nonzero(draws < probabilities.double()).flatten().tolist()


def apply_selective_backprop(pool: dict[str, Any], probabilities: torch.Tensor, train_rows: int,
                             generator: Optional[torch.Generator] = None, carry: Optional[dict[str, Any]] = None,
                             max_carry: Optional[int] = None) -> tuple[dict[str, Any], Optional[dict[str, Any]], int]:
    """Choose ``train_rows`` rows to train on from a candidate ``pool``.

    Each candidate is selected with its probability (one Bernoulli draw). Selected rows queue
    behind ``carry`` (rows selected earlier but not trained yet) and the first ``train_rows`` of
    the queue are trained, so the trained batch always has the same size. Rows beyond that are
    carried to the next step (at most ``max_carry``, default ``train_rows``; older ones first).
    When the queue is short, the unselected candidates with the highest probabilities fill it.

    Returns (the trained batch, the new carry or None, how many rows were filled in).
    """
    chosen = draw_selected(probabilities, generator)
    queue = concat_rows([b for b in (carry, select_rows(pool, chosen)) if b is not None])
    filled = max(0, train_rows - batch_rows(queue))
    if filled:
        taken = set(chosen)
        rest = [i for i in torch.argsort(probabilities, descending=True, stable=True).tolist() if i not in taken]
        queue = concat_rows([queue, select_rows(pool, rest[:filled])])
    queued = batch_rows(queue)
    trained = select_rows(queue, range(train_rows))
    keep = min(queued - train_rows, train_rows if max_carry is None else max_carry)
    new_carry = select_rows(queue, range(train_rows, train_rows + keep)) if keep > 0 else None
    return trained, new_carry, filled


class SelectiveBackprop(Algorithm, DrawsCandidatePool):
    """Train on the sequences with the highest MLM loss relative to recent ones.

    Rule, every step: the dataloader's batch is a pool of candidates (``pool_size`` rows, default
    ``(β + 1) · train_batch_size``: the expected number selected is then about the trained batch).
    A no-grad forward gives each candidate's MLM loss (mean over its masked tokens); the losses
    join a history of the last ``history`` losses; candidate i is selected with probability
    ``percentile_i ** β`` (its loss's percentile in the history); ``train_batch_size`` selected rows
    are trained (see :func:`apply_selective_backprop` for the queue that keeps the size fixed).

    Sizes are global; each rank selects from its own share of the pool. Draws come from a
    generator seeded with the run's seed, the rank and the batch index. The scoring forward is an
    extra forward of the training budget (``budget.count_extra_forwards``). The selection happens
    at ``AFTER_DATALOADER``, before Composer splits the batch into microbatches. The scoring
    forward runs in eval mode (no dropout), as Jiang et al. score; ``score_in_eval_mode=False``
    scores in train mode. Composer counts the whole pool as samples, so a ``max_duration`` in
    samples becomes the steps that train that many rows, and one in tokens is refused.
    """

    def __init__(self, train_batch_size: int, beta: float = 1.0, pool_size: Optional[int] = None,
                 history: int = 5000, score_batch_size: Optional[int] = None, score_in_eval_mode: bool = True):
        if beta <= 0:
            raise ValueError(f"beta must be positive, got {beta}")
        if history < 1:
            raise ValueError(f"history must be at least 1, got {history}")
        self.train_batch_size = int(train_batch_size)
        self.beta = float(beta)
        self.pool_size = int(pool_size) if pool_size is not None else round((beta + 1) * self.train_batch_size)
        pool_and_train_rows(self.pool_size, self.train_batch_size, 1)  # checks the sizes
        self.history = collections.deque(maxlen=int(history))
        self.score_batch_size = score_batch_size
        self.score_in_eval_mode = score_in_eval_mode
        self.carry: Optional[dict[str, Any]] = None
        self._generator = torch.Generator()

    def __repr__(self) -> str:
        return (f"SelectiveBackprop(train_batch_size={self.train_batch_size}, beta={self.beta}, "
                f"pool_size={self.pool_size}, history={self.history.maxlen})")

    def match(self, event: Event, state: State) -> bool:
        return event in (Event.FIT_START, Event.AFTER_DATALOADER)

    def apply(self, event: Event, state: State, logger: Logger) -> None:
        if event == Event.FIT_START:
            trained_samples_to_batches(state, self.train_batch_size, "selective backprop")
            return
        _, train_rows = step_rows(state, self.pool_size, self.train_batch_size, "selective backprop", "pool_size")
        losses = score_pool(state, self.score_batch_size, self.score_in_eval_mode)
        self.history.extend(losses.tolist())
        probabilities = selection_probabilities(losses, torch.tensor(list(self.history)), self.beta)
        seed = (state.rank_zero_seed * 1_000_003 + dist.get_global_rank()) * 1_000_003 + int(state.timestamp.batch)
        self._generator.manual_seed(seed % 2 ** 63)
        state.batch, self.carry, filled = apply_selective_backprop(state.batch, probabilities, train_rows,
                                                                   self._generator, self.carry)
        logger.log_metrics({"selective_backprop/mean_probability": float(probabilities.mean()),
                            "selective_backprop/filled": filled,
                            "selective_backprop/carried": batch_rows(self.carry) if self.carry else 0})

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "history": list(self.history), "carry": self.carry}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history.clear()
        self.history.extend(state.get("history", []))
        self.carry = state.get("carry")
