"""Optimizers against reference updates on small problems."""

import json

import pytest
import torch


def test_decoupled_adamw_matches_composers_update_under_a_schedule():
    from composer.optim import DecoupledAdamW

    from efficient_bert.optim import decoupled_adamw, param_groups

    torch.manual_seed(0)
    ours_model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.LayerNorm(5), torch.nn.Linear(5, 1))
    ref_model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.LayerNorm(5), torch.nn.Linear(5, 1))
    ref_model.load_state_dict(ours_model.state_dict())
    ours = decoupled_adamw(param_groups(ours_model, 0.1), lr=1e-2, fused=False)
    ref = DecoupledAdamW(param_groups(ref_model, 0.1), lr=1e-2, betas=(0.9, 0.98), eps=1e-6)
    x, y = torch.randn(32, 6), torch.randn(32, 1)
    for step, multiplier in enumerate([0.1, 0.5, 1.0, 0.7, 0.2, 0.0, 0.3]):  # a warmup/decay schedule
        for model, opt in ((ours_model, ours), (ref_model, ref)):
            for group in opt.param_groups:
                group["lr"] = 1e-2 * multiplier
            torch.nn.functional.mse_loss(model(x), y).backward()
            opt.step()
            opt.zero_grad()
        for a, b in zip(ours_model.parameters(), ref_model.parameters()):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=f"step {step}")
    assert [g["weight_decay"] for g in ours.param_groups] == [pytest.approx(10.0), 0.0]  # 0.1 / lr
    with pytest.raises(ValueError, match="positive lr"):
        decoupled_adamw(ours_model.parameters(), lr=0.0)


