"""``efficient-bert compare run``: train every row that has no valid record yet, within a time limit.

A row is one method (or composition) at one budget with one seed, trained from the recipe on the
same data with the reference clock, then fine-tuned on GLUE. Rows whose record (:mod:`.records`)
has the fingerprint this command would produce are reused; a record with another fingerprint is
stale, and the command stops before training anything and lists where the inputs differ
(``--rerun-stale`` retrains such rows and keeps the old records under ``superseded/``).

With ``--time-limit`` a row starts only when its pretraining and GLUE are estimated to end within
the limit (from the wall time of earlier records on the same GPU, or a default); the command then
ends cleanly and lists the rows it left. A row's GLUE fine-tuning runs in the background while the
next row pretrains: under the reference clock a row's training does not depend on how fast the GPU
runs, so sharing the GPU changes the wall time only.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Optional, Sequence

from efficient_bert.tools.compare import records as rec
from efficient_bert.tools.compare.fingerprint import (code_version, data_inputs, differences, digest, glue_inputs,
                                                split_digest, tokenizer_inputs, training_config)
from efficient_bert.tools.compare.methods import BASELINE, layers_of, uses_rho

IL_MODEL = "il-model"
# without an earlier record of the budget on any GPU: the budget on the reference clock, plus start-up,
# compilation, evaluations and the export; GLUE-5 on one GPU
DEFAULT_SLOWDOWN, DEFAULT_OVERHEAD_S, DEFAULT_GLUE_S = 1.3, 120.0, 420.0
DEFAULT_IL_LOSSES_S = 240.0  # RHO-loss: the irreducible losses of --il-epochs of masks, one forward each


@dataclass
class Row:
    method: str
    hours: float
    seed: int
    yamls: list[str]
    overrides: list[str]
    inputs: dict[str, Any]
    folder: Path
    fingerprint: str = ""

    def __post_init__(self):
        self.fingerprint = digest(self.inputs)

    @property
    def name(self) -> str:
        return rec.row_name(self.method, self.seed)


@dataclass
class Outcome:
    reused: list[str] = field(default_factory=list)
    recorded: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)  # not started: the time limit


def common_overrides(args: argparse.Namespace, hours: float) -> list[str]:
    from efficient_bert.tools.experiments import equal_footing

    export = ["callbacks.hf_export={}"] if args.glue_dir else []  # GLUE fine-tunes the row's HF export
    return [*equal_footing(args.data, args.tokenizer, hours, args.eval_mask_seed),
            f"budget.eval_every={args.eval_every}", *export, *args.override]


def il_paths(args: argparse.Namespace, seed: int) -> tuple[Path, Path]:
    """The irreducible-loss model's folder and the losses file of one seed's masks."""
    return Path(args.out) / IL_MODEL, Path(args.out) / f"il_losses-s{seed}.npz"


def il_plan(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    """RHO-loss steps 1-2: the irreducible-loss model trains on the holdout split at the shortest budget."""
    yamls = [args.recipe, str(Path(args.yamls) / "methods" / "rho-il-model.yaml"), args.clock]
    # extract-il reads the model's HF export, which common_overrides asks for only when GLUE runs
    return yamls, [*common_overrides(args, min(args.hours)), "callbacks.hf_export={}", f"seed={args.seeds[0]}"]


def plan(args: argparse.Namespace) -> list[Row]:
    """Every row of the command, in order: each budget, each method, each of its seeds."""
    shared = {"data": data_inputs(args.data, ["train", "validation"]), "tokenizer": tokenizer_inputs(args.tokenizer),
              "glue": glue_inputs(args.glue_yaml, args.glue_override, args.glue_dir) if args.glue_dir else None}
    il = None
    if any(uses_rho(m) for m in args.methods):  # the holdout is the IL model's data: only RHO-loss rows read it
        il_yamls, il_overrides = il_plan(args)
        il = {"config": training_config(il_yamls, il_overrides), "epochs": args.il_epochs,
              "holdout": split_digest(args.data, "holdout")}
    rows = []
    for hours in args.hours:
        for method in args.methods:
            for seed in args.seeds if method == BASELINE else args.seeds[:args.method_seeds]:
                yamls = [args.recipe, *layers_of(method, args.yamls), args.clock]
                overrides = [*common_overrides(args, hours), f"seed={seed}"]
                if uses_rho(method):
                    overrides.append(f"variables.il_losses={il_paths(args, seed)[1]}")
                inputs = {"config": training_config(yamls, overrides), **shared, "il": il if uses_rho(method) else None}
                rows.append(Row(method, hours, seed, yamls, overrides, inputs,
                                Path(args.out) / rec.budget_folder(hours) / rec.row_name(method, seed)))
    return rows


def code_matches(record: rec.Record, code: dict[str, Any]) -> bool:
    return record.code.get("sources") == code.get("sources")


def triage(rows: Sequence[Row], records: Path, code: dict[str, Any], strict_code: bool
           ) -> tuple[list[Row], list[tuple[Row, rec.Record]], list[tuple[Row, rec.Record, list[str]]]]:
    """Rows to run, rows whose record is valid, and rows whose record is stale (with the differences)."""
    todo, valid, stale = [], [], []
    for row in rows:
        old = rec.find(records, row.hours, row.method, row.seed)
        if old is None:
            todo.append(row)
        elif old.fingerprint != row.fingerprint:
            stale.append((row, old, differences(old.inputs, row.inputs)))
        elif strict_code and not code_matches(old, code):
            stale.append((row, old, [f"code: {old.code.get('commit')} ({old.code.get('sources')}) -> "
                                     f"{code.get('commit')} ({code.get('sources')})"]))
        else:
            valid.append((row, old))
    return todo, valid, stale


def comparable(records: Sequence[rec.Record], gpu: Optional[str]) -> list[rec.Record]:
    """Of records of the same work, those whose times predict this GPU's: its own, else those of any
    other GPU. On the reference clock every GPU trains the same steps, so another GPU's times are the
    same work at another speed, closer than a default."""
    return [r for r in records if r.environment.get("gpu") == gpu] or list(records)


def estimate(row: Row, history: Sequence[rec.Record], gpu: Optional[str], glue: bool) -> tuple[float, float]:
    """Seconds the row's pretraining and GLUE should take: the median of earlier records of this budget
    (``comparable``: this GPU's, else another's; the same method's if any), else a default."""
    here = comparable([r for r in history if r.hours == row.hours], gpu)
    mine = [r for r in here if r.method == row.method] or here
    walls = [r.pretrain["wall_seconds"] for r in mine if r.pretrain.get("wall_seconds")]
    pretrain = statistics.median(walls) if walls else row.hours * 3600 * DEFAULT_SLOWDOWN + DEFAULT_OVERHEAD_S
    glue_walls = [r.glue["wall_seconds"] for r in here if r.glue and r.glue.get("wall_seconds")]
    return pretrain, (statistics.median(glue_walls) if glue_walls else DEFAULT_GLUE_S) if glue else 0.0


def estimate_il(row: Row, args: argparse.Namespace, history: Sequence[rec.Record], gpu: Optional[str]) -> float:
    """Seconds RHO-loss's preparation adds before the row: the irreducible-loss model unless trained
    already (as long as the shortest budget's pretraining), and this seed's losses unless extracted."""
    if not uses_rho(row.method):
        return 0.0
    from efficient_bert.tools.experiments import finished_result

    model_dir, losses = il_paths(args, row.seed)
    if losses.is_file():
        return 0.0
    timed = comparable([r for r in history if r.pretrain.get("il_seconds")], gpu)
    here = [r.pretrain["il_seconds"] for r in timed]
    models, extracts = [h["model"] for h in here if h["model"]], [h["losses"] for h in here if h["losses"]]
    if finished_result(model_dir) is not None:
        model = 0.0
    else:  # it trains like a baseline row of the shortest budget
        model = statistics.median(models) if models else \
            estimate(replace(row, method=BASELINE, hours=min(args.hours)), history, gpu, False)[0]
    return model + (statistics.median(extracts) if extracts else DEFAULT_IL_LOSSES_S)


def curve(folder: Path) -> list[list[float]]:
    """(reference hours charged, tokens, eval loss) at every evaluation of a finished run."""
    from efficient_bert.tools.report import ReportError, read_run

    try:
        run = read_run(folder)
    except ReportError:
        return []
    charged = run.eval_reference_hours if len(run.eval_reference_hours) == len(run.eval_points) else \
        [None] * len(run.eval_points)
    return [[h, tokens, loss] for h, (_, tokens, loss) in zip(charged, run.eval_points)]


# what the methods' algorithms log (Sophia-G's win rate, layer drop's θ, ...): how a method behaved in a row
METHOD_METRICS = ("sophia/", "layer_stacking/", "layer_drop/", "selective_backprop/", "rho_loss/",
                  "batch_size_warmup/")


def method_metrics(folder: Path, points: int = 20) -> dict[str, list[list[float]]]:
    """Each method metric of a finished run as [batch, value] pairs: ``points`` of its logs evenly
    spaced from the first to the last."""
    from efficient_bert.run_files import metric_rows

    logs: dict[str, list[list[float]]] = {}
    for row in metric_rows(folder):
        for key, value in row.items():
            if key.startswith(METHOD_METRICS):
                logs.setdefault(key, []).append([row["batch"], value])
    return {key: [pairs[i] for i in sorted({round(k * (len(pairs) - 1) / (points - 1)) for k in range(points)})]
            for key, pairs in sorted(logs.items())}


def glue_summary(folder: Path) -> Optional[dict[str, Any]]:
    """The row's GLUE suite summary (its ``results.json``), or None when the suite wrote none."""
    path = folder / "glue" / "results.json"
    return json.loads(path.read_text()) if path.is_file() else None


def glue_result(folder: Path, summary: dict[str, Any], command: str, seconds: float) -> dict[str, Any]:
    """The GLUE part of a record, from the suite's summary and its per-job results under ``folder``."""
    results = folder / "glue"
    tasks = {}
    for name, task in summary["tasks"].items():
        jobs = [json.loads(p.read_text()) for p in sorted((results / name).glob("seed-*/result.json"))]
        tasks[name] = {"score": task.get("score"), "metrics": task.get("median"), "errors": task["errors"],
                       "majority_class": task.get("majority_class"), "job_seconds": [j["seconds"] for j in jobs]}
    return {"tasks": tasks, "average": summary["averages"].get("glue", {}).get("average"),
            "wall_seconds": round(seconds, 1), "command": command}


def glue_problem(summary: Optional[dict[str, Any]]) -> Optional[str]:
    """Why a row's GLUE cannot go into its record, or None. A task whose fine-tuning diverged is a result
    of the method, recorded as such (the table shows it and leaves the row out of the GLUE average); any
    other failure need not recur, so the row stays unrecorded and a later slice runs it again."""
    if summary is None:
        return "the suite wrote no results"
    others = [e for task in summary["tasks"].values() for e in task["errors"] if not rec.diverged(e)]
    return others[0] if others else None


class GlueQueue:
    """GLUE suites running in the background (each its own process, its jobs in parallel on the GPU),
    at most ``concurrent`` at a time."""

    def __init__(self, concurrent: int):
        self.concurrent = concurrent
        self.waiting: list[tuple[Any, list[str], Path]] = []
        self.running: list[tuple[Any, subprocess.Popen, float, str, Any, list[float]]] = []

    def submit(self, key: Any, command: list[str], log: Path) -> None:
        self.waiting.append((key, command, log))
        self._start()

    def _start(self) -> None:
        while self.waiting and len(self.running) < self.concurrent:
            key, command, log = self.waiting.pop(0)
            handle = open(log, "w", encoding="utf-8")
            print(f"[compare] GLUE {key}: {shlex.join(command)}", flush=True)
            process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT)
            ended: list[float] = []
            # the queue is polled only between pretraining runs: a thread notes when the suite really ends
            threading.Thread(target=lambda p=process, e=ended: (p.wait(), e.append(time.monotonic())),
                             daemon=True).start()
            self.running.append((key, process, time.monotonic(), shlex.join(command), handle, ended))

    def finished(self, block: bool = False) -> list[tuple[Any, int, float, str]]:
        """(key, exit code, seconds, command) of the suites that ended; with ``block``, waits for all."""
        done = []
        while True:
            for entry in list(self.running):
                key, process, started, command, handle, ended = entry
                if ended:
                    handle.close()
                    self.running.remove(entry)
                    done.append((key, process.returncode, ended[0] - started, command))
            self._start()
            if not block or not (self.running or self.waiting):
                return done
            time.sleep(1.0)


