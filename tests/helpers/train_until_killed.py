"""``python train_until_killed.py BATCH YAML [key=value ...]``: train like main.py, then SIGKILL itself at the
end of step BATCH (a killed run: no cleanup, no final flush)."""

import os
import signal
import sys

from composer.core import Callback

from efficient_bert.pretrain.build import build_trainer
from efficient_bert.pretrain.schema import load_config


class KillAt(Callback):
    def __init__(self, batch: int):
        self.batch = batch

    def batch_end(self, state, logger):
        if int(state.timestamp.batch) == self.batch:
            os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    run = build_trainer(load_config(sys.argv[2], sys.argv[3:]))
    run.trainer.state.callbacks.append(KillAt(int(sys.argv[1])))
    run.fit()
