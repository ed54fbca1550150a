"""Step time and tokens/s of each efficient-training method against the plain run, on one GPU.

Same model, batches and settings as ``bench/throughput.py`` (Mosaic BERT base, compiled, bf16,
seq 128, batch 256, the 70/30 length mix, 30% masking), trained with the library's default
optimizer (decoupled AdamW) unless the scenario changes it. Each scenario applies a method's
functional form the way its Composer algorithm does in a step. A script, not a test: run it on a GPU.

    python bench/methods.py                                   # every scenario
    python bench/methods.py --scenarios baseline,drop-steady --steps 30
    python bench/methods.py --scenarios baseline,lion,sophiag,lamb,adafactor   # optimizer overheads
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass
from typing import Callable, Optional

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from throughput import SIZES, add_workload_arguments, build, chosen, workload_batches  # noqa: E402  (shared setup)

from efficient_bert.algorithms import (apply_layer_drop, apply_layer_stacking, apply_sophia_hessian,  # noqa: E402
                                       keep_probability)
from efficient_bert.algorithms.batch_selection import concat_rows, sequence_mlm_losses  # noqa: E402
from efficient_bert.model.composer_mlm import model_inputs  # noqa: E402
from efficient_bert.model.layer_plan import running_layer_count  # noqa: E402

StepHook = Callable[[int], None]  # called before each step with the step index


@dataclass
class Scenario:
    description: str
    setup: Optional[Callable[[torch.nn.Module], Optional[StepHook]]]  # applies the method; a per-step hook
    optimizer: str = "decoupled_adamw"
    # a per-step hook that needs the optimizer and the batches
    after_optimizer: Optional[Callable[[torch.nn.Module, torch.optim.Optimizer, list], StepHook]] = None


def stacked(depth: int) -> Callable:
    def setup(model: torch.nn.Module) -> None:
        apply_layer_stacking(model, depth)
    return setup


def dropping(theta: float) -> Callable:
    def setup(model: torch.nn.Module) -> StepHook:
        generator = torch.Generator().manual_seed(0)
        return lambda step: apply_layer_drop(model, theta, generator)
    return setup


def compose_forward(model: torch.nn.Module) -> Callable[[dict], object]:
    """The model called as a ComposerModel is: on a batch dict."""
    return lambda batch: model(**model_inputs(model, batch))


def sophia_refresh(every: int = 10) -> Callable:
    def setup(model: torch.nn.Module, optimizer: torch.optim.Optimizer, batches: list[dict]) -> StepHook:
        def hook(step: int) -> None:
            if step % every == 1:  # what SophiaHessian does after steps 1, 11, 21, ...
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    apply_sophia_hessian(compose_forward(model), optimizer, batches[(step - 1) % len(batches)])
        return hook
    return setup


def scoring(pool_factor: int) -> Callable:
    """Selective backprop's extra cost: a no-grad forward over a pool of pool_factor x the batch."""
    def setup(model: torch.nn.Module, optimizer: torch.optim.Optimizer, batches: list[dict]) -> StepHook:
        pools = [concat_rows([batches[(i + j) % len(batches)] for j in range(pool_factor)]) for i in range(len(batches))]

        def hook(step: int) -> None:
            with torch.autocast("cuda", dtype=torch.bfloat16):
                sequence_mlm_losses(compose_forward(model), pools[step % len(pools)])
        return hook
    return setup


SCENARIOS = {
    "baseline": Scenario("plain training, every layer", lambda model: None),
    "stack-3": Scenario("layer stacking, first stage (3 of 12 layers)", stacked(3)),
    "stack-6": Scenario("layer stacking, second stage (6 of 12 layers)", stacked(6)),
    "drop-start": Scenario("layer drop at theta = 1 (its start: nothing dropped, the mechanism's cost)",
                           dropping(1.0)),
    "drop-steady": Scenario("layer drop at theta = theta_bar = 0.5 (from ~5% of the run on)", dropping(0.5)),
    "selective-backprop": Scenario("selective backprop, beta = 1: scoring forward over a 2x pool", None,
                                   after_optimizer=scoring(2)),
    "lion": Scenario("Lion", lambda model: None, optimizer="lion"),
    "sophiag": Scenario("Sophia-G, Hessian estimate every 10 steps", None, optimizer="sophiag",
                        after_optimizer=sophia_refresh(10)),
    "lamb": Scenario("LAMB", lambda model: None, optimizer="lamb"),
    "adafactor": Scenario("Adafactor", lambda model: None, optimizer="adafactor"),
}
STACKING_SCHEDULE = ((0.125, "stack-3"), (0.3 - 0.125, "stack-6"), (1 - 0.3, "baseline"))  # NoTrainNoGain's


