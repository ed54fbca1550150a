"""Composer's Trainer with the host reading training values from the GPU only at log intervals.

Composer's loop reads the training loss into a Python float after every batch, and computes and
logs every train metric after every batch. Each read waits until the GPU has finished the step, so
whatever the host does between steps (callbacks, loggers, fetching and copying the next batch)
leaves the GPU idle. :class:`Trainer` keeps the loss on the device and logs, every
``train_log_interval`` batches, its mean over the batches since the last log; the train metrics
are updated and logged on those batches only.

In a single process it also skips the device reads Composer makes at every step: it all-reduces an
"iteration finished" flag after fetching each batch and the batch size before each step's
forward, reading both back to the host, all-reduces each step's time and counts, and steps the
optimizer through a closure that reads the loss into a float. Each read waits for every kernel
already queued, so the host cannot prepare a step while the GPU runs the one before. The
optimizer is stepped after the backward instead: the same update for every optimizer whose step
calls the closure once before updating (PyTorch's except L-BFGS, Composer's, this library's); any
other (Composer's SAM, L-BFGS) keeps the closure. Nothing else in the loop changes, so algorithms,
callbacks and loggers see the Composer they expect. With ``train_log_interval=1`` and several
processes it is Composer's loop; ``single_process_fast_path = False`` on an instance restores
Composer's reads in one process (for an A/B of what they cost).
"""

from __future__ import annotations

import datetime
import itertools
from typing import Any, Iterator, Optional, Sequence

import composer
import torch
from composer.core import Callback, Event, TimeUnit
from composer.trainer.trainer import TrainerMode
from composer.utils import dist, ensure_tuple

from efficient_bert.callbacks import RestoreRNGMidEpoch


