"""Sophia-G's Hessian estimate (Liu et al. 2023) as a Composer algorithm, for any Composer Trainer
whose optimizer is :class:`~efficient_bert.optim.SophiaG`."""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Mapping, Optional

import torch
import torch.nn.functional as F
from composer.core import Algorithm, Event, State
from composer.core.precision import get_precision_context
from composer.loggers import Logger
from composer.utils import dist

from efficient_bert.algorithms.batch_selection import batch_rows, select_rows
from efficient_bert.budget import extra_forward
from efficient_bert.optim.sophia import SophiaG


def sampled_label_loss(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Mean cross-entropy of the predicted positions against labels drawn from the model's own
    softmax (the Gauss-Newton-Bartlett trick), and the number of positions. Dense (batch, seq,
    vocab) logits are reduced to the labelled positions; sparse ones already are."""
    if logits.dim() == 3:
        logits = logits[labels != -100]
    with torch.no_grad():
        sampled = torch.multinomial(torch.softmax(logits.float(), dim=-1), 1).squeeze(1)
    return F.cross_entropy(logits.float(), sampled), int(logits.shape[0])


def apply_sophia_hessian(model: torch.nn.Module, optimizer: SophiaG, batch: Mapping[str, Any],
                         chunk_rows: Optional[int] = None, to_device: Callable[[dict], dict] = lambda b: b,
                         clip_norm: Optional[float] = None) -> int:
    """Estimate the diagonal Hessian on ``batch`` (GNB, in chunks of ``chunk_rows`` rows) and fold
    it into ``optimizer``'s EMA; the gradients are cleared before and after. With ``clip_norm`` the
    sampled loss's gradient is clipped to that global norm first, as the official estimator clips
    it at the run's gradient-clipping threshold. Returns B, the number of predicted tokens the
    estimate averages over (summed over ranks)."""
    labels = batch["labels"]
    local = int((labels != -100).sum())
    total = local
    if dist.get_world_size() > 1:
        count = torch.tensor([local], dtype=torch.float64, device=next(model.parameters()).device)
        dist.all_reduce(count)
        total = int(count.item())
    optimizer.zero_grad(set_to_none=True)
    n = batch_rows(batch)
    chunk_rows = chunk_rows or n
    starts = list(range(0, n, chunk_rows))
    for i, start in enumerate(starts):
        part = to_device(select_rows(batch, range(start, min(n, start + chunk_rows))))
        last = i == len(starts) - 1
        sync = contextlib.nullcontext() if last or not hasattr(model, "no_sync") else model.no_sync()
        with sync:
            loss, tokens = sampled_label_loss(model(part).logits, part["labels"])
            # DDP averages gradients over ranks: weight chunks by their share of this rank's tokens
            (loss * (tokens / max(local, 1))).backward()
    if clip_norm is not None:
        torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"] if p.grad is not None],
                                       clip_norm)
    optimizer.update_hessian(total)
    optimizer.zero_grad(set_to_none=True)
    return total


class SophiaHessian(Algorithm):
    """Update :class:`~efficient_bert.optim.SophiaG`'s Hessian estimate every ``every`` steps.

    Schedule: after optimizer steps 1, 1 + k, 1 + 2k, ... (k = ``every``, default 10 as in the
    paper), at ``BATCH_END``, on the step's own batch (its first ``hessian_batch_size`` rows when
    set): labels are sampled from the model's predictions at the masked positions, and the squared
    gradient of their mean loss, times the number of positions, enters the EMA (see
    :mod:`efficient_bert.optim.sophia`). ``clip_norm`` clips that gradient's global norm first
    (the official code clips it at the run's gradient-clipping threshold; None: no clipping, as
    NoTrainNoGain). The forward and backward are an extra forward of the training budget
    (``budget.count_extra_forwards``). Each update logs :meth:`SophiaG.win_rate` as ``sophia/win_rate``
    and ``sophia/rho_for_win_rate_<q>``: what tells whether ρ suits the model.
    """

    def __init__(self, every: int = 10, hessian_batch_size: Optional[int] = None, clip_norm: Optional[float] = None):
        if every < 1:
            raise ValueError(f"every must be at least 1, got {every}")
        if clip_norm is not None and not clip_norm > 0:
            raise ValueError(f"clip_norm must be positive or null, got {clip_norm}")
        self.every = int(every)
        self.hessian_batch_size = hessian_batch_size
        self.clip_norm = clip_norm
        self.steps = 0
        self.updates = 0

    def __repr__(self) -> str:
        return (f"SophiaHessian(every={self.every}, hessian_batch_size={self.hessian_batch_size}, "
                f"clip_norm={self.clip_norm})")

    def match(self, event: Event, state: State) -> bool:
        return event == Event.BATCH_END

    def apply(self, event: Event, state: State, logger: Logger) -> None:
        self.steps += 1
        if (self.steps - 1) % self.every:
            return
        optimizer = next((o for o in state.optimizers if isinstance(o, SophiaG)), None)
        if optimizer is None:
            raise ValueError("SophiaHessian updates a SophiaG optimizer, and this run has none: use "
                             "optimizer.name: sophiag (yamls/methods/sophiag.yaml)")
        batch = state.batch
        if self.hessian_batch_size is not None:
            batch = select_rows(batch, range(min(self.hessian_batch_size, batch_rows(batch))))
        chunk = state.device_train_microbatch_size if isinstance(state.device_train_microbatch_size, int) else None
        with extra_forward(state, rows=batch_rows(batch), backward=True), get_precision_context(state.precision):
            tokens = apply_sophia_hessian(state.model, optimizer, batch, chunk, state.device.batch_to_device,
                                          self.clip_norm)
        self.updates += 1
        logger.log_metrics({"sophia/hessian_updates": self.updates, "sophia/hessian_tokens": tokens,
                            **{f"sophia/{k}": v for k, v in optimizer.win_rate().items()}})

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "steps": self.steps, "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps, self.updates = int(state["steps"]), int(state.get("updates", 0))
