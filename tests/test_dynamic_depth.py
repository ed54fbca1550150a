"""Layer stacking and progressive layer dropping: schedules, copies, optimizer state, resume, eval."""

import math

import pytest
import torch
from composer.core import Callback, Event

from conftest import ROOT, TINY_MODELS, mlm_batch, tiny_mosaic, tiny_run
from efficient_bert.algorithms import (LayerDrop, LayerStacking, apply_layer_drop, apply_layer_stacking,
                                       keep_probability, layer_keep_probabilities, stacking_depths)
from efficient_bert.model.checkpoint import export_hf
from efficient_bert.model.layer_plan import find_layer_plan, running_layer_count


def real_batch(tokenizer, rows=4, seq=32):
    from conftest import sample_documents

    enc = tokenizer(sample_documents("validation")[:rows], truncation=True, max_length=seq, padding="max_length",
                    return_tensors="pt")
    labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
    return dict(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], labels=labels)


def test_stacking_depths_double_up_to_the_model_depth():
    assert stacking_depths(12, 2) == [3, 6, 12]
    assert stacking_depths(16, 2) == [4, 8, 16]  # NoTrainNoGain's 16-layer model
    assert stacking_depths(12, 1, initial_depth=6) == [6, 12]
    with pytest.raises(ValueError, match="cannot grow 4 layer"):
        stacking_depths(12, 1, initial_depth=4)
    with pytest.raises(ValueError, match="increasing fractions"):
        LayerStacking(stack_at=[0.5, 0.2])


