"""The training loop's cost: main.py's trainer against the same model and optimizer alone, in one process.

For each named config (YAML files and key=value overrides, as main.py takes them), the run is built
as main.py builds it (:func:`efficient_bert.pretrain.build.build_trainer`: MDS shards streamed through the
collator, the YAML's callbacks, loggers and algorithms), without its evaluation loader. Then:

1. trainer: ``fit()`` for ``--warmup`` batches (compilation included), then ``--repeats`` timing
   windows of ``--steps`` batches, each window between two GPU synchronisations;
2. model only: the same model and optimizer on the last ``--steps`` batches the trainer trained,
   already on the GPU, in the same microbatches and precision: forward, loss, backward, optimizer
   step, nothing else (no loader, callbacks, loggers, algorithms such as gradient clipping, or LR
   schedule), timed in windows the same way.

Prints real (non-pad) tokens/s of both, with the trainer's share of the model-only speed, and each
config's ratio to the first config, for both paths. The median window counts; "spread" is
(slowest - fastest window) / median. A script, not a test: run it on a GPU, through the launcher as
a user does:

    composer -n 1 bench/trainer_path.py --data runs/enwiki/mds --tokenizer runs/enwiki/tok \\
        --run "ours=yamls/pretrain/mosaic-bert-budget.yaml" \\
        --run "ours-log-every-batch=yamls/pretrain/mosaic-bert-budget.yaml train_log_interval=1ba" \\
        --run "hf=yamls/pretrain/mosaic-bert-budget.yaml yamls/pretrain/hf-bert-budget.yaml"

``--composer-loop NAME`` runs that config with Composer's device reads at every step, which
:class:`efficient_bert.pretrain.trainer.Trainer` and :class:`efficient_bert.callbacks.SpeedMonitor` skip in one
process: an A/B of what they cost.

``--profile NAME`` runs ``--profile-steps`` more batches of that run's trainer under the torch
profiler and cProfile, after its timing windows, and prints the GPU kernel time per step, the top
kernels and the host's top Python functions.

A run's own overrides come last, so a run can read other data: short documents as text rows, with
and without packing, against the full rows of ``--data``:

    composer -n 1 bench/trainer_path.py --data runs/enwiki/mds --tokenizer runs/enwiki/tok \
        --run "full=yamls/pretrain/mosaic-bert-budget.yaml" \
        --run "short=yamls/pretrain/mosaic-bert-budget.yaml train_loader.dataset.local=runs/short-mds" \
        --run "short-packed=yamls/pretrain/mosaic-bert-budget.yaml train_loader.dataset.local=runs/short-mds \
               train_loader.dataset.pack=true global_train_batch_size=4096 device_train_microbatch_size=4096"
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import torch
from composer.core import Callback, State, get_precision_context
from composer.loggers import Logger

from efficient_bert.algorithms.batch_selection import select_rows
from efficient_bert.data.dataloader import real_tokens
from efficient_bert.data.mlm_collator import batch_rows
from efficient_bert.tools.experiments import parse_run

@dataclass
class PathSpeed:
    tokens_per_s: float  # of the median window
    step_ms: float
    spread: float


@dataclass
class Result:
    name: str
    args: list[str]
    trainer: PathSpeed
    model_only: PathSpeed

    @property
    def share(self) -> float:
        return self.trainer.tokens_per_s / self.model_only.tokens_per_s


def synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def speed(windows: list[tuple[float, int]], steps: int) -> PathSpeed:
    """From (seconds, tokens) windows of ``steps`` steps: the median window's figures (an odd count of
    windows: the middle one)."""
    rates = sorted((tokens / seconds, seconds) for seconds, tokens in windows)
    rate, seconds = rates[len(rates) // 2]
    return PathSpeed(rate, 1000 * seconds / steps, (rates[-1][0] - rates[0][0]) / rate)


class WindowClock(Callback):
    """Times ``repeats`` windows of ``steps`` batches after ``warmup`` batches (a GPU sync at each
    boundary only) and keeps the last window's batches (as the loader gave them, on the host) for the
    model-only path. With ``profile``, the batches after the last window run under the profilers."""

    def __init__(self, warmup: int, steps: int, repeats: int, profile: Optional["StepProfile"] = None):
        self.warmup, self.steps, self.repeats, self.profile = warmup, steps, repeats, profile
        self.windows: list[tuple[float, int]] = []
        self.batches: deque = deque(maxlen=steps)
        self._start: Optional[tuple[float, int]] = None

    def batch_end(self, state: State, logger: Logger) -> None:
        done = int(state.timestamp.batch)
        timed = self.warmup + self.steps * self.repeats
        if self.warmup < done <= timed:
            self.batches.append(state.batch)
        if self.profile is not None and done == timed + self.profile.steps:
            self.profile.stop()  # before fit's end, whose HF export and checkpoint copy the model to the host
        if done < self.warmup or (done - self.warmup) % self.steps or len(self.windows) == self.repeats:
            return
        synchronize()
        now, tokens = time.perf_counter(), int(state.timestamp.token)
        if self._start is not None:
            self.windows.append((now - self._start[0], tokens - self._start[1]))
        self._start = (now, tokens)
        if len(self.windows) == self.repeats and self.profile is not None:
            self.profile.start()

    def fit_end(self, state: State, logger: Logger) -> None:
        if self.profile is not None:  # a run that ended early
            self.profile.stop()


class StepProfile:
    """The torch profiler (GPU kernel time) and cProfile (the host's Python) over some training steps."""

    def __init__(self, steps: int):
        self.steps = steps
        self.report = ""
        self._began: Optional[float] = None

    def start(self) -> None:
        import cProfile

        from torch.profiler import ProfilerActivity, profile

        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
        self._torch, self._python = profile(activities=activities), cProfile.Profile()
        self._torch.__enter__()
        self._python.enable()
        self._began = time.perf_counter()

    def stop(self) -> None:
        import io
        import pstats
        from torch.autograd import DeviceType

        if self._began is None:  # not started, or stopped already
            return
        synchronize()
        wall = time.perf_counter() - self._began
        self._began = None
        self._python.disable()
        self._torch.__exit__(None, None, None)
        events = self._torch.key_averages()
        # the kernels' own rows: an operator's row repeats the time of the kernels it launched
        gpu = sum(e.self_device_time_total for e in events if e.device_type == DeviceType.CUDA) / 1e3  # ms
        host = io.StringIO()
        pstats.Stats(self._python, stream=host).sort_stats("tottime").print_stats(25)
        self.report = "\n".join([
            f"profiled {self.steps} steps: {1000 * wall / self.steps:.1f} ms per step (profilers on), GPU kernels "
            f"{gpu / self.steps:.1f} ms per step",
            events.table(sort_by="self_device_time_total" if torch.cuda.is_available() else "self_cpu_time_total",
                         row_limit=20),
            host.getvalue()])


def microbatches(batch: dict[str, Any], size: int) -> list[dict[str, Any]]:
    """``batch`` in microbatches of ``size`` rows."""
    rows = batch_rows(batch)
    return [select_rows(batch, range(i, min(i + size, rows))) for i in range(0, rows, size)]


def time_model_only(state: State, batches: list[dict[str, Any]], microbatch: int, repeats: int
                    ) -> list[tuple[float, int]]:
    model, optimizer = state.model, state.optimizers[0]
    model.train()
    split = [[state.device.batch_to_device(part) for part in microbatches(b, microbatch)] for b in batches]
    tokens = sum(real_tokens(b) for b in batches)

    def step(parts: list[dict[str, Any]]) -> None:
        rows = sum(batch_rows(p) for p in parts)
        for part in parts:
            with get_precision_context(state.precision):
                outputs = model(part)
                loss = model.loss(outputs, part)
            (loss * (batch_rows(part) / rows)).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for parts in split:  # warm-up: the trainer compiled these shapes already
        step(parts)
    windows = []
    for _ in range(repeats):
        synchronize()
        start = time.perf_counter()
        for parts in split:
            step(parts)
        synchronize()
        windows.append((time.perf_counter() - start, tokens))
    return windows


def measure(name: str, args: list[str], data: str, tokenizer: str, warmup: int, steps: int, repeats: int,
            overrides: Sequence[str], profile_steps: int = 0, composer_loop: bool = False) -> Result:
    from efficient_bert.pretrain.build import build_trainer
    from efficient_bert.pretrain.schema import load_config

    yamls = [a for a in args if "=" not in a]
    with tempfile.TemporaryDirectory(prefix=f"trainer-path-{name}-") as folder:
        # a run's own overrides come after the shared ones: a run may read other data
        cfg = load_config(yamls, [
            f"train_loader.dataset.local={data}", f"tokenizer.path={tokenizer}", *overrides,
            *[a for a in args if "=" in a], "eval_loader=null", "budget.eval_every=null", "eval_at_start=false",
            "progress_bar=false", f"max_duration={warmup + steps * repeats + profile_steps}ba",
            f"save_folder={folder}", f"run_name={name}"])
        run = build_trainer(cfg)
        for part in [run.trainer, *run.trainer.state.callbacks]:  # the trainer and the speed monitor
            if hasattr(part, "single_process_fast_path"):
                part.single_process_fast_path = not composer_loop
        profile = StepProfile(profile_steps) if profile_steps else None
        clock = WindowClock(warmup, steps, repeats, profile)
        run.trainer.state.callbacks.append(clock)
        try:
            run.fit()
            microbatch = run.trainer.state.device_train_microbatch_size
            model_windows = time_model_only(run.trainer.state, clock.batches, microbatch, repeats)
        finally:
            run.close()
    if profile is not None:
        print(f"[trainer-path] {name}, trainer profile:\n{profile.report}", flush=True)
    result = Result(name, args, speed(clock.windows, steps), speed(model_windows, steps))
    print(f"[trainer-path] {name}: trainer {result.trainer.tokens_per_s / 1e3:.0f}k tok/s, model only "
          f"{result.model_only.tokens_per_s / 1e3:.0f}k tok/s ({100 * result.share:.1f}%)", flush=True)
    return result


def table(results: Sequence[Result]) -> str:
    first = results[0]
    lines = ["| run | trainer tok/s | step ms | spread | model-only tok/s | step ms | spread | trainer / model-only "
             f"| trainer vs {first.name} | model-only vs {first.name} |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        t, m = r.trainer, r.model_only
        lines.append(f"| {r.name} | {t.tokens_per_s / 1e3:.0f}k | {t.step_ms:.1f} | {100 * t.spread:.1f}% | "
                     f"{m.tokens_per_s / 1e3:.0f}k | {m.step_ms:.1f} | {100 * m.spread:.1f}% | {100 * r.share:.1f}% | "
                     f"{t.tokens_per_s / first.trainer.tokens_per_s:.2f}x | "
                     f"{m.tokens_per_s / first.model_only.tokens_per_s:.2f}x |")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=parse_run, action="append", required=True, metavar="NAME=ARGS",
                        help="a named config: YAML files and key=value overrides, as main.py takes them (repeat)")
    parser.add_argument("--data", required=True, help="MDS root with a train/ split (convert_c4.py)")
    parser.add_argument("--tokenizer", required=True, help="tokenizer folder (efficient-bert train-tokenizer)")
    parser.add_argument("--warmup", type=int, default=30, help="batches before the first window (compilation)")
    parser.add_argument("--steps", type=int, default=30, help="batches per timing window")
    parser.add_argument("--repeats", type=int, default=5, help="timing windows; the median one counts")
    parser.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                        help="a key=value for every run (repeat)")
    parser.add_argument("--profile", action="append", default=[], metavar="NAME",
                        help="after its timing windows, profile this run's trainer (repeat for several runs)")
    parser.add_argument("--composer-loop", action="append", default=[], metavar="NAME",
                        help="run this config with Composer's per-step device reads (repeat for several runs)")
    parser.add_argument("--profile-steps", type=int, default=10, help="training steps under the profilers")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU (a check of the script, not a figure)"
    print(f"{device} | torch {torch.__version__} | data {args.data}", flush=True)
    results = [measure(spec.name, spec.args, args.data, args.tokenizer, args.warmup, args.steps, args.repeats,
                       args.override, args.profile_steps if spec.name in args.profile else 0,
                       spec.name in args.composer_loop) for spec in args.run]
    print(table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"device": device, "args": {**vars(args), "run": [asdict(spec) for spec in args.run]},
             "results": [{**asdict(r), "share": r.share} for r in results]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
