"""Budget-aware training with a fake clock: stopping, schedules, markers, evaluation, resume, RST."""

import json
import math
import time

import pytest
from composer.core import Callback, Event

from conftest import ROOT, StepWatch, tiny_run
from efficient_bert.budget import BudgetSchedule, TrainingBudget, budget_multiplier


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class Ticks(Callback):
    """Each training step takes ``step`` fake seconds (10); each evaluation 100 (which must not count)."""

    def __init__(self, clock, step=10.0):
        self.clock, self.step = clock, step

    def run_event(self, event, state, logger):
        if event == Event.AFTER_DATALOADER:
            self.clock.now += self.step
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
    with pytest.raises(FileNotFoundError, match="efficient-bert calibrate --out"):
        load_rst_factor(path)
    path.write_text(json.dumps({"rst_factor": 0.25}))
    assert load_rst_factor(path) == 0.25
    path.write_text("{}")
    with pytest.raises(ValueError, match="no numeric rst_factor"):
        load_rst_factor(path)


def build(tmp_path, tokenizer_dir, token_mds, *overrides, step_seconds=10.0):
    run = tiny_run(tokenizer_dir, token_mds, f"save_folder={tmp_path / 'ckpt'}", "max_duration=1000ba",
                   "scheduler={name: budget, curve: linear, warmup: 0.1, alpha_f: 0.05}", "budget.hours=0.1",
                   "budget.finetune_time_markers=[0.5]", "budget.eval_every=0.25", "save_interval=1000ba", *overrides)
    budget = next(c for c in run.trainer.state.callbacks if isinstance(c, TrainingBudget))
    clock = FakeClock()
    budget.timer = clock
    run.trainer.state.callbacks.append(Ticks(clock, step_seconds))
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
    card = (markers / "marker-0.5" / "README.md").read_text()  # the export at half the budget, as it was then
    assert "Trained 18 steps, " in card and "Budget: 0.1 hours on the wall clock (0.0500 hours charged)" in card
    # with the last evaluation before it (step 18's runs after the step's end, where the export is made)
    assert f"at step 9: **{run.eval_history.records[0]['eval/LanguageCrossEntropy']:.4f}**" in card
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
    from efficient_bert.pretrain.build import build_budget
    from efficient_bert.pretrain.schema import BudgetConfig
    from efficient_bert.errors import ConfigError

    with pytest.raises(ConfigError, match="^budget.finetune_time_markers, .* need budget.hours"):
        build_budget(BudgetConfig(finetune_time_markers=[0.5]), str(tmp_path))
    with pytest.raises(ConfigError, match="set both or neither"):
        build_budget(BudgetConfig(hours=1.0, early_stop_time=0.5), str(tmp_path))
    with pytest.raises(ConfigError, match="budget: no RST calibration"):
        build_budget(BudgetConfig(hours=1.0, clock="rst", calibration=str(tmp_path / "x.json")), None)


def test_calibrate_writes_the_factor_of_the_reference_workload(tmp_path, capsys):
    from efficient_bert.budget.calibrate import load_rst_factor, main
    from efficient_bert.budget.reference_workload import REFERENCE_SECONDS

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


