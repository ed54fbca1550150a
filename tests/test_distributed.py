"""Multi-process runs on the CPU through Composer's own launcher (gloo): the same code path as
`composer main.py` on several GPUs, minus NCCL."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launcher_command(nproc: int, *args: str, cwd: Path, port: int) -> list[str]:
    return [sys.executable, "-m", "composer.cli.launcher", "-n", str(nproc), "--master_port", str(port),
            "--stdout", str(cwd / "rank{rank}.stdout"), "--stderr", str(cwd / "rank{rank}.stderr"), *args]


# runs a command with a private /dev/shm, like a second machine's
OWN_SHM = ["unshare", "--mount", "--propagation", "private", "sh", "-c", 'mount -t tmpfs none /dev/shm && exec "$@"',
           "sh"]
ENV = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "WANDB_MODE": "disabled"}


def launch(nproc: int, *args: str, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(launcher_command(nproc, *args, cwd=cwd, port=free_port()), cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env=ENV)


def tiny_run(data: Path, tokenizer_dir: Path, save: Path, *extra: str) -> list[str]:
    return ["main.py", "yamls/tiny-cpu.yaml", f"variables.data={data}", f"tokenizer.path={tokenizer_dir}", "device=cpu",
            f"save_folder={save}", "max_duration=12ba", "eval_interval=6ba", "save_interval=12ba",
            "global_train_batch_size=16", "loggers.wandb=null", "callbacks.hf_export=null", *extra]


@pytest.mark.slow
def test_streaming_splits_an_epoch_across_ranks(tmp_path, tokenizer_dir, token_mds):
    """Every sample is read by exactly one rank; streaming pads the partition with at most
    world_size - 1 repeats so that ranks get equal counts."""
    result = launch(2, "tests/helpers/rank_sample_ids.py", str(tokenizer_dir), str(token_mds), str(tmp_path),
                    cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    total = json.loads((Path(token_mds) / "train" / "index.json").read_text())
    n = sum(shard["samples"] for shard in total["shards"])
    seen = ranks[0]["ids"] + ranks[1]["ids"]
    assert ranks[0]["world_size"] == 2
    assert set(seen) == set(range(n))  # none lost
    assert len(ranks[0]["ids"]) == len(ranks[1]["ids"]) == -(-n // 2)
    assert len(seen) - len(set(seen)) == (-n) % 2  # repeats only to even out the ranks


@pytest.mark.slow
def test_two_process_training_with_the_composer_launcher(tmp_path, tokenizer_dir, token_mds):
    save = tmp_path / "ck"
    result = launch(2, *tiny_run(token_mds, tokenizer_dir, save,
                                 "algorithms={layer_drop: {theta_bar: 0.5, gamma: 100}}"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:] + (tmp_path / "rank1.stderr").read_text()[-3000:]
    # Both replicas end with identical weights, even with layer drop's per-step random depth.
    check = json.loads((save / "replica_check.json").read_text())
    assert check["world_size"] == 2 and check["batch"] == 12 and check["max_abs_diff"] == 0.0
    assert check["digests"][0] == check["digests"][1]
    # The global sample count is the global batch times the steps: each rank drew 8 per step.
    state = torch.load(save / "ep0-ba12-rank0.pt", map_location="cpu", weights_only=False)["state"]
    timestamp = state["timestamp"]["Timestamp"]
    assert (timestamp["batch"], timestamp["sample"], timestamp["token"]) == (12, 12 * 16, 12 * 16 * 64)
    history = json.loads((save / "eval_history.json").read_text())
    assert [e["batch"] for e in history] == [0, 6, 12]


def own_shm_works() -> bool:
    """Whether this host lets a process get its own /dev/shm (a mount namespace; needs root)."""
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                            "mount -t tmpfs none /dev/shm"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.slow
def test_two_nodes_simulated_on_one_host(tmp_path, tokenizer_dir, token_mds):
    """Two launchers with node ranks 0 and 1, one process each, meeting at MASTER_ADDR=127.0.0.1, as
    on two machines. Each node caches the shards from the shared `remote` in its own `local`
    directory and has its own /dev/shm, as real nodes do (streaming keeps one node's state in
    shared memory under fixed names, so two nodes on one host would otherwise collide)."""
    if not own_shm_works():
        pytest.skip("simulating a second node needs its own /dev/shm (unshare --mount, as root)")
    port, save = free_port(), tmp_path / "ck"
    procs = []
    for node in (0, 1):
        (tmp_path / f"node{node}").mkdir()
        run = tiny_run(tmp_path / f"node{node}" / "cache", tokenizer_dir, save,
                       f"train_loader.dataset.remote={token_mds}", f"eval_loader.dataset.remote={token_mds}")
        cmd = launcher_command(1, "--world_size", "2", "--node_rank", str(node), "--master_addr", "127.0.0.1",
                               *run, cwd=tmp_path / f"node{node}", port=port)
        if node == 1:
            cmd = OWN_SHM + cmd
        procs.append(subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True))
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    check = json.loads((save / "replica_check.json").read_text())
    assert check["world_size"] == 2 and check["max_abs_diff"] == 0.0
    state = torch.load(save / "ep0-ba12-rank0.pt", map_location="cpu", weights_only=False)["state"]
    assert state["timestamp"]["Timestamp"]["sample"] == 12 * 16


def test_fsdp_section_is_checked(tmp_path):
    from efficient_bert.builders import build_parallelism
    from efficient_bert.registry import ConfigError

    assert build_parallelism({"sharding_strategy": "FULL_SHARD"}, 2) == {"fsdp": {"sharding_strategy": "FULL_SHARD"}}
    assert build_parallelism(None, 2) is None
    with pytest.raises(ConfigError, match=r"fsdp: unknown option 'sharding'.*did you mean 'sharding_strategy'"):
        build_parallelism({"sharding": "FULL_SHARD"}, 2)
