"""Composer's Trainer with the host reading training values from the GPU only at log intervals.

Composer's loop reads the training loss into a Python float after every batch, and computes and
logs every train metric after every batch. Each read waits until the GPU has finished the step, so
whatever the host does between steps (callbacks, loggers, fetching and copying the next batch)
leaves the GPU idle. :class:`Trainer` keeps the loss on the device and logs, every
``train_log_interval`` batches, its mean over the batches since the last log; the train metrics
are updated and logged on those batches only. In a single process it also skips the all-reduce
of each step's time and counts, another device round trip. Nothing else in the loop changes, so
algorithms, callbacks and loggers see the Composer they expect. With ``train_log_interval=1`` and
several processes it is Composer's loop.
"""

from __future__ import annotations

import datetime
from typing import Any, Optional

import composer
import torch
from composer.core import TimeUnit
from composer.utils import dist


class Trainer(composer.Trainer):
    """A :class:`composer.Trainer` that logs the training loss (its mean since the last log) and the
    train metrics every ``train_log_interval`` batches, and on the last batch when ``max_duration``
    is in batches."""

    def __init__(self, *args: Any, train_log_interval: int = 1, **kwargs: Any):
        if not isinstance(train_log_interval, int) or train_log_interval < 1:
            raise ValueError(f"train_log_interval is a number of batches >= 1, got {train_log_interval!r}")
        self.train_log_interval = train_log_interval
        self._loss_sums: dict[str, torch.Tensor] = {}
        self._batches_summed = 0
        self._logs_batch = True
        super().__init__(*args, **kwargs)

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

    def _accumulate_time_across_ranks(self, num_samples: Any, num_tokens: int, batch_time: datetime.timedelta
                                      ) -> tuple[int, int, datetime.timedelta]:
        if dist.get_world_size() == 1:  # nothing to sum: Composer's device round trip would only wait for the GPU
            return int(round(num_samples)), int(num_tokens), batch_time
        return super()._accumulate_time_across_ranks(num_samples, num_tokens, batch_time)
