"""What the batch-selection methods share: per-sequence MLM losses and row subsets of MLM batches.

A batch here is a dict of per-row entries: tensors whose first dimension is the batch, and the
collator's host-side lists (``seq_lengths``, ``masked_counts``); keeping a subset of rows keeps the
same rows of every entry.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Mapping, Optional, Protocol, Sequence, runtime_checkable

import torch
import torch.nn.functional as F
from composer.core import State, Time, TimeUnit
from composer.core.precision import get_precision_context
from composer.utils import dist
from torch.optim.lr_scheduler import LambdaLR

from efficient_bert.budget import extra_forward
from efficient_bert.data.mlm_collator import batch_rows

log = logging.getLogger(__name__)

PAD_VALUES = {"labels": -100}  # padding for other entries is 0: attention_mask 0 hides it from the model


@runtime_checkable
class DrawsCandidatePool(Protocol):
    """An algorithm that trains on ``train_batch_size`` rows it selects, each step, from a pool of
    ``pool_size`` candidates (both over all processes): the dataloader's batch must be the pool.
    A trainer builder sizes the loader from ``pool_size``; at most one such algorithm runs at a time."""

    pool_size: int
    train_batch_size: int


def row_index(rows: Sequence[int], device: torch.device) -> torch.Tensor:
    """``rows`` as an index tensor on ``device``. To a GPU it goes from pinned memory, asynchronously:
    a copy from pageable memory waits for the GPU to finish its queue."""
    index = torch.tensor(rows, dtype=torch.long)
    if device.type == "cuda":
        return index.pin_memory().to(device, non_blocking=True)
    return index.to(device)


def select_rows(batch: Mapping[str, Any], rows: Sequence[int]) -> dict[str, Any]:
    """The given rows (in that order) of every per-row entry of ``batch``; other entries unchanged.
    Consecutive rows are a slice of each tensor (a view, no copy and no index on the device)."""
    n = batch_rows(batch)
    rows = [int(r) for r in rows]
    first = rows[0] if rows else 0
    span = rows == list(range(first, first + len(rows)))
    indices: dict[torch.device, torch.Tensor] = {}
    out: dict[str, Any] = {}
    for key, value in batch.items():
        if torch.is_tensor(value) and value.dim() > 0 and value.shape[0] == n:
            if span:
                out[key] = value[first:first + len(rows)]
            else:
                if value.device not in indices:
                    indices[value.device] = row_index(rows, value.device)
                out[key] = value.index_select(0, indices[value.device])
        elif isinstance(value, (list, tuple)) and len(value) == n:
            out[key] = [value[r] for r in rows]
        else:
            out[key] = value
    return out


def concat_rows(batches: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Stack the rows of several batches, right-padding 2-D entries to the widest (labels with -100)."""
    nonempty = [b for b in batches if batch_rows(b) > 0]
    if len(nonempty) <= 1:
        return dict(nonempty[0] if nonempty else batches[0])
    batches = nonempty
    out: dict[str, Any] = {}
    for key, first in batches[0].items():
        values = [b[key] for b in batches]
        if torch.is_tensor(first) and first.dim() >= 2:
            width = max(v.shape[1] for v in values)
            values = [F.pad(v, (0, width - v.shape[1]), value=PAD_VALUES.get(key, 0)) for v in values]
            out[key] = torch.cat(values)
        elif torch.is_tensor(first) and first.dim() == 1:
            out[key] = torch.cat(values)
        elif isinstance(first, (list, tuple)):
            out[key] = [x for v in values for x in v]
        else:
            out[key] = first
    return out


