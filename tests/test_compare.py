"""efficient-bert compare on the CPU: methods and a composition against a baseline with two seeds at
one reference-clock budget, GLUE fine-tuning on the bundled SST-2 slice, resumption."""

import json
import sys

import pytest

from conftest import ROOT


@pytest.mark.slow
def test_compare_builds_the_table_and_resumes(tmp_path, tokenizer_dir, token_mds, tiny_cost_table, capsys):
    from efficient_bert.compare import main

    clock = tmp_path / "clock.yaml"
    clock.write_text(f"budget: {{clock: reference, cost_table: {tiny_cost_table}}}\n")
    glue = tmp_path / "glue.yaml"  # one short SST-2 fine-tuning per row, on 256 examples
    glue.write_text("checkpoint: ???\nresults_dir: ???\nglue_dir: ???\nprogress_bar: false\n"
                    "max_train_examples: 256\nmax_eval_examples: 256\n"
                    "tasks: {sst2: {epochs: 1, lr: 3.0e-4, batch_size: 32, max_seq_len: 64, seeds: [19]}}\n")
    out = tmp_path / "compare"
    # 0.02 h = 72 reference s (conftest.TINY_COSTS): the baseline trains 8 steps of 10 s; layer drop
    # runs one layer in some steps (4 s), so it trains more steps for the same budget
    args = ["--out", str(out), "--data", str(token_mds),
           "--tokenizer", str(tokenizer_dir), "--hours", "0.02", "--methods", "baseline", "layer-drop+lion",
           "--recipe", str(ROOT / "yamls" / "tiny-cpu.yaml"), "--clock", str(clock), "--yamls", str(ROOT / "yamls"),
           "--glue-dir", str(ROOT / "data" / "glue"), "--glue-yaml", str(glue), "--launcher", f"{sys.executable} -m",
           "--override", "loggers.wandb=null", "--override", "eval_at_start=false",
           "--override", "scheduler={name: budget, curve: linear, warmup: 0.1}",
           "--override", "eval_subset_num_batches=2"]
    assert main(args) == 0, capsys.readouterr().out[-3000:]
    capsys.readouterr()
    result = json.loads((out / "compare.json").read_text())
    rows = {r["method"]: r for r in result["rows"]}
    assert list(rows) == ["baseline", "layer-drop+lion"] and all(r["seed"] == 17 for r in rows.values())
    base, mine = rows["baseline"]["run"], rows["layer-drop+lion"]["run"]
    assert base["steps"] == 8 and base["reference_hours"] == pytest.approx(80 / 3600)
    assert mine["steps"] > 8 and 72 / 3600 <= mine["reference_hours"] < 82 / 3600
    assert all(0.0 <= row["glue"]["sst2"] <= 1.0 for row in rows.values())
    table = {line["method"]: line for line in result["tables"]["0.02"]}
    assert table["layer-drop+lion"]["eval_loss_delta"] == pytest.approx(mine["eval_loss"] - base["eval_loss"])
    assert table["layer-drop+lion"]["glue_delta"] == pytest.approx(
        rows["layer-drop+lion"]["glue"]["average"] - rows["baseline"]["glue"]["average"])
    assert table["layer-drop+lion"]["exceeds_seed_spread"] is None  # one baseline seed: no spread
    config = json.loads((out / "0.02h" / "layer-drop+lion-s17" / "run.json").read_text())
    assert config["optimizer"]["name"] == "lion" and "layer_drop" in config["algorithms"]
    assert (out / "0.02h" / "report" / "eval_loss_vs_budget.png").is_file()
    assert "| layer-drop+lion | 17 |" in (out / "compare.md").read_text()

    # the same command again: every row and fine-tuning is read back, nothing trains
    assert main(args) == 0
    again = capsys.readouterr().out
    assert again.count("done earlier") == 2 and "[compare] GLUE" not in again
    assert json.loads((out / "compare.json").read_text())["tables"] == result["tables"]


def test_methods_within_the_baseline_seed_spread_are_flagged():
    from efficient_bert.compare import Row, seed_spread, summarize

    def row(method, seed, loss, glue):
        return Row(method, 0.1, seed, f"x/{method}-{seed}", run={"returncode": 0, "eval_loss": loss, "steps": 10,
                   "tokens": 100, "masked_accuracy": 0.5, "reference_hours": 0.1}, glue={"average": glue})

    rows = [row("baseline", 17, 3.0, 0.70), row("baseline", 18, 3.2, 0.74), row("lion", 17, 3.15, 0.71),
            row("lamb", 17, 3.5, 0.60)]
    assert seed_spread(rows[:2]) == pytest.approx(0.2)
    table = {line["method"]: line for line in summarize(rows, ["baseline", "lion", "lamb"], 0.1)}
    assert table["baseline"]["eval_loss"] == pytest.approx(3.1) and table["baseline"]["seeds"] == [17, 18]
    assert table["lion"]["eval_loss_delta"] == pytest.approx(0.05) and table["lion"]["exceeds_seed_spread"] is False
    assert table["lamb"]["eval_loss_delta"] == pytest.approx(0.4) and table["lamb"]["exceeds_seed_spread"] is True
    assert table["lamb"]["glue_delta"] == pytest.approx(0.60 - 0.72)


def test_compare_refuses_what_a_row_would_fail_on(tmp_path, token_mds):
    from efficient_bert.compare import main

    base = ["--out", str(tmp_path / "c"), "--data", str(token_mds), "--tokenizer", "tok", "--hours", "0.1",
            "--yamls", str(ROOT / "yamls"), "--recipe", str(ROOT / "yamls" / "tiny-cpu.yaml"),
            "--clock", str(ROOT / "yamls" / "budget" / "reference-clock.yaml")]
    with pytest.raises(SystemExit, match="has none: convert the corpus with convert_c4.py --holdout_fraction"):
        main([*base, "--methods", "baseline", "rho-loss"])
    with pytest.raises(SystemExit, match="--methods needs baseline"):
        main([*base, "--methods", "lion"])
    with pytest.raises(SystemExit, match="does not exist: run from the repository root"):
        main([*base[:-2], "--clock", "nowhere.yaml", "--methods", "baseline"])
    with pytest.raises(SystemExit):  # argparse: unknown method
        main([*base, "--methods", "baseline", "layer-dorp"])
    assert not (tmp_path / "c").exists()
