"""Budget-aware training with a fake clock: stopping, schedules, markers, evaluation, resume, RST."""

import json
import math
import time

import pytest
from composer.core import Callback, Event

from conftest import ROOT
from efficient_bert.budget import BudgetSchedule, TrainingBudget, budget_multiplier


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class Ticks(Callback):
    """Each training step takes 10 fake seconds; each evaluation 100 (which must not count)."""

    def __init__(self, clock):
        self.clock = clock

    def run_event(self, event, state, logger):
        if event == Event.AFTER_DATALOADER:
            self.clock.now += 10.0
        elif event == Event.EVAL_START:
            self.clock.now += 100.0


@pytest.mark.parametrize("curve, at_half", [("linear", 1 - 0.9 * (0.5 - 0.1) / 0.9), ("constant", 1.0),
                                            ("cosine", 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.4 / 0.9))),
                                            ("exponential", 0.1 ** (0.4 / 0.9)), ("one_cycle", None)])
def test_schedule_curves_at_0_50_100_percent(curve, at_half):
    warmup = 0.5 if curve == "one_cycle" else 0.1
    assert budget_multiplier(0.0, curve, warmup, 0.1) == 0.0
    assert budget_multiplier(0.05, curve, warmup, 0.1) == pytest.approx(0.05 / warmup)
    if curve == "one_cycle":  # the peak is at the middle
        assert budget_multiplier(0.5, curve, warmup, 0.1) == 1.0
    else:
        assert budget_multiplier(0.5, curve, warmup, 0.1) == pytest.approx(at_half)
    assert budget_multiplier(1.0, curve, warmup, 0.1) == pytest.approx(1.0 if curve == "constant" else 0.1)


def test_wsd_is_flat_then_cools_down_as_one_minus_sqrt():
    # warmup 0.1, cooldown over the last 0.2: flat from 0.1 to 0.8, then alpha_f + (1 - alpha_f)(1 - sqrt(c))
    assert budget_multiplier(0.05, "wsd", 0.1, 0.0, 0.2) == pytest.approx(0.5)
    assert budget_multiplier(0.1, "wsd", 0.1, 0.0, 0.2) == 1.0
    assert budget_multiplier(0.8, "wsd", 0.1, 0.0, 0.2) == 1.0
    assert budget_multiplier(0.85, "wsd", 0.1, 0.0, 0.2) == pytest.approx(1 - math.sqrt(0.25))
    assert budget_multiplier(0.9, "wsd", 0.1, 0.1, 0.2) == pytest.approx(0.1 + 0.9 * (1 - math.sqrt(0.5)))
    assert budget_multiplier(1.0, "wsd", 0.1, 0.1, 0.2) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="cooldown"):
        BudgetSchedule("wsd", warmup=0.5, cooldown=0.6)


def test_rst_arithmetic_and_excluded_extra_forwards():
    clock = FakeClock()
    budget = TrainingBudget(hours=1.0, clock="rst", rst_factor=2.5, count_extra_forwards=False, timer=clock)
    budget.wall_seconds = 720.0  # 12 wall minutes on a machine 2.5x the reference: 30 RST minutes
    assert budget.rst_seconds == 1800.0 and budget.fraction == 0.5
    budget.excluded_seconds = 120.0
    assert budget.rst_seconds == 1500.0 and budget.used_seconds == 1500.0
    wall = TrainingBudget(hours=1.0, rst_factor=2.5, timer=clock)
    wall.wall_seconds = 720.0
    assert wall.fraction == 0.2 and wall.rst_seconds == 1800.0
    with pytest.raises(ValueError, match="calibrate"):
        TrainingBudget(hours=1.0, clock="rst")


@pytest.mark.parametrize("count_compilation", [False, True])
def test_compilation_inside_a_step_is_left_out_unless_counted(count_compilation):
    import itertools
    from types import SimpleNamespace

    import torch

    ticks = itertools.count(1.0)  # every reading of the clock is one second later
    budget = TrainingBudget(hours=1.0, count_compilation=count_compilation, timer=lambda: next(ticks))
    logger = SimpleNamespace(log_metrics=lambda metrics: None)
    fn = torch.compile(lambda x: x * 2 + 1, backend="eager")  # dynamo traces: its compile callbacks fire
    budget.run_event(Event.FIT_START, None, logger)
    try:
        for _ in range(2):  # the first step compiles (2 clock readings inside it), the second reuses the graph
            budget.run_event(Event.BEFORE_DATALOADER, None, logger)
            fn(torch.ones(3))
            budget.run_event(Event.BATCH_END, None, logger)
    finally:
        budget.run_event(Event.FIT_END, None, logger)
    # left out, step 1 runs from 1 to 4 with compilation from 2 to 3, step 2 from 5 to 6; counted,
    # nothing reads the clock at compilation: step 1 runs from 1 to 2, step 2 from 3 to 4
    assert budget.wall_seconds == (2.0 if count_compilation else 3.0)
    assert budget.compile_seconds == (0.0 if count_compilation else 1.0)
    from torch._dynamo.callback import callback_handler
    assert budget._compile_start not in callback_handler.start_callbacks


