"""Runs that stop and start again: nothing is overwritten, a killed run resumes as if it never stopped,
and a resumed run is bit-identical to the uninterrupted one on CPU."""

import json
import subprocess
import sys

import pytest

from conftest import ROOT
from test_train_e2e import TINY, run_main

KILLED = ROOT / "tests" / "helpers" / "train_until_killed.py"


def tiny(tokenizer_dir, token_mds, *extra):
    # dropout on: a resumed run must also draw the same dropout masks
    return [TINY, f"tokenizer.path={tokenizer_dir}", f"variables.data={token_mds}", "max_duration=60ba",
            "eval_interval=10ba", "save_interval=10ba", "model.hidden_dropout_prob=0.1", *extra]


def rows(folder):
    """metrics.jsonl without what depends on the clock."""
    volatile = ("wall_s", "throughput/", "time/remaining", "time/train", "time/val", "time/total")
    return [{k: v for k, v in json.loads(line).items() if not k.startswith(volatile)}
            for line in (folder / "metrics.jsonl").read_text().splitlines()]


def history(folder):
    return json.loads((folder / "eval_history.json").read_text())


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, tokenizer_dir, token_mds):
    out = tmp_path_factory.mktemp("resume") / "uninterrupted"
    done = run_main(*tiny(tokenizer_dir, token_mds, f"save_folder={out}"))
    assert done.returncode == 0, done.stderr[-3000:]
    return out, done.stdout


@pytest.mark.slow
def test_a_killed_run_resumes_as_if_it_never_stopped(tmp_path, tokenizer_dir, token_mds, uninterrupted):
    reference, reference_stdout = uninterrupted
    out = tmp_path / "run"
    args = tiny(tokenizer_dir, token_mds, f"save_folder={out}", "autoresume=true")
    killed = subprocess.run([sys.executable, str(KILLED), "35", *map(str, args)], cwd=ROOT, capture_output=True,
                            text=True, timeout=600)
    assert killed.returncode == -9, killed.stderr[-2000:]  # SIGKILL after step 35, past the checkpoint at 30
    assert [r["batch"] for r in history(out)] == [0, 10, 20, 30]
    resumed = run_main(*args)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    # the evaluations and the rows of steps 31-35, made twice, are there once
    assert history(out) == history(reference)
    assert rows(out) == rows(reference)
    summary = [line for line in resumed.stdout.splitlines() if "eval/LanguageCrossEntropy: first" in line]
    assert summary and summary[0] in reference_stdout


@pytest.mark.slow
def test_a_run_resumed_from_a_checkpoint_is_bit_identical(tmp_path, tokenizer_dir, token_mds, uninterrupted):
    reference, _ = uninterrupted
    out = tmp_path / "from-40"
    done = run_main(*tiny(tokenizer_dir, token_mds, f"save_folder={out}", f"load_path={reference / 'ep0-ba40-rank0.pt'}"))
    assert done.returncode == 0, done.stderr[-3000:]
    # every train loss from step 41 on and the evaluations at 50 and 60: equal to the last bit
    assert rows(out) == [r for r in rows(reference) if r["batch"] >= 40][1:]  # [0]: step 40's row, before the checkpoint
    assert history(out) == history(reference)  # the checkpoint carries the evaluations before it


@pytest.mark.slow
def test_a_refused_rerun_writes_nothing(tmp_path, tokenizer_dir, token_mds, uninterrupted):
    reference, _ = uninterrupted
    before = {p.name: p.read_bytes() for p in reference.iterdir() if p.is_file()}
    again = run_main(*tiny(tokenizer_dir, token_mds, f"save_folder={reference}", "model.hidden_size=32"))
    assert again.returncode == 2
    assert again.stderr.strip().splitlines()[-1] == (
        f"error: save_folder {reference} already holds a run (metrics.jsonl, run.json, eval_history.json, "
        "ep0-ba10-rank0.pt, ...): choose another save_folder, continue that run with autoresume=true, or replace "
        "it with save_overwrite=true")
    assert {p.name: p.read_bytes() for p in reference.iterdir() if p.is_file()} == before
