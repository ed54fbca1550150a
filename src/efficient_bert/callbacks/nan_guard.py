"""Stop training with a clear message as soon as the loss is NaN or infinite."""

from __future__ import annotations

import torch
from composer.core import Callback, State
from composer.loggers import Logger


class NonFiniteLossError(RuntimeError):
    pass


class NaNGuard(Callback):
    """Raises :class:`NonFiniteLossError` after the first step whose loss is not finite.

    Continuing would only write NaN weights over good checkpoints; stopping keeps the last good one.
    """

    def after_loss(self, state: State, logger: Logger) -> None:
        losses = state.loss.values() if isinstance(state.loss, dict) else [state.loss]
        for loss in losses:
            if isinstance(loss, torch.Tensor) and not bool(torch.isfinite(loss.detach()).all()):
                raise NonFiniteLossError(
                    f"training loss is {loss.detach().float().mean().item()} at batch {int(state.timestamp.batch)}. "
                    "Usual causes: learning rate too high (lower optimizer.lr or lengthen the warmup), fp16 "
                    "overflow (use precision=amp_bf16), or bad data. Checkpoints already saved are untouched; "
                    "fix the cause and resume from the last one with load_path=...")