def test_cost_table_prices_passes_by_running_layers_and_rows(tmp_path, tiny_cost_table):
    from efficient_bert.budget.cost_table import CostTable

    table = CostTable.load(tiny_cost_table)  # conftest.TINY_COSTS
    assert table.price(2, 16) == 10.0 and table.price(1, 16) == 4.0 and table.price(2, 8) == 5.0
    assert table.price(2, 32, backward=False) == 6.0 and table.price(1, 16, backward=False) == 1.0
    with pytest.raises(ValueError, match="3 running layers is outside this cost table's 1..2"):
        table.price(3, 16)
    with pytest.raises(ValueError, match="one train and one forward price per layer count"):
        CostTable(model=table.model, seq_len=64, rows=16, train=(1.0,), forward=(1.0, 2.0))
    with pytest.raises(FileNotFoundError, match="calibrate --cost-table --out"):
        CostTable.load(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text(json.dumps({"rows": 16}))
    with pytest.raises(ValueError, match="is not a cost table"):
        CostTable.load(tmp_path / "bad.json")


def reference_run(tmp_path, tokenizer_dir, token_mds, costs, *overrides, step_seconds=10.0):
    """A 0.05 h (180 reference s) budget on the reference clock with conftest.TINY_COSTS."""
    return build(tmp_path, tokenizer_dir, token_mds, "budget.clock=reference", f"budget.cost_table={costs}",
                 "budget.hours=0.05", "budget.finetune_time_markers=[]", *overrides, step_seconds=step_seconds)


@pytest.mark.slow
def test_reference_clock_trains_the_same_steps_on_any_wall_clock(tmp_path, tokenizer_dir, token_mds, tiny_cost_table):
    # each step trains 16 rows with both layers: 10 reference s, so 18 steps, on a machine that
    # takes 10 s a step and on one that takes 1000, with the evaluations at the same steps
    steps, evaluations = [], []
    for wall in (10.0, 1000.0):
        run, budget = reference_run(tmp_path / str(wall), tokenizer_dir, token_mds, tiny_cost_table, step_seconds=wall)
        run.fit()
        steps.append(int(run.trainer.state.timestamp.batch))
        evaluations.append([r["batch"] for r in run.eval_history.records])
        assert budget.charged_seconds == 180.0 and budget.fraction == 1.0
        assert budget.wall_seconds == 18 * wall  # still kept, for the record
        run.close()
    assert steps == [18, 18] and evaluations[0] == evaluations[1] and len(evaluations[0]) == 4


@pytest.mark.slow
def test_reference_clock_charges_stacked_layers_and_scored_rows(tmp_path, tokenizer_dir, token_mds, tiny_cost_table):
    # layer stacking: steps with one layer cost 4 s, with two 10 s
    run, budget = reference_run(tmp_path / "stack", tokenizer_dir, token_mds, tiny_cost_table,
                                "algorithms.layer_stacking={stack_at: [0.3], optimizer_state: fresh}")
    watch = StepWatch(run.trainer.state.model)  # counts the layers that ran, by hooks on the layers
    run.trainer.state.callbacks.append(watch)
    run.fit()
    assert set(watch.layers) == {1, 2} and len(watch.layers) == int(run.trainer.state.timestamp.batch)
    assert budget.charged_seconds == sum(4.0 if k == 1 else 10.0 for k in watch.layers)
    assert budget.charged_seconds - (4.0 if watch.layers[-1] == 1 else 10.0) < 180.0 <= budget.charged_seconds
    run.close()

    # selective backprop scores a pool of 32 rows forward-only (2 x 3 s) and trains 16 (10 s): 16 s a
    # step, so the budget ends after 12 steps (192 s); the scoring is free when extra forwards do not count
    for count, steps, charged in ((True, 12, 192.0), (False, 18, 180.0)):
        run, budget = reference_run(tmp_path / f"sb-{count}", tokenizer_dir, token_mds, tiny_cost_table,
                                    "algorithms.selective_backprop={beta: 1.0}", f"budget.count_extra_forwards={count}")
        run.fit()
        assert int(run.trainer.state.timestamp.batch) == steps and budget.charged_seconds == charged
        run.close()

    # a Lion step costs 1 s more than the AdamW step in the training price: 11 s a step, 17 steps
    run, budget = reference_run(tmp_path / "lion", tokenizer_dir, token_mds, tiny_cost_table,
                                "optimizer={name: lion, lr: 1.0e-4}")
    run.fit()
    assert int(run.trainer.state.timestamp.batch) == 17 and budget.charged_seconds == 187.0
    run.close()


def test_cost_table_must_price_the_model_and_rows_of_the_run(tmp_path, tokenizer_dir, token_mds, tiny_cost_table):
    from efficient_bert.pretrain.build import build_budget
    from efficient_bert.pretrain.schema import BudgetConfig
    from efficient_bert.errors import ConfigError

    with pytest.raises(ConfigError, match="^budget: the reference clock charges prices from a cost table"):
        build_budget(BudgetConfig(hours=1.0, clock="reference"), None)
    with pytest.raises(ConfigError, match="^budget.cost_table: no cost table at"):
        build_budget(BudgetConfig(hours=1.0, clock="reference", cost_table=str(tmp_path / "x.json")), None)
    with pytest.raises(ConfigError, match=r"^budget.cost_table: the cost table prices rows of 64 tokens and this "
                                          r"run's rows have 32; .*--seq 32"):
        reference_run(tmp_path, tokenizer_dir, token_mds, tiny_cost_table, "variables.max_seq_len=32")
    with pytest.raises(ConfigError, match=r"^budget.cost_table: the cost table was measured for another model: "
                                          r"hidden_size 64 \(model: 128\)"):
        reference_run(tmp_path, tokenizer_dir, token_mds, tiny_cost_table, "model.hidden_size=128")
    with pytest.raises(ConfigError, match=r"^budget.cost_table: the cost table prices the steps of AdamW, Lion, not "
                                          r"Lamb: measure them with `efficient-bert calibrate --optimizer-steps"):
        reference_run(tmp_path, tokenizer_dir, token_mds, tiny_cost_table, "optimizer={name: lamb, lr: 1.0e-3}")


def test_calibrate_measures_a_cost_table_for_every_layer_count(tmp_path):
    from efficient_bert.budget.calibrate import main
    from efficient_bert.budget.cost_table import CostTable

    out = tmp_path / "costs.json"
    args = ["--cost-table", "--size", "tiny", "--rows", "2", "--seq", "16", "--steps", "1", "--out", str(out)]
    assert main(args) == 0
    table = CostTable.load(out)
    assert table.model == {"model_type": "mosaic_bert", "hidden_size": 128, "num_hidden_layers": 2,
                           "intermediate_size": 512}
    assert (table.rows, table.seq_len, len(table.train), len(table.forward)) == (2, 16, 2, 2)
    assert table.measured_on["device"] == "cpu" and table.measured_on["steps"] == 1


def test_calibrate_adds_each_optimizers_step_to_a_cost_table(tmp_path):
    from efficient_bert.budget.calibrate import main
    from efficient_bert.budget.cost_table import CostTable

    path = tmp_path / "costs.json"
    assert main(["--cost-table", "--size", "tiny", "--rows", "2", "--seq", "16", "--steps", "1", "--out", str(path)]) == 0
    before = CostTable.load(path)
    assert main(["--optimizer-steps", "--table", str(path), "--steps", "2"]) == 0
    table = CostTable.load(path)
    assert set(table.optimizer_steps) == {"AdamW", "Lion", "Lamb", "Adafactor", "SophiaG"}
    assert all(price > 0 for price in table.optimizer_steps.values())
    assert (table.train, table.forward, table.model) == (before.train, before.forward, before.model)
    assert table.step_surcharge("AdamW") == 0.0
    assert table.step_surcharge("Lamb") == pytest.approx(table.optimizer_steps["Lamb"] - table.optimizer_steps["AdamW"])


def test_shipped_cost_table_prices_mosaic_bert_base_at_128_tokens():
    from efficient_bert.budget.cost_table import CostTable
    from efficient_bert.model.mosaic_bert import SIZES, MosaicBertConfig, MosaicBertForMaskedLM

    table = CostTable.load(ROOT / "yamls" / "budget" / "cost-mosaic-bert-base-h200.json")
    table.check_model(MosaicBertForMaskedLM(MosaicBertConfig(vocab_size=30528, **SIZES["base"])), 128)
    assert table.measured_on["device"] == "NVIDIA H200" and table.rows == 256
    # every layer adds to a pass, and a forward pass is cheaper than a training pass
    assert all(a < b for a, b in zip(table.train, table.train[1:]))
    assert all(a < b for a, b in zip(table.forward, table.train))
