"""One rank of repeated multi-process runs, for the fault-injection test: imports the library once, then
for each JSON line on stdin forks a child that runs ``main.py``'s ``main(args)`` as this rank, and
answers ``{"pid": ...}`` when it starts and ``{"rc": ...}`` when it ends. A child may be told to kill
itself with SIGKILL at a point of the run:

- ``{"at": "step", "batch": B}``: in step B, after its backward, before the optimizer step;
- ``{"at": "eval", "batch": B, "eval_batch": J}``: in the evaluation after step B, after its J-th batch;
- ``{"at": "save", "batch": B}``: while the checkpoint of step B is being written, half of it on disk;
- ``{"at": "link", "batch": B}``: after that checkpoint is written, before ``latest-rank0.pt`` points at it.

Forking skips the 10 s import of Composer per run on a 2-core machine; each child is a fresh process
otherwise: its own process group, port, data loaders and shared memory.
"""

import io
import json
import os
import signal
import sys

import composer.utils.checkpoint as composer_checkpoint
import torch
from composer.core import Callback, Event

import efficient_bert.pretrain.build as build
from efficient_bert.pretrain.main import main


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class KillAt(Callback):
    def __init__(self, point: dict):
        self.point = point
        self.evaluated = 0

    def run_event(self, event: Event, state, logger) -> None:
        at, batch = self.point["at"], int(state.timestamp.batch)
        if at == "step" and event == Event.AFTER_BACKWARD and batch + 1 == self.point["batch"]:
            die()
        if at == "eval" and event == Event.EVAL_BATCH_END and batch == self.point["batch"]:
            self.evaluated += 1
            if self.evaluated == self.point["eval_batch"]:
                die()


def kill_during_saves(point: dict) -> None:
    """Patch the checkpoint writer: at step ``point["batch"]``, half a file then death, or death after the
    whole file but before the link to it."""
    write = composer_checkpoint._write_checkpoint_file
    suffix = f"-ba{point['batch']}-rank0.pt"

    def write_then_die(state_dict, filename):
        if not str(filename).endswith(suffix):
            return write(state_dict, filename)
        if point["at"] == "link":
            write(state_dict, filename)
            die()
        buffer = io.BytesIO()
        torch.save(state_dict, buffer)
        with open(filename, "wb") as handle:
            handle.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
            handle.flush()
            os.fsync(handle.fileno())
        die()

    composer_checkpoint._write_checkpoint_file = write_then_die


def child(order: dict) -> int:
    os.environ["MASTER_PORT"] = str(order["port"])
    out = os.open(order["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(out, 1)
    os.dup2(out, 2)
    point = order.get("kill")
    if point and point["at"] in ("save", "link"):
        kill_during_saves(point)
    elif point:
        build_trainer = build.build_trainer

        def build_with_kill(cfg):
            run = build_trainer(cfg)
            run.trainer.state.callbacks.append(KillAt(point))
            return run

        build.build_trainer = build_with_kill
    return main(order["args"])


if __name__ == "__main__":
    for line in sys.stdin:
        order = json.loads(line)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = child(order)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        print(json.dumps({"pid": pid}), flush=True)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"rc": os.waitstatus_to_exitcode(status)}), flush=True)