def test_stacked_layers_copy_the_trained_ones_exactly(tokenizer):
    model = tiny_mosaic(4)
    apply_layer_stacking(model, 2)
    batch = real_batch(tokenizer)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for _ in range(3):  # train the two running layers
        model(batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    layers = model.model.bert.layers
    assert layers[2].qkv.weight.grad is None  # not running: no gradient, no state
    assert layers[2].qkv.weight not in optimizer.state

    apply_layer_stacking(model, 4, [optimizer])
    x = torch.randn(10, 32)
    info = model.model.bert.locate_tokens(torch.ones(1, 10, dtype=torch.long))
    from efficient_bert.model.mosaic_bert.attention import prepare_attention

    inputs = prepare_attention("eager", info, 2, x.device, x.dtype)
    for new, source in ((2, 0), (3, 1)):
        assert all(torch.equal(a, b) for a, b in zip(layers[new].parameters(), layers[source].parameters()))
        assert torch.equal(layers[new](x, inputs)[0], layers[source](x, inputs)[0])
    # every new parameter is in the optimizer, with fresh state; after one step it has state
    in_optimizer = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert all(id(p) in in_optimizer for p in layers[3].parameters())
    model(batch).loss.backward()
    optimizer.step()
    assert int(optimizer.state[layers[3].qkv.weight]["step"]) == 1
    assert int(optimizer.state[layers[1].qkv.weight]["step"]) == 4


def test_copied_optimizer_state_and_optimizers_built_from_running_layers(tokenizer):
    model = tiny_mosaic(4)
    plan = apply_layer_stacking(model, 2)
    running = [p for n, p in model.named_parameters() if not any(f"layers.{i}." in n for i in (2, 3))]
    optimizer = torch.optim.AdamW(running, lr=1e-3)
    model(real_batch(tokenizer)).loss.backward()
    optimizer.step()
    apply_layer_stacking(model, 4, [optimizer], optimizer_state="copy")
    new, source = plan.layers[2].mlp_out.bias, plan.layers[0].mlp_out.bias
    assert any(p is new for p in optimizer.param_groups[0]["params"])  # joined its source's group
    assert torch.equal(optimizer.state[new]["exp_avg"], optimizer.state[source]["exp_avg"])
    assert optimizer.state[new]["exp_avg"] is not optimizer.state[source]["exp_avg"]


@pytest.mark.parametrize("optimizer_name", ["decoupled_adamw", "adamw"])
def test_reset_optimizer_state_restarts_every_parameter_and_adamw_keeps_stepping(tokenizer, optimizer_name):
    from efficient_bert.optim import param_groups
    from efficient_bert.pretrain.components import OPTIMIZERS

    model = tiny_mosaic(4)
    apply_layer_stacking(model, 2)
    optimizer = OPTIMIZERS.build(optimizer_name, {"lr": 1e-3}, params=param_groups(model))
    for _ in range(3):
        model(real_batch(tokenizer)).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    apply_layer_stacking(model, 4, [optimizer], optimizer_state="reset")
    assert len(optimizer.state) == 0
    model(real_batch(tokenizer)).loss.backward()
    optimizer.step()  # every parameter starts over: one step of state each, old and new layers alike
    assert {int(state["step"]) for state in optimizer.state.values()} == {1}
    assert len(optimizer.state) == sum(1 for p in model.parameters() if p.grad is not None)


def test_flops_count_only_the_running_layers(tokenizer):
    from efficient_bert.model.flops import mlm_training_flops

    batch = real_batch(tokenizer)
    args = (batch["attention_mask"], batch["labels"])
    full = mlm_training_flops(tiny_mosaic(4).model, *args)
    model = tiny_mosaic(4)
    apply_layer_stacking(model, 2)
    half = mlm_training_flops(model.model, *args)
    per_layer_weights = sum(p.numel() for p in model.model.bert.layers[0].parameters() if p.dim() == 2)
    tokens = float(batch["attention_mask"].sum())
    attention = 4.0 * 32 * float((batch["attention_mask"].sum(1).double() ** 2).sum())
    assert full - half == pytest.approx(3.0 * 2 * (2.0 * per_layer_weights * tokens + attention))
    assert running_layer_count(model) == 2


def test_layer_drop_schedule_and_per_layer_probabilities():
    assert keep_probability(0.0) == 1.0
    assert keep_probability(0.01, theta_bar=0.5, gamma=100.0) == pytest.approx(0.5 + 0.5 * math.exp(-1))
    assert keep_probability(1.0) == pytest.approx(0.5)
    assert layer_keep_probabilities(0.5, 4) == [0.875, 0.75, 0.625, 0.5]


def test_layer_drop_statistics_match_the_keep_probabilities():
    model = tiny_mosaic(4)
    generator = torch.Generator().manual_seed(0)
    n = 4000
    for theta in (0.9, 0.5):
        kept = torch.zeros(4)
        for _ in range(n):
            dropped = apply_layer_drop(model, theta, generator)
            kept += torch.tensor([i not in dropped for i in range(4)], dtype=torch.float)
        expected = torch.tensor(layer_keep_probabilities(theta, 4))
        sigma = (expected * (1 - expected) / n).sqrt()
        assert ((kept / n - expected).abs() <= 4 * sigma + 1e-9).all(), (kept / n, expected)


class LayerCalls(Callback):
    """Counts the encoder layers that ran in each training step and each evaluation batch."""

    def __init__(self):
        self.calls = 0
        self.train, self.eval, self.depth = [], [], []

    def run_event(self, event, state, logger):
        if event == Event.FIT_START and not hasattr(self, "hooked"):
            plan = find_layer_plan(state.model)
            self.hooked = [layer.register_forward_hook(self._count) for layer in plan.layers]
        elif event in (Event.BATCH_START, Event.EVAL_BATCH_START):
            self.calls = 0
        elif event == Event.BATCH_END:
            self.train.append(self.calls)
            self.depth.append(find_layer_plan(state.model).depth)
        elif event == Event.EVAL_BATCH_END:
            self.eval.append(self.calls)

    def _count(self, *_):
        self.calls += 1


def build(tmp_path, tokenizer_dir, token_mds, *overrides, methods=()):
    run = tiny_run(tokenizer_dir, token_mds, f"save_folder={tmp_path / 'ckpt'}", "max_duration=20ba",
                   "eval_interval=10ba", "eval_subset_num_batches=2", "save_interval=8ba", "model.num_hidden_layers=4",
                   *overrides, methods=methods)
    calls = LayerCalls()
    run.trainer.state.callbacks.append(calls)
    return run, calls


@pytest.mark.slow
@pytest.mark.parametrize("model", list(TINY_MODELS))
def test_stacking_in_the_trainer_grows_on_schedule_and_resumes(tmp_path, tokenizer_dir, token_mds, model):
    from efficient_bert.model.checkpoint import load_pretrained

    stack = ["algorithms.layer_stacking.stack_at=[0.25,0.5]", *TINY_MODELS[model]]
    run, calls = build(tmp_path, tokenizer_dir, token_mds, *stack, methods=["layer-stacking.yaml"])
    run.fit()
    # progress b/20 at the start of batch b+1: 1 layer, 2 from batch 6, 4 from batch 11
    assert calls.depth == [1] * 5 + [2] * 5 + [4] * 10
    assert calls.train == calls.depth
    assert calls.eval == [2, 2, 4, 4]  # evaluation at batches 10 and 20 runs the stacked depth
    optimizer = run.trainer.state.optimizers[0]
    layers = find_layer_plan(run.trainer.state.model).layers
    steps = [int(optimizer.state[next(layer.parameters())]["step"]) for layer in layers]
    assert steps == [20, 15, 10, 10]  # each layer's state starts fresh when it joins
    run.close()

    # the batch-8 checkpoint holds a 2-layer model: it loads as one and resumes at depth 2
    ckpt = tmp_path / "ckpt" / "ep0-ba8-rank0.pt"
    assert load_pretrained(ckpt).config.num_hidden_layers == 2
    resumed, calls = build(tmp_path, tokenizer_dir, token_mds, *stack, f"load_path={ckpt}",
                           f"save_folder={tmp_path / 'ckpt2'}", methods=["layer-stacking.yaml"])
    assert find_layer_plan(resumed.trainer.state.model).depth == 2
    resumed.fit()
    assert calls.depth == [2] * 2 + [4] * 10
    optimizer = resumed.trainer.state.optimizers[0]
    layers = find_layer_plan(resumed.trainer.state.model).layers
    assert [int(optimizer.state[next(layer.parameters())]["step"]) for layer in layers] == [20, 15, 10, 10]
    resumed.close()


@pytest.mark.slow
@pytest.mark.parametrize("model", ["hf_bert", "modernbert", "hf_modernbert"])
def test_layer_drop_and_stacking_compose_with_a_budget(tmp_path, tokenizer_dir, token_mds, model):
    from test_budget import FakeClock, Ticks

    from efficient_bert.budget import TrainingBudget

    run, calls = build(tmp_path, tokenizer_dir, token_mds, "budget.hours=0.05", "max_duration=1000ba",
                       "algorithms.layer_stacking.stack_at=[0.5]", "save_interval=1000ba", *TINY_MODELS[model],
                       methods=["layer-stacking.yaml", "layer-drop.yaml"])
    budget = next(c for c in run.trainer.state.callbacks if isinstance(c, TrainingBudget))
    budget.timer = clock = FakeClock()
    run.trainer.state.callbacks.append(Ticks(clock))  # 10 fake seconds per step: 18 steps in 0.05 h
    run.fit()
    assert len(calls.train) == 18
    assert calls.depth == [2] * 9 + [4] * 9  # stacked at half the budget, read from the budget
    drop = next(a for a in run.trainer.state.algorithms if isinstance(a, LayerDrop))
    # the drawn layers are a function of (seed, batch) alone: what every rank draws in that step
    generator = torch.Generator()
    for batch, (depth, ran) in enumerate(zip(calls.depth, calls.train)):
        generator.manual_seed((run.trainer.state.rank_zero_seed * 1_000_003 + batch) % 2 ** 63)
        theta = keep_probability(min(1.0, batch * 10 / 180), drop.theta_bar, drop.gamma)
        keep = torch.tensor(layer_keep_probabilities(theta, depth), dtype=torch.float64)
        expected = int((torch.rand(depth, generator=generator, dtype=torch.float64) < keep).sum())
        assert ran == expected, batch
    assert sum(calls.train) < sum(calls.depth)  # some layers were dropped in training,
    assert calls.eval == [4] * 4  # none in evaluation (batch 10 and the end; 2 batches each)
    run.close()


def test_hf_export_mid_stacking_holds_the_stacked_depth(tmp_path, tokenizer):
    from transformers import AutoModelForMaskedLM

    model = tiny_mosaic(4)
    apply_layer_stacking(model, 2)
    model.eval()
    batch = real_batch(tokenizer)
    del batch["labels"]
    export_hf(model, tmp_path / "hf")
    loaded = AutoModelForMaskedLM.from_pretrained(tmp_path / "hf").eval()
    assert loaded.config.num_hidden_layers == 2 and len(loaded.bert.layers) == 2
    assert model.model.config.num_hidden_layers == 4 and len(model.model.bert.layers) == 4  # put back
    with torch.no_grad():
        torch.testing.assert_close(loaded(**batch).logits, model(batch).logits)


def test_modernbert_stacks_by_name_and_exports_its_stacked_depth_natively(tmp_path, tokenizer):
    """Its first layer has no pre-attention norm (the embeddings' norm does that work): a copy of it keeps its
    own norm, every other parameter is copied; a mid-stacking export is transformers' own 2-layer model."""
    from conftest import perturbed
    from transformers import AutoModelForMaskedLM, ModernBertForMaskedLM

    from efficient_bert.model.modernbert import build_modernbert

    torch.manual_seed(0)
    model = build_modernbert(tokenizer, size="tiny", attention="sdpa", kernels="torch", num_hidden_layers=4,
                             local_attention=16, global_attn_every_n_layers=2)
    perturbed(model.model)
    layers = model.model.model.layers
    norm = layers[2].attn_norm.weight.clone()
    apply_layer_stacking(model, 2)
    batch = mlm_batch(tokenizer, rows=4, seq=40)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    export_hf(model, tmp_path / "hf")
    loaded = AutoModelForMaskedLM.from_pretrained(tmp_path / "hf").eval()
    assert type(loaded) is ModernBertForMaskedLM and len(loaded.model.layers) == 2
    assert loaded.config.layer_types == ["full_attention", "sliding_attention"]
    with torch.no_grad():
        real = mask.bool()
        torch.testing.assert_close(loaded(input_ids=ids, attention_mask=mask).logits[real],
                                   model.model(ids, mask).logits[real], atol=1e-4, rtol=0)

    apply_layer_stacking(model, 4)
    assert "attn_norm.weight" not in dict(layers[0].named_parameters())
    assert torch.equal(layers[2].attn_norm.weight, norm)  # its own, as it was
    copied = dict(layers[0].named_parameters())
    assert all(torch.equal(p, copied[n]) for n, p in layers[2].named_parameters() if n != "attn_norm.weight")
    assert all(torch.equal(p, q) for p, q in zip(layers[3].parameters(), layers[1].parameters()))
