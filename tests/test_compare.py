"""efficient-bert compare on the CPU, through the code paths a GPU slice uses: rows recorded with their
fingerprint, reused only when it matches, a stale record shown and set aside, the time limit, the
table rebuilt from the records alone."""

import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from dataclasses import replace
from pathlib import Path

import pytest

from conftest import ROOT, SAMPLE
from efficient_bert.data.convert import convert
from efficient_bert.data.corpus import find_split_files
from efficient_bert.tools.compare import main, parser
from efficient_bert.tools.compare.records import Record, all_records
from efficient_bert.tools.compare import run as compare_run
from efficient_bert.tools.compare.run import GlueQueue, ILFailed, Row, estimate, estimate_il, plan


@pytest.fixture
def compare_args(tmp_path, tokenizer_dir, token_mds, tiny_cost_table):
    clock = tmp_path / "clock.yaml"
    clock.write_text(f"budget: {{clock: reference, cost_table: {tiny_cost_table}}}\n")
    glue = tmp_path / "glue.yaml"  # one short SST-2 fine-tuning per row, on 256 examples
    glue.write_text("checkpoint: ???\nresults_dir: ???\nglue_dir: ???\nprogress_bar: false\n"
                    "max_train_examples: 256\nmax_eval_examples: 256\n"
                    "tasks: {sst2: {epochs: 1, lr: 3.0e-4, batch_size: 32, max_seq_len: 64, seeds: [19]}}\n")
    # 0.02 h = 72 reference s (conftest.TINY_COSTS): the baseline trains 8 steps of 10 s; layer drop
    # runs one layer in some steps (4 s), so it trains more steps for the same budget
    return ["--out", str(tmp_path / "work"), "--records", str(tmp_path / "records"), "--data", str(token_mds),
            "--tokenizer", str(tokenizer_dir), "--hours", "0.02", "--recipe", str(ROOT / "yamls" / "tiny-cpu.yaml"),
            "--clock", str(clock), "--yamls", str(ROOT / "yamls"), "--glue-dir", str(ROOT / "data" / "glue"),
            "--glue-yaml", str(glue), "--launcher", f"{sys.executable} -m", "--override", "eval_at_start=false",
            "--override", "scheduler={name: budget, curve: linear, warmup: 0.1}", "--override", "eval_subset_num_batches=2"]