def sequence_losses_from_logits(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over each row's labelled tokens, shape (batch,); 0 for a row with none.

    ``logits`` are either (batch, seq, vocab) or, from a sparse-prediction model, (n_labelled,
    vocab) for the labelled positions in row-major order (what our Mosaic BERT returns).
    """
    labelled = labels != -100
    if logits.dim() == 3:
        logits = logits[labelled]
    token_losses = F.cross_entropy(logits.float(), labels[labelled], reduction="none")
    rows = torch.nonzero(labelled)[:, 0]
    sums = torch.zeros(labels.shape[0], dtype=torch.float32, device=labels.device).index_add_(0, rows, token_losses)
    return sums / labelled.sum(dim=1).clamp(min=1)


@torch.no_grad()
def sequence_mlm_losses(model: torch.nn.Module, batch: Mapping[str, Any], chunk_rows: Optional[int] = None,
                        to_device: Callable[[dict], dict] = lambda b: b) -> torch.Tensor:
    """Each row's MLM loss (on the host) under ``model`` (a ComposerModel whose outputs carry
    ``logits``), with no gradient, ``chunk_rows`` rows per forward pass (bounding the logits'
    memory); ``to_device`` moves each chunk where the model is."""
    n = batch_rows(batch)
    chunk_rows = chunk_rows or n
    losses = []
    for start in range(0, n, chunk_rows):
        part = to_device(select_rows(batch, range(start, min(n, start + chunk_rows))))
        losses.append(sequence_losses_from_logits(model(part).logits, part["labels"]).cpu())
    return torch.cat(losses)


def score_pool(state: State, chunk_rows: Optional[int] = None, eval_mode: bool = False) -> torch.Tensor:
    """Per-row MLM losses of ``state.batch`` (the candidate pool, still on the host at
    ``AFTER_DATALOADER``) under the training model, in the run's precision, as an extra forward
    pass the training budget can exclude; with ``eval_mode`` the model scores without dropout."""
    chunk = chunk_rows or (state.device_train_microbatch_size if isinstance(state.device_train_microbatch_size, int)
                           else None)
    was_training = state.model.training
    state.model.train(not eval_mode and was_training)
    try:
        with extra_forward(state, rows=batch_rows(state.batch)), get_precision_context(state.precision):
            return sequence_mlm_losses(state.model, state.batch, chunk, state.device.batch_to_device)
    finally:
        state.model.train(was_training)


def refuse_row_counted_duration(state: State, method: str) -> None:
    """A method that trains fewer rows than the loader draws cannot honour a ``max_duration`` in
    samples or tokens: Composer counts the rows drawn, before algorithms run."""
    unit = state.max_duration.unit if state.max_duration is not None else None
    if unit in (TimeUnit.SAMPLE, TimeUnit.TOKEN):
        counted = "samples" if unit == TimeUnit.SAMPLE else "tokens"
        raise ValueError(f"{method} skips rows that Composer counts as {counted}, so a max_duration of "
                         f"{state.max_duration} would train less than it says: give max_duration in batches "
                         "(e.g. max_duration=10000ba) or epochs")


def trained_samples_to_batches(state: State, train_batch_size: int, method: str) -> None:
    """A selection method trains ``train_batch_size`` rows a step of all it draws, and Composer would
    count the rows drawn against a ``max_duration`` in samples: such a duration becomes the number of
    steps that train that many samples (so a recipe's ``286720000sp`` at batch 4096 trains 70,000
    steps). A duration in tokens cannot be converted and is refused."""
    duration = state.max_duration
    if duration is None or duration.unit != TimeUnit.SAMPLE:
        refuse_row_counted_duration(state, method)
        return
    steps = -(-int(duration.value) // train_batch_size)
    state.max_duration = Time(steps, TimeUnit.BATCH)
    # the schedulers set the first step's LR at the Trainer's construction, from the old duration
    for scheduler in state.schedulers:
        if isinstance(scheduler, LambdaLR):
            lrs = [base * schedule(scheduler.last_epoch) for base, schedule in zip(scheduler.base_lrs,
                                                                                   scheduler.lr_lambdas)]
            for group, lr in zip(scheduler.optimizer.param_groups, lrs):
                group["lr"] = lr
            scheduler._last_lr = lrs
    log.info("%s draws more rows than it trains: max_duration %s is %d steps of %d trained rows", method, duration,
             steps, train_batch_size)


def pool_and_train_rows(pool_size: int, train_batch_size: int, world_size: int) -> tuple[int, int]:
    """Per-rank (candidates, trained rows) for global sizes; each rank selects from its own pool."""
    for name, value in (("pool size", pool_size), ("train batch size", train_batch_size)):
        if value % world_size:
            raise ValueError(f"the {name} ({value}) must be divisible by the number of processes ({world_size})")
    if train_batch_size > pool_size:
        raise ValueError(f"cannot train on {train_batch_size} rows selected from {pool_size} candidates")
    return pool_size // world_size, train_batch_size // world_size


def step_rows(state: State, pool_size: int, train_batch_size: int, method: str, size_option: str) -> tuple[int, int]:
    """This rank's (candidates, trained rows) for the step, checking the dataloader gave the pool."""
    pool_rows, train_rows = pool_and_train_rows(pool_size, train_batch_size, dist.get_world_size())
    if batch_rows(state.batch) != pool_rows:
        raise ValueError(f"{method} expects pools of {pool_rows} rows per rank ({size_option} {pool_size}) but the "
                         f"dataloader gave {batch_rows(state.batch)}: make the dataloader's batch the pool")
    return pool_rows, train_rows
