"""``python train_until_killed.py BATCH SIGNAL YAML [key=value ...]``: main.py, with SIGNAL (SIGKILL,
SIGTERM ...) sent to itself at the end of step BATCH. SIGKILL is a killed run: no cleanup, no final flush."""

import os
import signal
import sys

from composer.core import Callback

import efficient_bert.pretrain.build as build
from efficient_bert.pretrain.main import main


class SignalAt(Callback):
    def __init__(self, batch: int, sig: signal.Signals):
        self.batch, self.sig = batch, sig

    def batch_end(self, state, logger):
        if int(state.timestamp.batch) == self.batch:
            os.kill(os.getpid(), self.sig)


if __name__ == "__main__":
    batch, sig = int(sys.argv[1]), signal.Signals[sys.argv[2]]
    build_trainer = build.build_trainer

    def build_with_signal(cfg):
        run = build_trainer(cfg)
        run.trainer.state.callbacks.append(SignalAt(batch, sig))
        return run

    build.build_trainer = build_with_signal
    sys.exit(main(sys.argv[3:]))
