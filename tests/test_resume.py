"""Runs that stop and start again: nothing is overwritten, a killed run resumes as if it never stopped,
and a resumed run is bit-identical to the uninterrupted one on CPU; finished runs, cut-off saves, SIGTERM,
a full disk and a run that trained nothing."""

import json
import re
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT
from test_train_e2e import TINY, run_main

KILLED = ROOT / "tests" / "helpers" / "train_until_killed.py"


def tiny(tokenizer_dir, token_mds, *extra):
    # dropout on: a resumed run must also draw the same dropout masks
    return [TINY, f"tokenizer.path={tokenizer_dir}", f"variables.data_local={token_mds}", "max_duration=60ba",
            "eval_interval=10ba", "save_interval=10ba", "model.hidden_dropout_prob=0.1", "callbacks.hf_export={}",
            *extra]


def rows(folder):
    """metrics.jsonl without what depends on the clock."""
    volatile = ("wall_s", "throughput/", "time/remaining", "time/train", "time/val", "time/total")
    return [{k: v for k, v in json.loads(line).items() if not k.startswith(volatile)}
            for line in (folder / "metrics.jsonl").read_text().splitlines()]


def history(folder):
    return json.loads((folder / "eval_history.json").read_text())


def files(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def checkpoint_history(path):
    import torch

    state = torch.load(path, map_location="cpu", weights_only=False)["state"]["callbacks"]
    return json.loads(state["EvalHistory"]["records"])


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
    killed = subprocess.run([sys.executable, str(KILLED), "35", "SIGKILL", *map(str, args)], cwd=ROOT,
                            capture_output=True, text=True, timeout=600)
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


@pytest.mark.slow
def test_the_last_checkpoint_holds_the_last_evaluation_and_resuming_a_finished_run_changes_nothing(
        tmp_path, tokenizer_dir, token_mds, uninterrupted):
    reference, _ = uninterrupted
    assert checkpoint_history(reference / "ep0-ba60-rank0.pt") == history(reference)  # [0, 10, ..., 60]
    out = tmp_path / "finished"
    shutil.copytree(reference, out, symlinks=True)
    before = files(out)
    again = run_main(*tiny(tokenizer_dir, token_mds, f"save_folder={out}", "autoresume=true"))
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stderr.strip().splitlines()[-1] == (
        f"[efficient-bert] the run in {out} already finished at batch 60 (max_duration 60ba): nothing to train; to "
        "train it further, raise max_duration")
    assert files(out) == before


@pytest.mark.slow
def test_extending_a_finished_run_keeps_every_earlier_record(tmp_path, tokenizer_dir, token_mds, uninterrupted):
    reference, _ = uninterrupted
    out = tmp_path / "extended"
    shutil.copytree(reference, out, symlinks=True)
    done = run_main(*tiny(tokenizer_dir, token_mds, f"save_folder={out}", "autoresume=true", "max_duration=70ba"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert history(out)[:-1] == history(reference) and history(out)[-1]["batch"] == 70
    # every row up to the last checkpoint; the reference's last row, the time counts logged after it, is redone
    assert "time/epoch" in rows(reference)[-1]
    assert rows(out)[:len(rows(reference)) - 1] == rows(reference)[:-1]
    assert json.loads((out / "hf" / "config.json").read_text())["vocab_size"] == 2000  # the export, replaced


@pytest.mark.slow
def test_a_save_cut_off_by_a_kill_is_set_aside_and_the_run_resumes_from_the_last_complete_one(
        tmp_path, tokenizer_dir, token_mds, uninterrupted):
    reference, _ = uninterrupted
    out = tmp_path / "cut"
    shutil.copytree(reference, out, symlinks=True)
    # as a kill during the save at batch 50 leaves it: a truncated file, latest-rank0.pt still at 40
    data = (reference / "ep0-ba50-rank0.pt").read_bytes()
    (out / "ep0-ba50-rank0.pt").write_bytes(data[: len(data) // 2])
    (out / "ep0-ba60-rank0.pt").unlink()
    (out / "latest-rank0.pt").unlink()
    (out / "latest-rank0.pt").symlink_to("ep0-ba40-rank0.pt")
    shutil.rmtree(out / "hf")
    done = run_main(*tiny(tokenizer_dir, token_mds, f"save_folder={out}", "autoresume=true"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"set aside ep0-ba50-rank0.pt ({len(data) // 2} bytes), a checkpoint whose save was cut off, as " \
           f"{out / 'incomplete' / 'ep0-ba50-rank0.pt'}" in done.stderr
    assert (out / "incomplete" / "ep0-ba50-rank0.pt").read_bytes() == data[: len(data) // 2]  # kept, not deleted
    assert history(out) == history(reference)
    assert rows(out) == rows(reference)


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_says_how_to_resume_and_the_resumed_run_is_the_uninterrupted_one(
        tmp_path, tokenizer_dir, token_mds, uninterrupted):
    reference, _ = uninterrupted
    out = tmp_path / "run"
    args = tiny(tokenizer_dir, token_mds, f"save_folder={out}", "autoresume=true")
    stopped = subprocess.run([sys.executable, str(KILLED), "35", "SIGTERM", *map(str, args)], cwd=ROOT,
                             capture_output=True, text=True, timeout=600)
    assert stopped.returncode == 143, stopped.stderr[-2000:]
    assert stopped.stderr.strip().splitlines()[-1] == (
        f"[efficient-bert] stopped by SIGTERM after batch 35: checkpoint {out / 'ep0-ba35-rank0.pt'} saved; continue "
        "with the same command and autoresume=true")
    assert not (out / "hf").exists()  # no export of an unfinished run
    resumed = run_main(*args)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert history(out) == history(reference)
    assert rows(out) == rows(reference)


@pytest.mark.slow
def test_a_full_disk_during_a_save_is_one_line_naming_what_is_kept(tmp_path, tokenizer_dir, token_mds):
    out = tmp_path / "full"
    out.mkdir()
    (out / "ep0-ba20-rank0.pt").symlink_to("/dev/full")  # the save at batch 20 meets a full disk
    done = run_main(*tiny(tokenizer_dir, token_mds, f"save_folder={out}", "save_overwrite=true", "max_duration=30ba"))
    assert done.returncode == 2, done.stderr[-3000:]
    assert re.fullmatch(rf"error: the disk holding {out} is full \(No space left on device; \d+ MiB free\): kept the "
                        r"run's records and its last complete checkpoint ep0-ba10-rank0.pt; free space and continue "
                        r"with autoresume=true", done.stderr.strip().splitlines()[-1]), done.stderr[-2000:]


@pytest.mark.slow
def test_a_run_that_failed_at_its_first_step_does_not_block_its_rerun(tmp_path, tokenizer_dir, token_mds):
    bad = tmp_path / "bad-mds"
    shutil.copytree(token_mds, bad)
    shard = next((bad / "train").glob("shard.*.mds*"))
    shard.write_bytes(b"\0" * 64)  # corrupt: the first training batch fails, after the evaluation at batch 0
    out = tmp_path / "run"
    failed = run_main(*tiny(tokenizer_dir, bad, f"save_folder={out}", "max_duration=10ba"))
    assert failed.returncode == 2 and "is corrupt or incomplete" in failed.stderr.strip().splitlines()[-1]
    assert [r["batch"] for r in history(out)] == [0]
    rerun = run_main(*tiny(tokenizer_dir, token_mds, f"save_folder={out}", "max_duration=10ba"))
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert [r["batch"] for r in history(out)] == [0, 10]


@pytest.mark.slow
def test_starting_below_a_later_checkpoint_of_the_folder_is_one_line_in_our_words(tmp_path, tokenizer_dir, token_mds,
                                                                                   uninterrupted):
    reference, _ = uninterrupted
    out = tmp_path / "later"
    shutil.copytree(reference, out, symlinks=True)
    before = files(out)
    done = run_main(*tiny(tokenizer_dir, token_mds, f"save_folder={out}", f"load_path={out / 'ep0-ba40-rank0.pt'}"))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        f"error: {out / 'ep0-ba50-rank0.pt'} is a checkpoint of a later step than the one this run starts from "
        "(batch 40), and the run would write over it: continue from the latest with autoresume=true and no load_path, save into "
        "another save_folder, or set save_overwrite=true")
    assert files(out) == before
