"""Multi-process runs on the CPU (gloo): the same code path as `composer main.py` on several GPUs,
minus NCCL. The two-node test goes through Composer's own launcher; the others start the ranks
directly, with the variables the launcher sets."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
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
def rank_env(**extra: str) -> dict[str, str]:
    # one thread per process: two processes of two threads each on two cores ran 14% slower
    return {**os.environ, "CUDA_VISIBLE_DEVICES": "", "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1", **extra}


def spawn_ranks(nproc: int, *args: str, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    """``nproc`` processes of ``python *args`` with the variables Composer's launcher gives its ranks,
    started directly: the launcher's own import of Composer (12 s on 2 cores) is spared where a test
    is not about the launcher (the two-node test runs it). Each rank writes rank{rank}.stdout/.stderr in
    ``cwd``, as there."""
    port, procs = free_port(), []
    for rank in range(nproc):
        env = rank_env(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(nproc), LOCAL_WORLD_SIZE=str(nproc),
                       NODE_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        with open(cwd / f"rank{rank}.stdout", "w") as out, open(cwd / f"rank{rank}.stderr", "w") as err:
            procs.append(subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, stdout=out, stderr=err))
    deadline = time.monotonic() + timeout
    while any(p.poll() is None for p in procs):  # as the launcher does: one rank failing stops the others
        if time.monotonic() > deadline or any(p.returncode not in (None, 0) for p in procs):
            for p in procs:
                p.kill()
        time.sleep(0.2)
    codes = [p.returncode for p in procs]
    stderr = (cwd / "rank0.stderr").read_text()
    return subprocess.CompletedProcess(args, max(codes, key=abs), "", stderr)


def assert_clean_exit(result: subprocess.CompletedProcess, cwd: Path) -> None:
    assert result.returncode == 0, result.stderr[-3000:] + (cwd / "rank1.stderr").read_text()[-3000:]


def tiny_run(data: Path, tokenizer_dir: Path, save: Path, *extra: str) -> list[str]:
    return ["main.py", "yamls/tiny-cpu.yaml", f"variables.data_local={data}", f"tokenizer.path={tokenizer_dir}", "device=cpu",
            f"save_folder={save}", "max_duration=12ba", "eval_interval=6ba", "save_interval=12ba",
            "global_train_batch_size=16", *extra]


@pytest.mark.slow
def test_streaming_splits_an_epoch_across_ranks(tmp_path, tokenizer_dir, token_mds):
    """Every sample is read by exactly one rank; streaming pads the partition with at most
    world_size - 1 repeats so that ranks get equal counts."""
    result = spawn_ranks(2, "tests/helpers/rank_sample_ids.py", str(tokenizer_dir), str(token_mds), str(tmp_path),
                         cwd=tmp_path)
    assert_clean_exit(result, tmp_path)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    total = json.loads((Path(token_mds) / "train" / "index.json").read_text())
    n = sum(shard["samples"] for shard in total["shards"])
    seen = ranks[0]["ids"] + ranks[1]["ids"]
    assert ranks[0]["world_size"] == 2
    assert set(seen) == set(range(n))  # none lost
    assert len(ranks[0]["ids"]) == len(ranks[1]["ids"]) == -(-n // 2)
    assert len(seen) - len(set(seen)) == (-n) % 2  # repeats only to even out the ranks


@pytest.mark.slow
def test_two_processes_train_identical_replicas_and_resume_mid_epoch_bit_identical(tmp_path, tokenizer_dir, token_mds):
    """Two ranks (started with the variables Composer's launcher sets; the two-node test runs the launcher
    itself), with layer drop's per-step random depth and each rank's own dropout: both replicas end with
    identical weights, and resumed from step 6 both ranks draw again what they drew the first time, so the
    evaluation at 12 and the final weights are exactly the uninterrupted run's."""
    runs = {}
    for name, extra in (("whole", ()), ("resumed", (f"load_path={tmp_path / 'whole' / 'ck' / 'ep0-ba6-rank0.pt'}",))):
        (tmp_path / name).mkdir()
        result = spawn_ranks(2, *tiny_run(token_mds, tokenizer_dir, tmp_path / name / "ck", "save_interval=6ba",
                                          "model.hidden_dropout_prob=0.1",
                                          "algorithms={layer_drop: {theta_bar: 0.5, gamma: 100}}", *extra),
                             cwd=tmp_path / name)
        assert_clean_exit(result, tmp_path / name)
        check = json.loads((tmp_path / name / "ck" / "replica_check.json").read_text())
        assert check["world_size"] == 2 and check["batch"] == 12 and check["max_abs_diff"] == 0.0
        runs[name] = (json.loads((tmp_path / name / "ck" / "eval_history.json").read_text()), check["digests"])
    assert [e["batch"] for e in runs["resumed"][0]] == [0, 6, 12]
    assert runs["resumed"] == runs["whole"]
    # The global sample count is the global batch times the steps: each rank drew 8 per step.
    state = torch.load(tmp_path / "whole" / "ck" / "ep0-ba12-rank0.pt", map_location="cpu", weights_only=False)["state"]
    timestamp = state["timestamp"]["Timestamp"]
    assert (timestamp["batch"], timestamp["sample"], timestamp["token"]) == (12, 12 * 16, 12 * 16 * 64)


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
        procs.append(subprocess.Popen(cmd, cwd=ROOT, env=rank_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True))
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    check = json.loads((save / "replica_check.json").read_text())
    assert check["world_size"] == 2 and check["max_abs_diff"] == 0.0
    state = torch.load(save / "ep0-ba12-rank0.pt", map_location="cpu", weights_only=False)["state"]
    assert state["timestamp"]["Timestamp"]["sample"] == 12 * 16