class ILFailed(RuntimeError):
    """RHO-loss's preparation failed: its rows fail, the others still run."""


def prepare_il(args: argparse.Namespace, entry: list[str], seed: int) -> dict[str, float]:
    """RHO-loss steps 1-2 for one seed's masks (the model once, the losses once per seed); the seconds
    each took here (0: done earlier)."""
    from efficient_bert.tools.experiments import RunSpec, finished_result, run_config

    model_dir, losses = il_paths(args, seed)
    if losses.is_file():
        return {"model": 0.0, "losses": 0.0}
    yamls, overrides = il_plan(args)
    begin = time.monotonic()
    trains_now = finished_result(model_dir) is None
    result = run_config(RunSpec(IL_MODEL, yamls), Path(args.out), entry, overrides, tag="compare")
    model_s = time.monotonic() - begin if trains_now else 0.0
    if result.returncode != 0:
        raise ILFailed(f"the irreducible-loss model failed (exit {result.returncode}); see {model_dir}.log")
    command = [sys.executable, "-m", "efficient_bert", "extract-il", "--model", str(model_dir / "hf"),
               "--tokenizer", args.tokenizer, "--data_local", args.data, "--split", "train", "--seed", str(seed),
               "--epochs", str(args.il_epochs), "--out", str(losses)]
    print(f"[compare] irreducible losses, seed {seed}: {shlex.join(command)}", flush=True)
    begin = time.monotonic()
    if subprocess.run(command).returncode != 0:
        raise ILFailed(f"extracting the irreducible losses of seed {seed} failed (its output is above)")
    return {"model": round(model_s, 1), "losses": round(time.monotonic() - begin, 1)}


