"""How many samples and tokens the model was trained on, beside what the dataloader drew.

Composer counts a batch when the dataloader yields it, before any algorithm runs. Methods that choose
from what was drawn (selective backprop and RHO-loss score a pool and train a part of it; batch-size
warmup trains a prefix) then train fewer rows than Composer's ``time/sample`` and ``time/token``
say. This callback counts the rows that reach the training forward pass.
"""

from __future__ import annotations

from typing import Any

from composer.core import Callback, State
from composer.loggers import Logger

from efficient_bert.data.dataloader import real_tokens


class TrainedCounts(Callback):
    """Logs ``trained/samples`` and ``trained/tokens`` (cumulative, real tokens) after every step;
    kept in checkpoints, so a resumed run continues the count."""

    def __init__(self):
        self.samples = 0
        self.tokens = 0

    def before_forward(self, state: State, logger: Logger) -> None:  # once per training microbatch
        self.samples += int(state.batch["input_ids"].shape[0])
        self.tokens += real_tokens(state.batch)

    def batch_end(self, state: State, logger: Logger) -> None:
        logger.log_metrics({"trained/samples": self.samples, "trained/tokens": self.tokens})

    def state_dict(self) -> dict[str, Any]:
        return {"samples": self.samples, "tokens": self.tokens}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.samples, self.tokens = int(state.get("samples", 0)), int(state.get("tokens", 0))
