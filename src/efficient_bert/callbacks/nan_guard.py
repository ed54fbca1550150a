"""Stop training with a clear message as soon as the loss is NaN or infinite."""

from __future__ import annotations

from typing import Optional

import torch
from composer.core import Callback, State
from composer.loggers import Logger


class NonFiniteLossError(RuntimeError):
    pass


class NaNGuard(Callback):
    """Raises :class:`NonFiniteLossError` at the end of the first step whose loss is not finite,
    before that step's checkpoint or evaluation.

    Continuing would only write NaN weights over good checkpoints; stopping keeps the last good one.
    The check makes the host wait for the GPU only once the whole step is queued: each microbatch's
    verdict is computed on the device and copied to host memory behind its loss, and the host waits
    for the last copy at the step's end.
    """

    def __init__(self) -> None:
        self._verdict: Optional[torch.Tensor] = None  # this step's [non-finite, first such loss], on the device
        self._host: Optional[torch.Tensor] = None
        self._copied: Optional[torch.cuda.Event] = None

    def batch_start(self, state: State, logger: Logger) -> None:
        self._verdict = None
        self._copied = None

    def after_loss(self, state: State, logger: Logger) -> None:
        losses = state.loss.values() if isinstance(state.loss, dict) else [state.loss]
        for loss in losses:
            if not isinstance(loss, torch.Tensor):
                continue
            loss = loss.detach().float()
            verdict = torch.stack([(~torch.isfinite(loss)).any().float(), loss.mean()])
            if self._verdict is not None:  # keep the first non-finite loss of the step
                verdict = torch.where(self._verdict[0] > 0, self._verdict, verdict)
            self._verdict = verdict
        if self._verdict is None:
            return
        if self._host is None:
            self._host = torch.empty(2, pin_memory=self._verdict.is_cuda)
        self._host.copy_(self._verdict, non_blocking=True)
        if self._verdict.is_cuda:
            self._copied = torch.cuda.Event()
            self._copied.record()

    def batch_end(self, state: State, logger: Logger) -> None:
        if self._verdict is None:
            return
        if self._copied is not None:
            self._copied.synchronize()
        non_finite, value = self._host.tolist()
        if non_finite:
            raise NonFiniteLossError(
                f"training loss is {value} at batch {int(state.timestamp.batch)}. "
                "Usual causes: learning rate too high (lower optimizer.lr or lengthen the warmup), fp16 "
                "overflow (use precision=amp_bf16), or bad data. Checkpoints already saved are untouched; "
                "fix the cause and resume from the last one with load_path=...")