def glue_command(args: argparse.Namespace, row: Row) -> list[str]:
    return [sys.executable, "-m", "efficient_bert", "finetune", args.glue_yaml, f"checkpoint={row.folder / 'hf'}",
            f"glue_dir={args.glue_dir}", f"results_dir={row.folder / 'glue'}", "resume=true", *args.glue_override]


def execute(rows: Sequence[Row], args: argparse.Namespace, code: dict[str, Any], outcome: Outcome) -> None:
    """Pretrain each row, fine-tune it in the background, record it; within the time limit."""
    from efficient_bert.tools.experiments import RunSpec, run_config, single_process_launcher

    started = time.monotonic()
    deadline = started + 60 * args.time_limit if args.time_limit else None
    entry = [*(args.launcher or single_process_launcher(module=True)), "efficient_bert.pretrain"]
    env = rec.environment()
    history = list(rec.all_records(args.records))
    queue = GlueQueue(args.glue_concurrent)
    pending: dict[str, rec.Record] = {}
    il_failure: Optional[ILFailed] = None

    def collect(block: bool) -> None:
        for name, code_, seconds, command in queue.finished(block):
            record = pending.pop(name)
            folder = Path(args.out) / rec.budget_folder(record.hours) / name
            summary = glue_summary(folder)
            problem = glue_problem(summary)
            if problem is not None:
                print(f"[compare] GLUE {name} failed (exit {code_}: {problem}); see {folder}.glue.log", flush=True)
                outcome.failed.append(f"{rec.budget_folder(record.hours)}/{name} (GLUE)")
                continue
            record.glue = glue_result(folder, summary, command, seconds)
            path = rec.save(record, args.records)
            history.append(record)
            outcome.recorded.append(f"{rec.budget_folder(record.hours)}/{name}")
            print(f"[compare] recorded {path} (GLUE average {record.glue['average']})", flush=True)

    for row in rows:
        collect(block=False)
        key = f"{rec.budget_folder(row.hours)}/{row.name}"
        pretrain_s, glue_s = estimate(row, history, env["gpu"], bool(args.glue_dir))
        needed = estimate_il(row, args, history, env["gpu"]) + pretrain_s + glue_s
        if deadline is not None and time.monotonic() + needed > deadline:
            outcome.left.append(f"{key} (needs about {needed / 60:.1f} min, "
                                f"{max(0.0, deadline - time.monotonic()) / 60:.1f} left)")
            continue
        il_seconds = None
        if uses_rho(row.method):
            try:
                il_seconds = prepare_il(args, entry, row.seed) if il_failure is None else None
            except ILFailed as exc:
                il_failure = exc
            if il_failure is not None:  # the next seeds' rows do not train the model again
                print(f"[compare] {key}: {il_failure}", flush=True)
                outcome.failed.append(f"{key} ({il_failure})")
                continue
        begin = time.monotonic()
        result = run_config(RunSpec(row.name, row.yamls), row.folder.parent, entry, row.overrides, tag="compare")
        if result.returncode != 0 or result.eval_loss is None:
            outcome.failed.append(key)
            continue
        record = rec.Record(row.method, row.hours, row.seed, row.fingerprint, row.inputs, code, env,
                            {**asdict(result), "curve": curve(row.folder), "method_metrics": method_metrics(row.folder),
                             "wall_seconds": round(time.monotonic() - begin, 1),
                             **({"il_seconds": il_seconds} if il_seconds is not None else {})})
        if args.glue_dir:
            pending[row.name] = record
            queue.submit(row.name, glue_command(args, row), row.folder.parent / f"{row.name}.glue.log")
        else:
            path = rec.save(record, args.records)
            history.append(record)
            outcome.recorded.append(key)
            print(f"[compare] recorded {path}", flush=True)
    collect(block=True)