@pytest.mark.slow
def test_fsdp2_trains_like_ddp_and_resumes_from_its_sharded_checkpoint(tmp_path, tokenizer_dir, token_mds):
    """FSDP version 2 runs on CPU processes: with the same data and seed it must evaluate exactly as
    DDP does (up to float reassociation), save one shard per rank, and resume from them."""
    losses = {}
    for name, extra in (("ddp", ()), ("fsdp", ("fsdp={version: 2}",))):
        (tmp_path / name).mkdir()
        result = spawn_ranks(2, *tiny_run(token_mds, tokenizer_dir, tmp_path / name / "ck", "model.name=mosaic_bert",
                                          *extra), cwd=tmp_path / name)
        assert_clean_exit(result, tmp_path / name)
        history = json.loads((tmp_path / name / "ck" / "eval_history.json").read_text())
        assert [e["batch"] for e in history] == [0, 6, 12]
        losses[name] = [e["eval/LanguageCrossEntropy"] for e in history]
    assert losses["fsdp"] == pytest.approx(losses["ddp"], rel=1e-5)
    assert losses["fsdp"][-1] < losses["fsdp"][0] - 0.3  # it trained
    sharded = tmp_path / "fsdp" / "ck" / "ep0-ba12"
    assert sorted(p.name for p in sharded.iterdir() if p.suffix == ".distcp") == ["__0_0.distcp", "__1_0.distcp"]
    assert not (tmp_path / "fsdp" / "ck" / "replica_check.json").exists()  # sharded weights: nothing to compare

    (tmp_path / "resumed").mkdir()
    result = spawn_ranks(2, *tiny_run(token_mds, tokenizer_dir, tmp_path / "resumed" / "ck", "model.name=mosaic_bert",
                                      "fsdp={version: 2}", f"load_path={sharded}", "max_duration=18ba",
                                      "eval_at_start=false"), cwd=tmp_path / "resumed")
    assert_clean_exit(result, tmp_path / "resumed")
    history = json.loads((tmp_path / "resumed" / "ck" / "eval_history.json").read_text())
    # the sharded checkpoint carries the evaluations before it, then the resumed run adds its own
    assert [e["batch"] for e in history] == [0, 6, 12, 18]
    assert [e["eval/LanguageCrossEntropy"] for e in history[:3]] == losses["fsdp"]
    assert history[-1]["eval/LanguageCrossEntropy"] < losses["fsdp"][-1]


def test_fsdp_section_is_checked():
    from composer.utils import FSDP2Config, FSDPConfig
    from transformers import BertConfig
    from transformers.models.bert.modeling_bert import BertLayer

    from efficient_bert.pretrain.build import build_parallelism
    from efficient_bert.model.hf_bert import is_bert_layer
    from efficient_bert.model.mosaic_bert import MosaicBertConfig, MosaicBertForMaskedLM
    from efficient_bert.errors import ConfigError

    v1 = build_parallelism({"sharding_strategy": "FULL_SHARD"}, 2, "gpu")["fsdp"]
    assert isinstance(v1, FSDPConfig) and v1.sharding_strategy == "FULL_SHARD"
    v2 = build_parallelism({"version": 2, "reshard_after_forward": False}, 2, "cpu")["fsdp"]
    assert isinstance(v2, FSDP2Config) and v2.reshard_after_forward is False
    assert build_parallelism(None, 2, "gpu") is None
    with pytest.raises(ConfigError, match=r"fsdp \(version 1\): unknown option 'sharding'.*did you mean 'sharding_strategy'"):
        build_parallelism({"sharding": "FULL_SHARD"}, 2, "gpu")
    with pytest.raises(ConfigError, match=r"fsdp \(version 2\): unknown option 'sharding_strategy'"):
        build_parallelism({"version": 2, "sharding_strategy": "FULL_SHARD"}, 2, "gpu")
    with pytest.raises(ConfigError, match="fsdp.version must be 1 .* or 2"):
        build_parallelism({"version": 3}, 2, "gpu")
    with pytest.raises(ConfigError, match="CUDA devices only; set fsdp.version: 2"):
        build_parallelism({}, 2, "cpu")
    # one shard unit per encoder layer, in both models
    model = MosaicBertForMaskedLM(MosaicBertConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                                                   intermediate_size=128, vocab_size=128))
    units = [name for name, m in model.named_modules() if model.fsdp_wrap_fn(m)]
    assert units == ["bert.layers.0", "bert.layers.1"]
    assert is_bert_layer(BertLayer(BertConfig(hidden_size=32, num_attention_heads=2))) and not is_bert_layer(model)