class LossWindow(Callback):
    """Carries the loss sums of the log window in progress in checkpoints, so that a run resumed inside
    a window logs the mean the uninterrupted run logs. Each process sums its own losses (they are
    averaged over processes when logged), so the checkpoint holds every process's sums."""

    def __init__(self, trainer: "Trainer"):
        self.trainer = trainer

    def state_dict(self) -> dict[str, Any]:
        # every process saves: Composer gathers each one's RNG state into the checkpoint as well
        sums = {key: float(value) for key, value in self.trainer._loss_sums.items()}
        return {"sums": dist.all_gather_object(sums), "batches": self.trainer._batches_summed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        by_rank = state.get("sums", [])
        rank = dist.get_global_rank()
        self.trainer._loss_sums = dict(by_rank[rank]) if rank < len(by_rank) else {}
        self.trainer._batches_summed = int(state.get("batches", 0))


def calls_closure_once(optimizer: torch.optim.Optimizer) -> bool:
    """Whether ``optimizer.step(closure)`` evaluates the closure once, before its update, so that
    stepping it without one after the backward is the same update."""
    if isinstance(optimizer, torch.optim.LBFGS):
        return False
    return type(optimizer).__module__.startswith(("torch.optim.", "composer.optim.", "efficient_bert.optim."))


class Trainer(composer.Trainer):
    """A :class:`composer.Trainer` that logs the training loss (its mean since the last log) and the
    train metrics every ``train_log_interval`` batches, and on the last batch when ``max_duration``
    is in batches; a run resumed mid-epoch gets its checkpoint's RNG state where the uninterrupted
    run had it (:class:`~efficient_bert.callbacks.RestoreRNGMidEpoch`)."""

    single_process_fast_path = True

    def __init__(self, *args: Any, train_log_interval: int = 1, **kwargs: Any):
        if not isinstance(train_log_interval, int) or train_log_interval < 1:
            raise ValueError(f"train_log_interval is a number of batches >= 1, got {train_log_interval!r}")
        self.train_log_interval = train_log_interval
        self._loss_sums: dict[str, Any] = {}  # tensors, or floats restored from a checkpoint
        self._batches_summed = 0
        self._logs_batch = True
        callbacks = [*ensure_tuple(kwargs.pop("callbacks", None) or ()), LossWindow(self)]
        super().__init__(*args, callbacks=callbacks, **kwargs)

    def fit(self, *args: Any, **kwargs: Any) -> None:
        # Composer restores a loaded checkpoint's RNG state only where a resumed run starts an epoch
        if self._rng_state is not None and int(self.state.timestamp.batch_in_epoch) > 0:
            self.state.callbacks.append(RestoreRNGMidEpoch(self._rng_state))
            self._rng_state = None
        super().fit(*args, **kwargs)

    def logs_batch(self) -> bool:
        """Whether the batch being trained now logs the loss and the train metrics."""
        batch = int(self.state.timestamp.batch) + 1
        end = self.state.max_duration
        last = end is not None and end.unit == TimeUnit.BATCH and batch >= end.value
        return batch % self.train_log_interval == 0 or last

    def _train_batch(self, use_grad_scaling: bool) -> Optional[dict[str, torch.Tensor]]:
        self._logs_batch = self.logs_batch()
        losses = super()._train_batch(use_grad_scaling)
        if self.train_log_interval == 1 or losses is None:
            return losses
        for key, value in losses.items():
            self._loss_sums[key] = self._loss_sums[key] + value.detach() if key in self._loss_sums else value.detach()
        self._batches_summed += 1
        if not self._logs_batch:
            return None  # Composer then logs no loss for this batch and reads nothing from the GPU
        means = {key: total / self._batches_summed for key, total in self._loss_sums.items()}
        self._loss_sums, self._batches_summed = {}, 0
        return means

    def _eval_train_metrics(self, device_batch: Any) -> None:
        if self._logs_batch:
            super()._eval_train_metrics(device_batch)

    def _compute_and_log_metrics(self, dataloader_label: str, metrics: dict[str, Any]) -> None:
        if dataloader_label != "train" or self._logs_batch:
            super()._compute_and_log_metrics(dataloader_label, metrics)

    def _single_process(self) -> bool:
        return self.single_process_fast_path and dist.get_world_size() == 1

    def _accumulate_time_across_ranks(self, num_samples: Any, num_tokens: int, batch_time: datetime.timedelta
                                      ) -> tuple[int, int, datetime.timedelta]:
        if self._single_process():  # nothing to sum
            return int(round(num_samples)), int(num_tokens), batch_time
        return super()._accumulate_time_across_ranks(num_samples, num_tokens, batch_time)

    def _use_closures(self) -> bool:
        if self._single_process() and all(calls_closure_once(o) for o in ensure_tuple(self.state.optimizers)):
            return False
        return super()._use_closures()

    def _iter_dataloader(self, trainer_mode: TrainerMode) -> Iterator[Any]:
        if not self._single_process():  # ranks agree on when the shortest loader ends
            yield from super()._iter_dataloader(trainer_mode)
            return
        loader, length = self.state.dataloader, self.state.dataloader_len
        batches = iter(loader) if length is None else itertools.islice(loader, int(length))
        training = trainer_mode == TrainerMode.TRAIN
        while True:
            if training:
                self.engine.run_event(Event.BEFORE_DATALOADER)
            try:
                batch = next(batches)
            except StopIteration:
                if training:  # Composer's train loop would otherwise find the dataloader marker unfinished
                    self.engine.run_marker_only_event(Event.AFTER_DATALOADER)
                return
            yield batch

    def _train_microbatches(self, microbatches: Sequence[Any], total_loss_dict: dict[str, torch.Tensor],
                            ddp_sync: bool = True) -> torch.Tensor:
        if not self._single_process():  # the batch size is averaged over ranks, and DDP may skip syncs
            return super()._train_microbatches(microbatches, total_loss_dict, ddp_sync)
        # Composer's step, with the batch size kept a host number: its all-reduce is a no-op here
        spec, state = self._train_data_spec, self.state
        self.engine.run_event(Event.BEFORE_TRAIN_BATCH)
        use_grad_scaling = self._use_grad_scaling(state.precision, state.scaler)
        for optimizer in state.optimizers:
            try:
                optimizer.zero_grad(set_to_none=True)
            except TypeError:
                optimizer.zero_grad()
        if self.accumulate_train_batch_on_tokens:
            batch_size = float(sum(spec.get_num_tokens_in_batch(b, token_type="loss_generating") for b in microbatches))
        else:
            batch_size = float(sum(spec.get_num_samples_in_batch(b) for b in microbatches))
        whole_batch = state.batch
        for index, microbatch in enumerate(microbatches):
            state.batch = spec.microbatch_transforms(state.device.batch_to_device(microbatch))
            losses = self._train_microbatch(use_grad_scaling, batch_size, index + 1 == len(microbatches))
            for name, loss in losses.items():
                key = f"loss/train/{name}"
                if key not in total_loss_dict:
                    total_loss_dict[key] = torch.zeros(1, device=loss.device)
                total_loss_dict[key] += loss
        state.batch = whole_batch
        if use_grad_scaling:
            for optimizer in ensure_tuple(state.optimizers):
                state.scaler.unscale_(optimizer)
        self.engine.run_event(Event.AFTER_TRAIN_BATCH)
        return total_loss_dict["loss/train/total"]