def main(args: argparse.Namespace) -> int:
    code = code_version(args.code_commit)
    try:
        rows = plan(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    records = Path(args.records)
    todo, valid, stale = triage(rows, records, code, args.strict_code)
    outcome = Outcome(reused=[f"{rec.budget_folder(r.hours)}/{r.name}" for r, _ in valid])
    for row, old in valid:
        other = "" if code_matches(old, code) else f" (trained by other code: {old.code.get('commit')})"
        print(f"[compare] {rec.budget_folder(row.hours)}/{row.name}: recorded {old.recorded_at}{other}", flush=True)
    if stale:
        lines = [f"{rec.budget_folder(r.hours)}/{r.name}: " + "; ".join(d[:4]) + (" ..." if len(d) > 4 else "")
                 for r, _, d in stale]
        if not args.rerun_stale:
            print("error: these records were made with other inputs than this command's:\n  " + "\n  ".join(lines)
                  + "\nrun the command that made them, or pass --rerun-stale to train these rows again (the old "
                  f"records move to {records / rec.SUPERSEDED})", file=sys.stderr)
            return 2
        for row, old, _ in stale:
            print(f"[compare] set aside {rec.set_aside(records, old)}", flush=True)
        again = {id(r) for r in todo} | {id(r) for r, _, _ in stale}
        todo = [r for r in rows if id(r) in again]
    if args.dry_run:
        env_gpu = rec.environment()["gpu"]
        history = list(rec.all_records(records))
        for row in todo:
            p, g = estimate(row, history, env_gpu, bool(args.glue_dir))
            print(f"[compare] would run {rec.budget_folder(row.hours)}/{row.name}: about {(p + g) / 60:.1f} min",
                  flush=True)
        return 0
    Path(args.out).mkdir(parents=True, exist_ok=True)
    execute(todo, args, code, outcome)
    for label, names in (("reused", outcome.reused), ("recorded", outcome.recorded), ("failed", outcome.failed),
                         ("left for a later slice", outcome.left)):
        if names:
            print(f"[compare] {label}: {', '.join(names)}", flush=True)
    return 1 if outcome.failed else 0