@pytest.mark.slow
def test_compare_records_rows_reuses_them_and_refuses_stale_ones(tmp_path, compare_args, capsys):
    run = ["run", *compare_args, "--seeds", "17", "18", "--method-seeds", "1", "--methods", "baseline",
           "layer-drop+lion"]
    code = main(run)
    printed = capsys.readouterr()
    assert code == 0, printed.out[-3000:] + printed.err[-3000:]
    records = tmp_path / "records" / "0.02h"
    assert sorted(p.name for p in records.iterdir()) == ["baseline-s17.json", "baseline-s18.json",
                                                          "layer-drop+lion-s17.json"]
    base = json.loads((records / "baseline-s17.json").read_text())
    mine = json.loads((records / "layer-drop+lion-s17.json").read_text())
    assert base["pretrain"]["steps"] == 8 and base["pretrain"]["reference_hours"] == pytest.approx(80 / 3600)
    # one layer runs in some of layer drop's steps (4 s a pass instead of 10), and each Lion step costs 1 s more
    assert mine["pretrain"]["steps"] > 8 and 72 / 3600 <= mine["pretrain"]["reference_hours"] < 83 / 3600
    assert mine["inputs"]["config"]["budget"]["cost_table"]["optimizer"] == "Lion"
    # the eval curve: the budget charged at each evaluation (one a step here: a step is 14% of the budget),
    # ending at the final loss and the whole charge
    charged = [p[0] for p in base["pretrain"]["curve"]]
    assert len(charged) >= 6 and charged == sorted(charged) and charged[-1] == pytest.approx(80 / 3600)
    assert base["pretrain"]["curve"][-1][2] == base["pretrain"]["eval_loss"]
    # what the method's algorithms logged, by batch: layer drop's θ falls from 1 as it drops more
    assert base["pretrain"]["method_metrics"] == {}
    theta = mine["pretrain"]["method_metrics"]["layer_drop/theta"]
    assert [b for b, _ in theta] == list(range(mine["pretrain"]["steps"]))[:20]  # logged as each step starts
    assert theta[0][1] == pytest.approx(1.0, abs=0.05) and theta[-1][1] < theta[0][1]
    assert 0.0 <= base["glue"]["tasks"]["sst2"]["score"] <= 1.0 and base["glue"]["wall_seconds"] > 0
    # what decided the result: config, data, tokenizer, GLUE recipe; the code and machine beside it
    assert mine["inputs"]["config"]["optimizer"]["name"] == "lion" and "layer_drop" in mine["inputs"]["config"][
        "algorithms"]
    assert mine["inputs"]["data"] == base["inputs"]["data"] and set(base["inputs"]["data"]) == {"train", "validation"}
    assert base["inputs"]["glue"]["tasks"]["sst2"]["recipe"]["lr"] == 3.0e-4
    assert base["fingerprint"] != json.loads((records / "baseline-s18.json").read_text())["fingerprint"]  # the seed
    assert len(base["code"]["sources"]) == 16 and base["environment"]["torch"]
    assert "| layer-drop+lion | 17 |" in (tmp_path / "work" / "compare.md").read_text()

    # the same command again: every row is reused, nothing trains
    assert main(run) == 0
    again = capsys.readouterr().out
    assert again.count(": recorded ") == 3 and "[compare] GLUE" not in again and "efficient_bert.pretrain " not in again

    # another learning rate: the records are stale; nothing trains, the differences are named
    stale = [*run, "--override", "optimizer.lr=1e-3"]
    assert main(stale) == 2
    error = capsys.readouterr().err
    assert "0.02h/baseline-s17: config.optimizer.lr: 0.003 -> 0.001" in error and "--rerun-stale" in error
    assert json.loads((records / "baseline-s17.json").read_text()) == base

    # the time limit: a row that cannot end within it does not start
    assert main([*stale, "--rerun-stale", "--time-limit", "0.01", "--methods", "baseline", "--seeds", "17"]) == 0
    out = capsys.readouterr().out
    assert "left for a later slice: 0.02h/baseline-s17 (needs about" in out
    assert (tmp_path / "records" / "superseded" / "0.02h" / f"baseline-s17-{base['fingerprint']}.json").is_file()


@pytest.fixture
def rho_args(tmp_path, compare_args, tokenizer_dir, token_mds):
    """compare_args without GLUE, on a copy of the shards with a holdout split of other documents."""
    data = tmp_path / "mds"
    shutil.copytree(token_mds, data)
    convert(["holdout"], str(data), files=[str(f) for f in find_split_files(SAMPLE, "validation")],
            tokenizer=str(tokenizer_dir), concat_tokens=64)
    args = [*compare_args, "--methods", "baseline", "rho-loss", "--il-epochs", "1"]
    args[args.index("--data") + 1] = str(data)
    glue = args.index("--glue-dir")
    return args[:glue] + args[glue + 2:]


def test_a_holdout_added_for_rho_loss_leaves_the_other_rows_records_valid(rho_args, token_mds):
    """The holdout is the irreducible-loss model's data: converted beside the train split, it enters the
    fingerprint of the RHO-loss rows only, so the rows recorded before it stay valid."""
    args = [*rho_args, "--seeds", "17", "--method-seeds", "1"]
    without = list(args)
    without[without.index("--data") + 1] = str(token_mds)  # the same shards, before the holdout was added
    before = {row.name: row for row in plan(parser().parse_args(["run", *without, "--methods", "baseline"]))}
    after = {row.name: row for row in plan(parser().parse_args(["run", *args]))}
    assert after["baseline-s17"].fingerprint == before["baseline-s17"].fingerprint
    il = after["rho-loss-s17"].inputs["il"]
    assert il["holdout"]["rows"] > 0 and set(after["rho-loss-s17"].inputs["data"]) == {"train", "validation"}


