"""The metrics file every run writes, the TensorBoard logger, and `efficient-bert report` on two
recorded tiny runs (tests/data/runs: a baseline with a GLUE result, and layer drop)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from efficient_bert.tools.report import EVAL_LOSS, ReportError, main, read_run, report

RUNS = Path(__file__).resolve().parent / "data" / "runs"


def rows_of(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def test_report_table_and_plots(tmp_path):
    summary = report([RUNS / "baseline", RUNS / "layer-drop"], tmp_path / "out")
    expected = {}
    for name in ("baseline", "layer-drop"):
        rows = rows_of(RUNS / name)
        evals = [r[EVAL_LOSS] for r in rows if EVAL_LOSS in r]
        expected[name] = (evals[-1], max(r["tokens"] for r in rows), max(r["batch"] for r in rows), len(evals))
    base, drop = summary["rows"]
    assert (base["run"], drop["run"]) == ("tiny-baseline", "tiny-layer-drop")  # names from run.json
    assert (base["final_eval_loss"], base["tokens"], base["batches"]) == expected["baseline"][:3]
    assert (drop["final_eval_loss"], drop["tokens"], drop["batches"]) == expected["layer-drop"][:3]
    assert drop["eval_loss_vs_baseline"] == pytest.approx(expected["layer-drop"][0] - expected["baseline"][0])
    assert base["eval_loss_vs_baseline"] == 0.0 and base["wall_vs_baseline"] == 1.0
    assert drop["wall_vs_baseline"] == pytest.approx(drop["wall_hours"] / base["wall_hours"])
    glue = json.loads((RUNS / "baseline" / "glue" / "results.json").read_text())["averages"]["glue"]["average"]
    assert (base["glue_average"], drop["glue_average"]) == (glue, None)
    assert base["unigram_floor"] is None  # these recorded runs predate the floor: the table shows "–"
    assert [len(r["eval_points"]) for r in summary["runs"]] == [expected["baseline"][3], expected["layer-drop"][3]]
    text = (tmp_path / "out" / "report.md").read_text()
    assert f"| tiny-layer-drop | {expected['layer-drop'][0]:.4f} | {drop['eval_loss_vs_baseline']:+.4f} |" in text
    assert f"| {100 * glue:.2f} |" in text
    from PIL import Image

    for name in ("eval_loss_vs_time.png", "eval_loss_vs_tokens.png"):
        path = tmp_path / "out" / name
        assert f"]({name})" in text and path.stat().st_size > 10_000
        assert Image.open(path).size == (840, 540)  # 7 x 4.5 in at 120 dpi
    with pytest.raises(ReportError, match="report.md exists"):
        report([RUNS / "baseline"], tmp_path / "out")
    # --baseline picks the reference run
    other = report([RUNS / "baseline", RUNS / "layer-drop"], tmp_path / "out2", baseline=RUNS / "layer-drop")
    assert other["baseline"] == "tiny-layer-drop" and other["rows"][1]["eval_loss_vs_baseline"] == 0.0


def test_report_errors(tmp_path, capsys):
    with pytest.raises(ReportError, match=r"has no metrics.jsonl: give the save_folder of a training run"):
        read_run(tmp_path)
    (tmp_path / "metrics.jsonl").write_text('{"batch": 1, "samples": 8, "tokens": 512, "wall_s": 1.0}\n{"bat')
    with pytest.raises(ReportError, match=r"metrics.jsonl:2 is not JSON"):
        read_run(tmp_path)
    (tmp_path / "metrics.jsonl").write_text('{"batch": 1, "samples": 8, "tokens": 512, "wall_s": 1.0}\n')
    assert main([str(tmp_path), "--out", str(tmp_path / "r")]) == 2
    assert "never evaluated" in capsys.readouterr().err


@pytest.mark.slow
def test_every_run_writes_its_metrics_file_and_tensorboard(tmp_path, tokenizer_dir, token_mds):
    from conftest import tiny_run

    save = tmp_path / "run"
    run = tiny_run(tokenizer_dir, token_mds, f"save_folder={save}", "eval_at_start=true", "max_duration=8ba",
                   "eval_interval=4ba", "save_interval=8ba", f"loggers.tensorboard={{log_dir: {tmp_path / 'tb'}}}",
                   "callbacks.lr_monitor=null", "callbacks.speed_monitor={window_size: 2}", "budget.hours=1.0",
                   "run_name=metrics-file", "train_log_interval=3ba")
    run.fit()
    run.close()
    rows = rows_of(save)
    evals = [r for r in rows if EVAL_LOSS in r]
    assert [r["batch"] for r in evals] == [0, 4, 8]  # eval_at_start is recorded too
    # the loss every 3 steps and at the last one, logged before the step is counted: steps 3, 6, 8 say 2, 5, 7
    assert [r["batch"] for r in rows if "loss/train/total" in r] == [2, 5, 7]
    last = rows[-1]
    assert last["tokens"] == 8 * 16 * 64 and last["samples"] == 8 * 16
    every_key = set().union(*rows)
    # lr_monitor, on by default, was switched off
    for key in ("throughput/tokens_per_sec", "budget/wall_hours", "budget/rst_hours"):
        assert key in every_key
    assert not any(k.startswith("lr-") for k in every_key)
    assert json.loads((save / "run.json").read_text())["run_name"] == "metrics-file"
    assert list((tmp_path / "tb").glob("**/events.out.tfevents.*"))
    record = read_run(save)
    assert record.final_eval_loss == evals[-1][EVAL_LOSS] and record.tokens == 8 * 16 * 64
    # every evaluation also records the eval set's unigram floor: the same rows each time, so the same value
    floors = {r["metrics/eval/UnigramEntropy"] for r in evals}
    assert len(floors) == 1 and record.unigram_floor == floors.pop()
    assert record.trained_tokens == 8 * 16 * 64  # every drawn row was trained (no selection method)


def test_runs_of_one_name_are_labelled_by_their_folder(tmp_path):
    import shutil

    for folder in ("first", "second", "other/second"):
        shutil.copytree(RUNS / "baseline", tmp_path / folder)
    summary = report([tmp_path / "first", tmp_path / "second"], tmp_path / "out")
    assert [r["run"] for r in summary["rows"]] == ["first", "second"]  # both are "tiny-baseline" in run.json
    assert "| second |" in (tmp_path / "out" / "report.md").read_text()
    summary = report([tmp_path / "second", tmp_path / "other" / "second"], tmp_path / "out2")
    assert [r["run"] for r in summary["rows"]] == [str(tmp_path / "second"), str(tmp_path / "other" / "second")]
