"""A built run: its trainer, loaders and records, and what starting and ending it takes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

from torch.utils.data import DataLoader

from efficient_bert.callbacks import EvalHistory, HFExport, WritesOutputs
from efficient_bert.data.dataloader import stop_workers
from efficient_bert.pretrain.trainer import Trainer


class RunFinished(Exception):
    """A resumed run with nothing left to train: said in one line, and nothing of the run is changed."""


@dataclass
class Run:
    """What :func:`build_trainer` made, for the entry point and for tests."""

    trainer: Trainer
    eval_history: EvalHistory
    hf_export: Optional[HFExport]
    eval_at_start: bool = False
    loaders: tuple[DataLoader, ...] = ()

    def fit(self) -> None:
        if self.eval_at_start and int(self.trainer.state.timestamp.batch) == 0:
            for callback in self.trainer.state.callbacks:  # their refusals come before the evaluation writes
                if isinstance(callback, WritesOutputs):
                    callback.check_outputs()
            self.trainer.eval()
        self.trainer.fit()

    def close(self) -> None:
        """Close the trainer (loggers, pending uploads), then the loaders: workers, then shared memory."""
        self.trainer.close()
        close_loaders(self.loaders)


def close_loaders(loaders: Sequence[DataLoader]) -> None:
    """Stop the loaders' worker processes, then free their datasets' shared memory, which the workers read."""
    for loader in loaders:
        stop_workers(loader)
    for loader in loaders:
        loader.dataset.close()