@pytest.mark.slow
def test_a_rho_loss_row_trains_its_irreducible_loss_model_once_and_times_its_preparation(tmp_path, rho_args):
    """RHO-loss's steps 1-3 through compare: the model on the holdout, the losses of the row's seed, the row;
    the seconds of each preparation step go into the record and the next seed's estimate. Without GLUE
    too, the model is exported for extract-il."""
    args = [*rho_args, "--seeds", "17", "--method-seeds", "1"]
    assert main(["run", *args]) == 0
    record = json.loads((tmp_path / "records" / "0.02h" / "rho-loss-s17.json").read_text())
    il = record["pretrain"]["il_seconds"]
    assert il["model"] > 0 and il["losses"] > 0 and record["inputs"]["il"]["epochs"] == 1
    assert (tmp_path / "work" / "il-model" / "hf").is_dir() and (tmp_path / "work" / "il_losses-s17.npz").is_file()
    # seed 18: the model is reused, so only its losses are estimated, from seed 17's
    second = parser().parse_args(["run", *args, "--seeds", "17", "18", "--method-seeds", "2"])
    rows = {row.name: row for row in plan(second)}
    history = list(all_records(tmp_path / "records"))
    gpu = record["environment"]["gpu"]
    assert estimate_il(rows["rho-loss-s17"], second, history, gpu) == 0.0
    assert estimate_il(rows["rho-loss-s18"], second, history, gpu) == il["losses"]
    assert estimate_il(rows["baseline-s18"], second, history, gpu) == 0.0


@pytest.mark.slow
def test_a_failed_irreducible_loss_model_fails_the_rho_loss_rows_only(tmp_path, rho_args, monkeypatch, capsys):
    tried = []

    def fails(args, entry, seed):
        tried.append(seed)
        raise ILFailed("the irreducible-loss model failed (exit 1)")

    monkeypatch.setattr(compare_run, "prepare_il", fails)
    assert main(["run", *rho_args, "--seeds", "17", "18", "--method-seeds", "2"]) == 1
    assert tried == [17]  # once, not again for seed 18
    assert ("failed: 0.02h/rho-loss-s17 (the irreducible-loss model failed (exit 1)), 0.02h/rho-loss-s18 (the "
            "irreducible-loss model failed (exit 1))") in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "records" / "0.02h").iterdir()) == ["baseline-s17.json",
                                                                                  "baseline-s18.json"]


