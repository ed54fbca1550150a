"""Save a checkpoint when the run is told to stop (SIGTERM: what Slurm, Kubernetes and ``kill`` send
before a kill), then stop, so that ``autoresume`` continues where it stopped.

The signal handler only takes note; the step in progress, and an evaluation in progress, finish
first. The checkpoint is then written at the end of that step, before anything else runs, and the
run ends with :class:`RunInterrupted`: no final evaluation and no export, which belong to a finished
run. So the time from the signal to the exit is one step, an evaluation if one was running, and
one save. A second signal exits at once, as without this callback. With several processes, all stop
after the same step: each step ends with an all-reduce of the flag.
"""

from __future__ import annotations

import signal
import threading
from typing import Any, Optional, Sequence

import torch
from composer.callbacks import CheckpointSaver
from composer.core import Callback, State
from composer.loggers import Logger
from composer.utils import dist


class RunInterrupted(Exception):
    """The run stopped on a signal; ``checkpoint`` is the one it saved (None without a save_folder)."""

    def __init__(self, signal_name: str, batch: int, checkpoint: Optional[str]):
        self.signal_name, self.batch, self.checkpoint = signal_name, batch, checkpoint
        kept = (f"checkpoint {checkpoint} saved; continue with the same command and autoresume=true" if checkpoint
                else "no save_folder, so no checkpoint was saved")
        super().__init__(f"stopped by {signal_name} after batch {batch}: {kept}")


class CheckpointOnSignal(Callback):
    """On ``signals`` (SIGTERM), save a checkpoint after the current step and raise :class:`RunInterrupted`."""

    def __init__(self, signals: Sequence[signal.Signals] = (signal.SIGTERM,)):
        self.signals = tuple(signals)
        self.received: Optional[signal.Signals] = None
        self._previous: dict[signal.Signals, Any] = {}

    def _note(self, signum: int, frame: Any) -> None:
        if self.received is not None:  # a second signal: no more waiting
            self._restore()
            signal.raise_signal(signum)
            return
        self.received = signal.Signals(signum)

    def fit_start(self, state: State, logger: Logger) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # Python takes signals in the main thread only: a fit in another thread keeps the defaults
        for sig in self.signals:
            self._previous[sig] = signal.signal(sig, self._note)

    def _restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def _agreed(self, state: State) -> Optional[signal.Signals]:
        if dist.get_world_size() == 1:
            return self.received
        flag = state.device.tensor_to_device(torch.tensor([int(self.received or 0)]))
        dist.all_reduce(flag, reduce_operation="MAX")
        return signal.Signals(int(flag.item())) if int(flag.item()) else None

    def batch_checkpoint(self, state: State, logger: Logger) -> None:
        received = self._agreed(state)
        if received is None:
            return
        saver = next((c for c in state.callbacks if isinstance(c, CheckpointSaver)), None)
        checkpoint = None
        if saver is not None:
            if saver.last_checkpoint_batch != state.timestamp.batch:  # not saved at this step already
                saver._save_checkpoint(state, logger)
            checkpoint = saver.saved_checkpoints[-1] if saver.saved_checkpoints else None
        self._restore()
        raise RunInterrupted(received.name, int(state.timestamp.batch), checkpoint)

    def fit_end(self, state: State, logger: Logger) -> None:
        self._restore()

    def close(self, state: State, logger: Logger) -> None:
        self._restore()
