"""Fault injection: a 2-process CPU run killed (SIGKILL, one rank, then the other as a launcher does) at
points drawn with fixed seeds, during a step, an evaluation or a checkpoint save, then continued with
autoresume, must end with the uninterrupted run's weights, metrics rows and evaluation history."""

from __future__ import annotations

import itertools
import json
import os
import random
import selectors
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT
from test_distributed import free_port, rank_env
from test_resume import history, rows

SERVER = ROOT / "tests" / "helpers" / "rank_server.py"
SAVES = (3, 6, 9, 12)  # save_interval=3ba over 12 steps
EVALS = (0, 6, 12)  # eval_at_start, eval_interval=6ba
POINTS = ("step", "save", "eval", "link")


class Ranks:
    """One rank_server.py per rank; each run of main.py is a forked child of each."""

    def __init__(self, world_size: int, folder: Path):
        self.folder = folder
        self.servers = []
        for rank in range(world_size):
            env = rank_env(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size),
                           LOCAL_WORLD_SIZE=str(world_size), NODE_RANK="0", MASTER_ADDR="127.0.0.1")
            self.servers.append(subprocess.Popen([sys.executable, str(SERVER)], cwd=ROOT, env=env, text=True,
                                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE))

    def run(self, args: list[str], name: str, kill: dict | None = None, timeout: float = 300) -> list[int]:
        """Run ``args`` on every rank (``kill`` on its ``rank`` only); when a rank dies, kill the others."""
        port = free_port()
        pids = []
        for rank, server in enumerate(self.servers):
            order = {"args": args, "port": port, "log": str(self.folder / f"{name}.rank{rank}.log"),
                     "kill": kill if kill and kill["rank"] == rank else None}
            server.stdin.write(json.dumps(order) + "\n")
            server.stdin.flush()
            pids.append(json.loads(server.stdout.readline())["pid"])
        codes: dict[int, int] = {}
        with selectors.DefaultSelector() as selector:
            for rank, server in enumerate(self.servers):
                selector.register(server.stdout, selectors.EVENT_READ, rank)
            while len(codes) < len(self.servers):
                ready = selector.select(timeout)
                if not ready:
                    raise TimeoutError(f"{name}: no rank ended within {timeout} s")
                for key, _ in ready:
                    codes[key.data] = json.loads(key.fileobj.readline())["rc"]
                    selector.unregister(key.fileobj)
                    if codes[key.data] != 0:  # as Composer's launcher does: the others go too
                        for rank, pid in enumerate(pids):
                            if rank not in codes:
                                try:
                                    os.kill(pid, signal.SIGKILL)
                                except ProcessLookupError:
                                    pass
        return [codes[r] for r in range(len(self.servers))]

    def close(self) -> None:
        for server in self.servers:
            server.stdin.close()
            server.wait(timeout=60)


def run_args(tokenizer_dir: Path, data: Path, save: Path) -> list[str]:
    return ["yamls/tiny-cpu.yaml", f"variables.data_local={data}", f"tokenizer.path={tokenizer_dir}", "device=cpu",
            f"save_folder={save}", "autoresume=true", "max_duration=12ba", "eval_interval=6ba", "save_interval=3ba",
            "train_log_interval=4ba", "model.hidden_dropout_prob=0.1", "save_num_checkpoints_to_keep=-1"]


def kill_point(trial: int, at: str) -> dict:
    rng = random.Random(trial)
    if at == "step":
        return {"at": at, "batch": rng.randint(1, 12), "rank": rng.randint(0, 1)}
    if at == "eval":
        return {"at": at, "batch": rng.choice(EVALS), "eval_batch": rng.randint(1, 4), "rank": rng.randint(0, 1)}
    return {"at": at, "batch": rng.choice(SAVES), "rank": 0}  # rank 0 writes the checkpoints


def describe(point: dict) -> str:
    at, batch = point["at"], point["batch"]
    if at == "step":
        where = f"in step {batch}, before its optimizer step"
    elif at == "eval":
        where = f"in the evaluation after step {batch}, after eval batch {point['eval_batch']}"
    elif at == "save":
        where = f"with half of the checkpoint of step {batch} written"
    else:
        where = f"after writing the checkpoint of step {batch}, before latest-rank0.pt points at it"
    return f"rank {point['rank']} killed {where}"


def outcome(save: Path) -> tuple:
    check = json.loads((save / "replica_check.json").read_text())
    return history(save), rows(save), check["digests"]


@pytest.mark.slow
def test_runs_killed_at_random_points_resume_to_the_uninterrupted_run(tmp_path, tokenizer_dir, token_mds, capsys):
    ranks = Ranks(2, tmp_path)
    try:
        assert ranks.run(run_args(tokenizer_dir, token_mds, tmp_path / "whole"), "whole") == [0, 0]
        reference = outcome(tmp_path / "whole")
        assert [r["batch"] for r in reference[0]] == list(EVALS)
        report = []
        for trial, at in zip(range(10), itertools.cycle(POINTS)):
            point = kill_point(trial, at)
            save = tmp_path / f"trial{trial}"
            args = run_args(tokenizer_dir, token_mds, save)
            killed = ranks.run(args, f"trial{trial}-killed", point)
            assert killed[point["rank"]] == -signal.SIGKILL, (trial, killed)
            resumed = ranks.run(args, f"trial{trial}-resumed")
            log = (tmp_path / f"trial{trial}-resumed.rank0.log").read_text()
            assert resumed == [0, 0], (trial, log[-3000:])
            got = outcome(save)
            assert got[0] == reference[0], f"trial {trial}: {describe(point)}: evaluation history"
            assert got[1] == reference[1], f"trial {trial}: {describe(point)}: metrics rows"
            assert got[2] == reference[2], f"trial {trial}: {describe(point)}: weights"
            set_aside = sum("a checkpoint whose save was cut off" in line for line in log.splitlines())
            report.append(f"trial {trial}: {describe(point)}; resumed: eval history, metrics rows and weights equal "
                          f"the uninterrupted run's" + (f" ({set_aside} cut-off checkpoint set aside)" if set_aside
                                                        else ""))
    finally:
        ranks.close()
    with capsys.disabled():
        print("\n" + "\n".join(report))