def test_calibration_file_is_read_and_checked(tmp_path):
    from efficient_bert.budget.calibrate import load_rst_factor

    path = tmp_path / "rst.json"
    with pytest.raises(FileNotFoundError, match="efficient_bert.budget.calibrate --out"):
        load_rst_factor(path)
    path.write_text(json.dumps({"rst_factor": 0.25}))
    assert load_rst_factor(path) == 0.25
    path.write_text("{}")
    with pytest.raises(ValueError, match="no numeric rst_factor"):
        load_rst_factor(path)


def build(tmp_path, tokenizer_dir, token_mds, *overrides):
    from efficient_bert.builders import build_trainer
    from efficient_bert.config import load_config

    cfg = load_config(ROOT / "yamls" / "tiny-cpu.yaml", [
        f"tokenizer.path={tokenizer_dir}", f"variables.data={token_mds}", f"save_folder={tmp_path / 'ckpt'}",
        "loggers.wandb=null", "callbacks.hf_export=null", "eval_at_start=false", "max_duration=1000ba",
        "scheduler={name: budget, curve: linear, warmup: 0.1, alpha_f: 0.05}", "budget.hours=0.1",
        "budget.finetune_time_markers=[0.5]", "budget.eval_every=0.25", "save_interval=1000ba", *overrides])
    run = build_trainer(cfg)
    budget = next(c for c in run.trainer.state.callbacks if isinstance(c, TrainingBudget))
    clock = FakeClock()
    budget.timer = clock
    run.trainer.state.callbacks.append(Ticks(clock))
    return run, budget


@pytest.mark.slow
def test_budget_stops_anneals_exports_evaluates_and_resumes(tmp_path, tokenizer_dir, token_mds):
    # 0.1 h = 360 s = 36 steps of 10 fake seconds; evaluations (100 s each) are not counted
    run, budget = build(tmp_path, tokenizer_dir, token_mds, "save_interval=18ba")
    run.fit()
    state = run.trainer.state
    assert int(state.timestamp.batch) == 36 and budget.fraction == 1.0
    assert state.optimizers[0].param_groups[0]["lr"] == pytest.approx(3.0e-3 * 0.05)  # annealed to alpha_f
    assert [r["batch"] for r in run.eval_history.records] == [9, 18, 27, 36]
    markers = tmp_path / "ckpt" / "time_markers"
    assert [p.name for p in markers.iterdir()] == ["marker-0.5"]
    assert (markers / "marker-0.5" / "config.json").exists()
    run.close()

    # resume from the checkpoint at batch 18: the spent half of the budget comes back with it
    resumed, budget = build(tmp_path, tokenizer_dir, token_mds, f"load_path={tmp_path / 'ckpt' / 'ep0-ba18-rank0.pt'}",
                            f"save_folder={tmp_path / 'ckpt2'}")
    assert budget.wall_seconds == 180.0
    resumed.fit()
    assert int(resumed.trainer.state.timestamp.batch) == 36 and budget.wall_seconds == 360.0
    assert not (tmp_path / "ckpt2" / "time_markers").exists()  # marker 0.5 was done before the checkpoint
    resumed.close()


@pytest.mark.slow
def test_early_stop_when_eval_loss_is_too_high(tmp_path, tokenizer_dir, token_mds, caplog):
    run, budget = build(tmp_path, tokenizer_dir, token_mds, "budget.finetune_time_markers=[]",
                        "budget.early_stop_time=0.25", "budget.early_stop_eval_loss=1.0")
    with caplog.at_level("WARNING"):
        run.fit()
    assert int(run.trainer.state.timestamp.batch) == 9
    assert "early stop: eval/LanguageCrossEntropy" in caplog.text
    run.close()


def test_budget_config_errors_name_the_fix(tmp_path, tokenizer_dir):
    from efficient_bert.builders import build_budget
    from efficient_bert.config import BudgetConfig
    from efficient_bert.registry import ConfigError

    with pytest.raises(ConfigError, match="^budget.finetune_time_markers, .* need budget.hours"):
        build_budget(BudgetConfig(finetune_time_markers=[0.5]), str(tmp_path))
    with pytest.raises(ConfigError, match="set both or neither"):
        build_budget(BudgetConfig(hours=1.0, early_stop_time=0.5), str(tmp_path))
    with pytest.raises(ConfigError, match="budget: no RST calibration"):
        build_budget(BudgetConfig(hours=1.0, clock="rst", calibration=str(tmp_path / "x.json")), None)


def test_calibrate_writes_the_factor_of_the_reference_workload(tmp_path, capsys):
    from efficient_bert.budget.calibrate import REFERENCE_SECONDS, load_rst_factor, main

    out = tmp_path / "rst.json"
    assert main(["--size", "tiny", "--steps", "1", "--out", str(out)]) == 0
    assert "calibrating (tiny workload on cpu)" in capsys.readouterr().err  # progress while it measures
    result = json.loads(out.read_text())
    assert result["rst_factor"] == pytest.approx(REFERENCE_SECONDS["tiny"] / result["seconds_per_step"])
    assert load_rst_factor(out) == result["rst_factor"]
    start = time.monotonic()
    with pytest.raises(SystemExit, match="exists"):  # never overwritten, and refused before measuring
        main(["--size", "tiny", "--steps", "100", "--out", str(out)])
    assert time.monotonic() - start < 1