@dataclass
class Result:
    scenario: str
    real_tokens_per_s: float
    step_ms: float
    peak_memory_gib: float
    mean_running_layers: float


def optimizer_for(name: str, model: torch.nn.Module, lr: float) -> torch.optim.Optimizer:
    from efficient_bert.pretrain.components import OPTIMIZERS
    from efficient_bert.optim import param_groups

    return OPTIMIZERS.build(name, {"lr": lr / 5 if name == "lion" else lr}, params=param_groups(model))


def run_scenario(name: str, batches: list[dict], args) -> Result:
    scenario = SCENARIOS[name]
    torch.manual_seed(0)
    model = build(args.model, SIZES[args.size], args.vocab, args.seq).cuda().train()
    hook = scenario.setup(model) if scenario.setup else None
    optimizer = optimizer_for(scenario.optimizer, model, args.lr)
    if scenario.after_optimizer:
        hook = scenario.after_optimizer(model, optimizer, batches)
    running: list[int] = []

    def step(i: int) -> torch.Tensor:
        if hook is not None:
            hook(i)
        running.append(running_layer_count(model) or model.config.num_hidden_layers)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(**model_inputs(model, batches[i % len(batches)])).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss

    start = time.perf_counter()
    for i in range(args.warmup):
        loss = step(i)
    torch.cuda.synchronize()
    if not math.isfinite(loss.item()):
        raise RuntimeError(f"{name}: non-finite loss during warm-up")
    print(f"  {name}: warm-up (compile included) {time.perf_counter() - start:.1f} s", flush=True)
    torch.cuda.reset_peak_memory_stats()
    running.clear()
    begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    begin.record()
    for i in range(args.steps):
        step(args.warmup + i)
    end.record()
    torch.cuda.synchronize()
    seconds = begin.elapsed_time(end) / 1000
    tokens = sum(float(batches[(args.warmup + i) % len(batches)]["attention_mask"].sum()) for i in range(args.steps))
    return Result(name, tokens / seconds, 1000 * seconds / args.steps, torch.cuda.max_memory_allocated() / 2 ** 30,
                  sum(running) / len(running))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenarios", default=",".join(SCENARIOS), help=f"comma-separated, from: {', '.join(SCENARIOS)}")
    p.add_argument("--model", default="mosaic-triton", help="a variant of bench/throughput.py")
    add_workload_arguments(p)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--json", default=None, help="write the results here")
    args = p.parse_args(argv)
    names = chosen(p, args.scenarios, SCENARIOS, "scenario")
    batches = workload_batches(args, "bench/methods.py")
    print(f"{torch.cuda.get_device_name()} | torch {torch.__version__} | {args.model} {args.size}, batch "
          f"{args.batch}, seq {args.seq}", flush=True)
    results = []
    for name in names:
        try:
            results.append(run_scenario(name, batches, args))
        except Exception as exc:  # one broken scenario must not hide the others' numbers
            print(f"  {name}: FAILED {type(exc).__name__}: {str(exc)[:400]}", flush=True)
        gc.collect()
        torch.cuda.empty_cache()
    by_name = {r.scenario: r for r in results}
    base = by_name.get("baseline")
    print("\n| scenario | what | layers run (mean) | real tok/s | step ms | peak GiB | vs baseline |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in results:
        ratio = f"{r.real_tokens_per_s / base.real_tokens_per_s:.2f}x" if base else "-"
        print(f"| {r.scenario} | {SCENARIOS[r.scenario].description} | {r.mean_running_layers:.2f} | "
              f"{r.real_tokens_per_s / 1e3:.0f}k | {r.step_ms:.1f} | {r.peak_memory_gib:.1f} | {ratio} |")
    if all(n in by_name for _, n in STACKING_SCHEDULE):
        # the schedule is in fractions of the budget (time): tokens = sum of fraction x rate
        rate = sum(f * by_name[n].real_tokens_per_s for f, n in STACKING_SCHEDULE)
        print(f"\nlayer stacking over its schedule (3 layers for 12.5% of the time, 6 for 17.5%, 12 for 70%): "
              f"{rate / 1e3:.0f}k tok/s, {rate / base.real_tokens_per_s:.2f}x the baseline's tokens per hour")
    if base and "drop-steady" in by_name:
        at = next(t for t in (i / 1000 for i in range(1001)) if keep_probability(t) <= 0.5 * 1.01)
        print(f"layer drop: theta is within 1% of theta_bar from {100 * at:.1f}% of the run on, so the run "
              f"averages about the steady rate: {by_name['drop-steady'].real_tokens_per_s / base.real_tokens_per_s:.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(device=torch.cuda.get_device_name(), args=vars(args), results=[asdict(r) for r in results]),
                      f, indent=2)


if __name__ == "__main__":
    main()