@pytest.mark.slow
def test_a_slice_prepares_the_data_runs_within_its_limit_and_packs_the_records(tmp_path, tokenizer_dir,
                                                                                compare_args):
    """bench/compare_slice.sh on the bundled sample: shards from the corpus, the rows, a tarball of records."""
    options = dict(zip(compare_args[::2], compare_args[1::2]))
    env = {**os.environ, "TOKENIZER": str(tokenizer_dir), "WORK": str(tmp_path / "slice"), "SEQ": "64",
           "RECORDS": str(tmp_path / "records"), "OUT": str(tmp_path), "PATH": f"{Path(sys.executable).parent}"
           f"{os.pathsep}{os.environ['PATH']}"}
    passed = [a for key in ("--recipe", "--clock", "--yamls", "--glue-yaml", "--launcher") for a in (key, options[key])]
    overrides = [a for i, a in enumerate(compare_args) if i and compare_args[i - 1] == "--override"]
    done = subprocess.run(["bash", "bench/compare_slice.sh", str(ROOT / "data" / "sample"), str(ROOT / "data" / "glue"),
                           "30", "--hours", "0.02", "--methods", "baseline", "--seeds", "17", "--method-seeds", "1",
                           *passed, *(a for o in overrides for a in ("--override", o))],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "shards: rows of 64 tokens" in done.stdout and "recorded: 0.02h/baseline-s17" in done.stdout
    with tarfile.open(tmp_path / "records.tgz") as packed:
        assert "./0.02h/baseline-s17.json" in packed.getnames()


@pytest.mark.slow
def test_compare_table_is_rebuilt_from_the_records(tmp_path):
    """The table, its verdicts and the plot from committed records alone (tests/data/compare)."""
    out = tmp_path / "results.md"
    assert main(["table", "--records", str(ROOT / "tests" / "data" / "compare"), "--out", str(out)]) == 0
    text = out.read_text()
    assert "## 3 minutes (budget.hours=0.05)" in text
    lines = {line.split(" | ")[0].lstrip("| "): line for line in text.splitlines() if line.startswith("| ")}
    assert "| 17, 18, 19 | 3.0000 | – | – |" in lines["baseline"]
    # pooled variance (2 * 0.01 + 0.005 + 0.005) / 4 over 4 degrees of freedom: s.e. 0.0791 for 2 seeds against 3
    assert "| 17, 18 | 3.3000 | +0.3000 ± 0.0791 | worse |" in lines["layer-drop"]
    assert "| 17, 18 | 3.0050 | +0.0050 ± 0.0791 | no measurable difference |" in lines["lion"]
    assert lines["layer-drop"].endswith("| 59.00 | -3.00 ± 1.58 | no measurable difference |")
    # in words, beside what NoTrainNoGain found for the same method
    assert ("- **layer-drop** (2 seeds): hurts on eval loss (+0.3000 ± 0.0791); no measurable difference on GLUE-5 "
            "(-3.00 ± 1.58 points). NoTrainNoGain: no gain over a fully-decayed baseline.") in text
    assert text.count("so measured again at the next budget: lion.") == 1  # layer drop's loss is worse
    assert (tmp_path / "results" / "eval_loss_0.05h.png").is_file()
    assert "![eval loss against budget, 3 minutes](results/eval_loss_0.05h.png)" in text


DIVERGED = ("seed 19: FineTuningDiverged: stsb seed 19: 1500 of 1500 predictions on dev are not finite: the "
            "fine-tuning diverged or the checkpoint holds non-finite weights; check the checkpoint, or lower the "
            "task's lr (3e-05)")


def test_a_glue_task_without_a_finite_score_leaves_its_row_out_of_the_glue_average(tmp_path):
    """A fine-tuning that diverged (its job's error says so), or left STS-B's score NaN (as on a GPU before
    jobs refused non-finite predictions): the task shows as diverged or failed, the row's seed has no
    GLUE average, and no NaN reaches the table."""
    records = tmp_path / "records"
    shutil.copytree(ROOT / "tests" / "data" / "compare", records)
    out = tmp_path / "results.md"

    def table(stsb: dict[int, dict]) -> tuple[str, str]:
        for seed, entry in stsb.items():
            path = records / "0.05h" / f"lion-s{seed}.json"
            data = json.loads(path.read_text())
            data["glue"]["tasks"]["stsb"] = entry
            data["glue"]["average"] = entry.pop("average")
            path.write_text(json.dumps(data))
        assert main(["table", "--records", str(records), "--out", str(out)]) == 0
        text = out.read_text()
        assert "nan" not in text.lower()
        return next(line for line in text.splitlines() if line.startswith("| lion |")), text

    # seed 17 diverged, with the suite's average over the four other tasks; seed 18: NaN, and a NaN average
    lion, text = table({17: {"score": None, "errors": [DIVERGED], "average": 0.6},
                        18: {"score": float("nan"), "average": float("nan")}})
    assert lion.endswith("| 22.00 | 82.00 | 72.00 | failed | 67.00 | – | – | – |")
    assert ("; GLUE-5 incomplete, no finite score for STS-B (seed 17, diverged), STS-B (seed 18): no GLUE average "
            "for those seeds. NoTrainNoGain") in text
    lion, text = table({18: {"score": None, "errors": [DIVERGED], "average": 0.6}})
    assert lion.endswith("| 22.00 | 82.00 | 72.00 | diverged | 67.00 | – | – | – |")
    assert "STS-B (seed 17, diverged), STS-B (seed 18, diverged): no GLUE average" in text


def test_glue_that_diverged_is_recorded_and_other_failures_are_run_again(tmp_path):
    assert compare_run.glue_summary(tmp_path) is None
    assert compare_run.glue_problem(None) == "the suite wrote no results"
    tasks = {"sst2": {"errors": [], "score": 0.8}, "stsb": {"errors": [DIVERGED]}}
    (tmp_path / "glue").mkdir()
    (tmp_path / "glue" / "results.json").write_text(json.dumps({"tasks": tasks}))
    assert compare_run.glue_problem(compare_run.glue_summary(tmp_path)) is None  # the method's outcome: recorded
    oom = "seed 19: RuntimeError: CUDA out of memory"
    tasks["cola"] = {"errors": [oom]}
    assert compare_run.glue_problem({"tasks": tasks}) == oom


def test_compare_refuses_what_a_row_would_fail_on(tmp_path, token_mds):
    base = ["run", "--out", str(tmp_path / "c"), "--records", str(tmp_path / "r"), "--data", str(token_mds),
            "--tokenizer", str(tmp_path), "--hours", "0.1", "--yamls", str(ROOT / "yamls"),
            "--recipe", str(ROOT / "yamls" / "tiny-cpu.yaml"),
            "--clock", str(ROOT / "yamls" / "budget" / "reference-clock.yaml")]
    with pytest.raises(SystemExit, match="has none: convert documents the train split lacks into it"):
        main([*base, "--methods", "baseline", "rho-loss"])
    with pytest.raises(SystemExit, match="--methods needs baseline"):
        main([*base, "--methods", "lion"])
    with pytest.raises(SystemExit, match="does not exist: run from the repository root"):
        main([*base[:-2], "--clock", "nowhere.yaml", "--methods", "baseline"])
    with pytest.raises(SystemExit, match="--method-seeds 4 must be between 1 and the 3 --seeds"):
        main([*base, "--methods", "baseline", "--method-seeds", "4"])
    with pytest.raises(SystemExit, match="--il-epochs 0 must be at least 1"):
        main([*base, "--methods", "baseline", "--il-epochs", "0"])
    with pytest.raises(SystemExit):  # argparse: unknown method
        main([*base, "--methods", "baseline", "layer-dorp"])
    assert not (tmp_path / "c").exists() and not (tmp_path / "r").exists()


def test_a_glue_suite_is_timed_when_it_ends_not_when_the_queue_is_next_polled(tmp_path):
    queue = GlueQueue(concurrent=2)
    queue.submit("quick", [sys.executable, "-c", "import time; time.sleep(0.5)"], tmp_path / "quick.log")
    time.sleep(3.0)  # the next row's pretraining, during which nobody polls
    ((key, code, seconds, _),) = queue.finished(block=True)
    assert key == "quick" and code == 0 and 0.5 <= seconds < 2.0


def test_a_gpu_without_records_is_estimated_from_another_gpus_not_the_default():
    """The first slice on a new GPU: other GPUs' times of the same rows, not the 1.3x default that
    leaves rows out; once the new GPU has a record of its own, only its records count."""
    def record(method, gpu, wall, glue, hours=0.05):
        return Record(method, hours, 17, "", {}, {}, {"gpu": gpu}, {"wall_seconds": wall}, {"wall_seconds": glue})

    history = [record("baseline", "H100", 240.0, 200.0), record("baseline", "H100", 250.0, 180.0),
               record("selective-backprop", "H100", 365.0, 210.0)]
    row = Row("lion", 0.05, 17, [], [], {}, Path("unused"))
    assert estimate(row, history, "H200", glue=True) == (250.0, 200.0)
    assert estimate(replace(row, method="selective-backprop"), history, "H200", glue=False) == (365.0, 0.0)
    history.append(record("baseline", "H200", 150.0, 120.0))
    assert estimate(row, history, "H200", glue=True) == (150.0, 120.0)
    # per budget: the H200's 3-minute record says nothing of a 10-minute row, the H100's 10-minute one does
    history.append(record("baseline", "H100", 700.0, 190.0, hours=0.16667))
    assert estimate(replace(row, hours=0.16667), history, "H200", glue=True) == (700.0, 190.0)
    default = 0.05 * 3600 * compare_run.DEFAULT_SLOWDOWN + compare_run.DEFAULT_OVERHEAD_S, compare_run.DEFAULT_GLUE_S
    assert estimate(row, [], "H200", glue=True) == default


def test_a_records_method_metrics_are_twenty_evenly_spaced_logs_from_first_to_last(tmp_path):
    rows = [{"batch": b, "loss/train/total": 5.0, **({"sophia/win_rate": b / 100} if b % 10 == 1 else {})}
            for b in range(500)]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    (trace,) = compare_run.method_metrics(tmp_path).values()  # the training loss is not the method's
    assert len(trace) == 20 and trace[0] == [1, 0.01] and trace[-1] == [491, 4.91]
    assert [b for b, _ in trace] == sorted(b for b, _ in trace) and compare_run.method_metrics(tmp_path / "none") == {}
