"""Composer's SpeedMonitor, without its wait for the GPU at every batch in a single process."""

from __future__ import annotations

import composer.callbacks
from composer.core import State
from composer.loggers import Logger
from composer.utils import dist


class SpeedMonitor(composer.callbacks.SpeedMonitor):
    """:class:`composer.callbacks.SpeedMonitor`, logging the same metrics. To sum each batch's FLOPs over
    ranks, Composer's puts them in a device tensor, all-reduces it and reads it back, which waits for
    every kernel queued so far. In one process the sum is the number itself, so this one keeps it on
    the host; with several processes (or ``single_process_fast_path = False``) it is Composer's."""

    single_process_fast_path = True

    def batch_end(self, state: State, logger: Logger) -> None:
        flops_of = getattr(state.model, "flops_per_batch", None)  # a ComposerModel: no DDP wrapper in one process
        if not (self.single_process_fast_path and dist.get_world_size() == 1 and callable(flops_of)):
            return super().batch_end(state, logger)
        self.history_samples.append(state.timestamp.sample.value)
        self.history_tokens.append(state.timestamp.token.value)
        self.history_wct.append(state.timestamp.total_wct.total_seconds())
        self.history_flops.append(float(flops_of(state.batch)))
        if len(self.history_wct) == self.history_wct.maxlen:  # the four histories fill together
            seconds = self.history_wct[-1] - self.history_wct[0]
            batches = (len(self.history_samples) - 1) / seconds
            samples = (int(self.history_samples[-1]) - int(self.history_samples[0])) / seconds
            logger.log_metrics({"throughput/batches_per_sec": batches, "throughput/samples_per_sec": samples,
                                "throughput/device/batches_per_sec": batches,
                                "throughput/device/samples_per_sec": samples})
            tokens = int(self.history_tokens[-1]) - int(self.history_tokens[0])
            if tokens > 0:
                logger.log_metrics({"throughput/tokens_per_sec": tokens / seconds,
                                    "throughput/device/tokens_per_sec": tokens / seconds})
            flops = (sum(self.history_flops) - self.history_flops[0]) / seconds
            logger.log_metrics({"throughput/flops_per_sec": flops, "throughput/device/flops_per_sec": flops})
            if self.gpu_flops_available:
                logger.log_metrics({"throughput/device/mfu": flops / self.gpu_flops_available})
        train = state.timestamp.total_wct.total_seconds()
        logger.log_metrics({"time/train": train / self.divider, "time/val": self.total_eval_wct / self.divider,
                            "time/total": (train + self.total_eval_wct) / self.divider})