def random_problem(dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    params = [torch.randn(4, 3, generator=g, dtype=dtype), torch.randn(3, generator=g, dtype=dtype)]
    grads = [[torch.randn(p.shape, generator=g, dtype=dtype) for p in params] for _ in range(5)]
    return params, grads


def run_ours(optimizer_class, params, grads, hook=None, **kwargs):
    params = [torch.nn.Parameter(p.clone()) for p in params]
    opt = optimizer_class([{"params": [params[0]], "weight_decay": kwargs.pop("weight_decay")},
                           {"params": [params[1]], "weight_decay": 0.0}], **kwargs)
    for step, step_grads in enumerate(grads, start=1):
        for p, g in zip(params, step_grads):
            p.grad = g.clone()
        opt.step()
        if hook:
            hook(step, opt, params)
    return [p.detach() for p in params], opt


def test_lion_matches_the_papers_update_in_float64():
    from efficient_bert.optim import Lion

    params, grads = random_problem()
    lr, (b1, b2), wd = 3e-2, (0.9, 0.99), 0.5
    ref = [p.clone() for p in params]
    m = [torch.zeros_like(p) for p in params]
    for step_grads in grads:
        for i, g in enumerate(step_grads):
            decay = wd if i == 0 else 0.0
            c = b1 * m[i] + (1 - b1) * g
            ref[i] = ref[i] - lr * (torch.sign(c) + decay * ref[i])
            m[i] = b2 * m[i] + (1 - b2) * g
    ours, _ = run_ours(Lion, params, grads, lr=lr, betas=(b1, b2), weight_decay=wd)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_lamb_matches_the_papers_algorithm_2_in_float64():
    from efficient_bert.optim import Lamb

    params, grads = random_problem()
    lr, (b1, b2), eps, wd = 1e-2, (0.9, 0.999), 1e-6, 0.1
    ref = [p.clone() for p in params]
    m = [torch.zeros_like(p) for p in params]
    v = [torch.zeros_like(p) for p in params]
    for t, step_grads in enumerate(grads, start=1):
        for i, g in enumerate(step_grads):
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            r = (m[i] / (1 - b1 ** t)) / ((v[i] / (1 - b2 ** t)).sqrt() + eps) + (wd if i == 0 else 0.0) * ref[i]
            ratio = float(ref[i].norm()) / float(r.norm())  # no clamp on the weight norm (the default)
            ref[i] = ref[i] - lr * ratio * r
    ours, _ = run_ours(Lamb, params, grads, lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


@pytest.mark.parametrize("bias_correction", [True, False])
def test_sophia_matches_the_papers_update_with_hessian_refreshes_in_float64(bias_correction):
    """With bias correction (ours), ρ·h / (1 − β2^n) after n estimates; without, the official update."""
    from efficient_bert.optim import SophiaG

    params, grads = random_problem()
    lr, (b1, b2), rho, wd, eps, tokens = 1e-2, (0.965, 0.99), 0.04, 0.2, 1e-12, 64
    g = torch.Generator().manual_seed(1)
    sampled = {1: [torch.randn(p.shape, generator=g, dtype=torch.float64) for p in params],
               4: [torch.randn(p.shape, generator=g, dtype=torch.float64) for p in params]}
    ref = [p.clone() for p in params]
    m = [torch.zeros_like(p) for p in params]
    h = [torch.zeros_like(p) for p in params]
    estimates = 0
    for t, step_grads in enumerate(grads, start=1):
        correction = 1 - b2 ** estimates if bias_correction and estimates else 1.0
        for i, grad in enumerate(step_grads):
            m[i] = b1 * m[i] + (1 - b1) * grad
            ref[i] = ref[i] - lr * (wd if i == 0 else 0.0) * ref[i]
            ref[i] = ref[i] - lr * torch.clamp(m[i] / torch.clamp(rho * h[i] / correction, min=eps), -1, 1)
            if t in sampled:  # the estimate after steps 1 and 4: h = b2 h + (1 - b2) B g_hat^2
                h[i] = b2 * h[i] + (1 - b2) * tokens * sampled[t][i] ** 2
        estimates += t in sampled

    def refresh(step, opt, ps):
        if step in sampled:
            for p, s in zip(ps, sampled[step]):
                p.grad = s.clone()
            assert opt.update_hessian(tokens) == 2

    ours, _ = run_ours(SophiaG, params, grads, hook=refresh, lr=lr, betas=(b1, b2), rho=rho, weight_decay=wd, eps=eps,
                       bias_correction=bias_correction)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_sophia_win_rate_counts_the_coordinates_its_next_step_leaves_unclipped():
    from efficient_bert.optim import SophiaG

    a, b = torch.nn.Parameter(torch.zeros(10)), torch.nn.Parameter(torch.zeros(2))
    optimizer = SophiaG([a, b], lr=1e-3, betas=(0.965, 0.99), rho=2.0)
    assert optimizer.win_rate() == {}  # no estimate yet
    # |m| / h: a holds 1e-4 ... 1e5 (no estimate counted, so h as it is); b's one estimate is
    # bias-corrected, h / (1 - 0.99), so m = 1 over h = 1 and 1e-3 give 1e-2 and 10
    optimizer.state[a].update(exp_avg=10.0 ** torch.arange(-4.0, 6.0), hessian=torch.ones(10), hessian_updates=0)
    optimizer.state[b].update(exp_avg=-torch.ones(2), hessian=torch.tensor([1.0, 1e-3]), hessian_updates=1)
    result = optimizer.win_rate()
    assert result["win_rate"] == 6 / 12  # |m| / h < rho = 2: 1e-4, 1e-3, 1e-2, 1e-1, 1 and b's 1e-2
    # the 10% and 50% quantiles of the twelve ratios: the 2nd (1e-3) and the 6th (1)
    assert result["rho_for_win_rate_0.1"] == pytest.approx(1e-3, rel=0.05)
    assert result["rho_for_win_rate_0.5"] == pytest.approx(1.0, rel=0.05)


@pytest.mark.parametrize("name", ["decoupled_adamw", "adamw", "lion", "sophiag", "lamb", "adafactor"])
def test_every_optimizer_lowers_a_small_regression_loss(name):
    from efficient_bert.pretrain.components import OPTIMIZERS
    from efficient_bert.optim import param_groups

    torch.manual_seed(0)
    x = torch.randn(256, 8)
    y = x @ torch.randn(8, 1) + 0.1 * torch.randn(256, 1)
    model = torch.nn.Linear(8, 1)
    lrs = {"decoupled_adamw": 3e-2, "adamw": 3e-2, "lion": 1e-2, "sophiag": 3e-2, "lamb": 3e-2, "adafactor": 3e-2}
    opt = OPTIMIZERS.build(name, {"lr": lrs[name]}, params=param_groups(model))
    first = None
    for step in range(150):
        loss = torch.nn.functional.mse_loss(model(x), y)
        first = first if first is not None else loss.item()
        loss.backward()
        if name == "sophiag" and step % 10 == 0:  # its Hessian from the loss curvature here
            opt.update_hessian(1.0)
        opt.step()
        opt.zero_grad()
    assert loss.item() < 0.2 * first, (name, first, loss.item())


def test_adafactor_matches_its_documented_algorithm_in_float64():
    params, grads = random_problem()
    lr, tau, eps2, d, wd = 1e-2, -0.8, 1e-3, 1.0, 0.1
    eps1 = torch.finfo(torch.float64).eps
    ref = [p.clone() for p in params]
    row, col = torch.zeros(4, dtype=torch.float64), torch.zeros(3, dtype=torch.float64)
    vec = torch.zeros(3, dtype=torch.float64)
    for t, step_grads in enumerate(grads, start=1):
        beta2 = 1 - t ** tau
        rho = min(lr, 1 / t ** 0.5)
        for i, g in enumerate(step_grads):
            alpha = max(eps2, float(ref[i].pow(2).mean().sqrt())) * rho
            ref[i] = ref[i] - lr * (wd if i == 0 else 0.0) * ref[i]
            if g.dim() > 1:  # factored second moment: row and column means of g^2
                row = beta2 * row + (1 - beta2) * (g * g).mean(dim=1)
                col = beta2 * col + (1 - beta2) * (g * g).mean(dim=0)
                v = row[:, None] * col[None, :] / row.mean().clamp(min=eps1)
            else:
                vec = beta2 * vec + (1 - beta2) * g * g
                v = vec
            u = g / v.sqrt().clamp(min=eps1)
            u = u / max(1.0, float(u.pow(2).mean().sqrt()) / d)
            ref[i] = ref[i] - alpha * u
    ours, _ = run_ours(torch.optim.Adafactor, params, grads, lr=lr, beta2_decay=tau, eps=(None, eps2), d=d,
                       weight_decay=wd, foreach=True)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def build_run(tmp_path, tokenizer_dir, token_mds, *overrides, methods=()):
    from conftest import tiny_run

    return tiny_run(tokenizer_dir, token_mds, "eval_interval=1000ba", "precision=fp32", *overrides, methods=methods)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["lion.yaml", "sophiag.yaml", "lamb.yaml", "adafactor.yaml"])
def test_optimizer_state_round_trips_through_a_composer_checkpoint(tmp_path, tokenizer_dir, token_mds, method):
    run = build_run(tmp_path, tokenizer_dir, token_mds, f"save_folder={tmp_path / 'a'}", "max_duration=3ba",
                    "save_interval=3ba", "algorithms.sophia_hessian.every=2" if method == "sophiag.yaml" else "seed=17",
                    methods=[method])
    run.fit()
    saved = run.trainer.state.optimizers[0].state_dict()
    run.close()
    resumed = build_run(tmp_path, tokenizer_dir, token_mds, f"save_folder={tmp_path / 'b'}", "max_duration=4ba",
                        f"load_path={tmp_path / 'a' / 'ep0-ba3-rank0.pt'}", methods=[method])  # to train on
    loaded = resumed.trainer.state.optimizers[0].state_dict()
    assert type(resumed.trainer.state.optimizers[0]).__name__ == {"lion.yaml": "Lion", "sophiag.yaml": "SophiaG",
                                                                  "lamb.yaml": "Lamb", "adafactor.yaml": "Adafactor"}[method]
    assert saved["state"].keys() == loaded["state"].keys() and len(saved["state"]) > 0
    for key, entry in saved["state"].items():
        for name, value in entry.items():
            other = loaded["state"][key][name]
            if torch.is_tensor(value):
                torch.testing.assert_close(other, value, rtol=0, atol=0)
            else:
                assert other == value
    if method == "sophiag.yaml":
        assert any(bool(entry["hessian"].abs().sum() > 0) for entry in loaded["state"].values())
    resumed.close()


@pytest.mark.slow
def test_sophia_hessian_runs_every_k_steps_and_counts_as_an_extra_forward(tmp_path, tokenizer_dir, token_mds):
    from efficient_bert.algorithms import SophiaHessian
    from efficient_bert.budget import TrainingBudget
    from efficient_bert.errors import ConfigError

    for counted in (True, False):
        run = build_run(tmp_path, tokenizer_dir, token_mds, "max_duration=7ba", "algorithms.sophia_hessian.every=3",
                        "budget.hours=1", f"budget.count_extra_forwards={str(counted).lower()}",
                        f"save_folder={tmp_path / str(counted)}", "save_interval=1000ba", methods=["sophiag.yaml"])
        optimizer = run.trainer.state.optimizers[0]
        refreshed = []
        original = optimizer.update_hessian
        optimizer.update_hessian = lambda tokens: refreshed.append((int(run.trainer.state.timestamp.batch), tokens)) or original(tokens)
        run.fit()
        hessian = next(a for a in run.trainer.state.algorithms if isinstance(a, SophiaHessian))
        assert hessian.updates == 3 and len(refreshed) == 3  # after steps 1, 4 and 7
        assert all(tokens > 0 for _, tokens in refreshed)
        budget = next(c for c in run.trainer.state.callbacks if isinstance(c, TrainingBudget))
        assert (budget.excluded_seconds > 0) == (not counted)
        run.close()
        rows = map(json.loads, (tmp_path / str(counted) / "metrics.jsonl").read_text().splitlines())
        logged = [row for row in rows if "sophia/win_rate" in row]
        assert [row["batch"] for row in logged] == [1, 4, 7]
        assert all(0.0 <= row["sophia/win_rate"] <= 1.0 and row["sophia/rho_for_win_rate_0.5"] > 0 for row in logged)
    with pytest.raises(ConfigError, match="sophiag and algorithms.sophia_hessian go together"):
        build_run(tmp_path, tokenizer_dir, token_mds, "max_duration=2ba", "algorithms.sophia_hessian=null",
                  methods=["sophiag.yaml"])


@pytest.mark.parametrize("mode, ours, theirs", [
    ("relative", {"lr": 1e-2}, {"lr": None, "relative_step": True, "scale_parameter": True}),
    ("absolute", {"lr": 1e-3, "weight_decay": 0.1}, {"lr": 1e-3, "relative_step": False, "scale_parameter": False,
                                                     "weight_decay": 0.1}),
])
def test_adafactor_modes_match_the_reference_implementation(mode, ours, theirs):
    from transformers.optimization import Adafactor as Reference

    from efficient_bert.optim import Adafactor

    torch.manual_seed(0)
    models = [torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Linear(5, 1)) for _ in range(2)]
    models[1].load_state_dict(models[0].state_dict())
    start = models[0][0].weight.detach().clone()
    optimizers = [Adafactor(models[0].parameters(), mode=mode, **ours),
                  Reference(models[1].parameters(), warmup_init=False, **theirs)]
    x, y = torch.randn(64, 6), torch.randn(64, 1)
    for _ in range(12):
        for model, optimizer in zip(models, optimizers):
            optimizer.zero_grad()
            torch.nn.functional.mse_loss(model(x), y).backward()
            optimizer.step()
    for a, b in zip(models[0].parameters(), models[1].parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    assert not torch.allclose(models[0][0].weight, start)  # it moved: the agreement is not of idle weights


@pytest.mark.parametrize("clamp", [10.0, None])
def test_lamb_steps_by_the_clamped_weight_norm(clamp):
    from efficient_bert.optim import Lamb

    torch.manual_seed(0)
    weight = torch.nn.Parameter(torch.randn(40, 40) * 2.0)  # norm ~80, above the clamp of 10
    before, norm = weight.detach().clone(), float(weight.detach().norm())
    optimizer = Lamb([weight], lr=1e-2, weight_decay=0.0, max_trust_norm=clamp)
    weight.grad = torch.randn(40, 40)
    optimizer.step()
    # the step's norm is lr * phi(||W||): the trust ratio rescales the Adam direction to it
    expected = 1e-2 * (min(norm, clamp) if clamp is not None else norm)
    assert float((weight.detach() - before).norm()) == pytest.approx(expected, rel=1e-5)


def test_sophia_hessian_clips_the_sampled_gradient_as_the_official_estimator(tokenizer):
    from conftest import mlm_batch, tiny_mosaic
    from efficient_bert.algorithms.sophia_hessian import apply_sophia_hessian
    from efficient_bert.optim import SophiaG

    model, batch = tiny_mosaic(2), mlm_batch(tokenizer)
    params = [p for p in model.parameters() if p.requires_grad]
    hessians, beta2 = {}, 0.99
    for clip in (None, 1e-3):
        optimizer = SophiaG(params, lr=1e-3, betas=(0.965, beta2))
        torch.manual_seed(0)  # the same sampled labels both times
        tokens = apply_sophia_hessian(model, optimizer, batch, clip_norm=clip)
        hessians[clip] = [optimizer.state[p]["hessian"].double() for p in params]
    # from zero, h = (1 - beta2) B g^2: the unclipped gradient's norm follows from h, and clipping
    # scales every entry of g by clip / |g|
    scale = (1 - beta2) * tokens
    norm = sum(float((h / scale).sum()) for h in hessians[None]) ** 0.5
    assert norm > 1e-3
    for clipped, full in zip(hessians[1e-3], hessians[None]):
        torch.testing.assert_close(clipped, full * (1e-3 / norm) ** 2, rtol=1e-4, atol=1e-18)
