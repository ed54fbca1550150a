"""Named training runs, each one ``main.py`` run in a folder of its own, resumable as a table.

What ``bench/quality.py`` and ``efficient-bert compare`` share: a run is a name and main.py's
arguments (YAML files and ``key=value`` overrides); it trains in a subprocess through the normal
path (``composer -n 1``) into ``<out>/<name>/``, and its figures are read back from the record
folder as ``efficient-bert report`` reads them. A run whose folder holds its result file is done
and is never run again; a folder without one (a killed run) is moved aside, kept, and run again.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional, Sequence

from efficient_bert.tools.report import ReportError, read_run
from efficient_bert.run_files import EVAL_HISTORY_FILE

RESULT_FILE = "run_result.json"


@dataclass
class RunSpec:
    name: str
    args: list[str]  # YAML files and key=value overrides, as main.py takes them


@dataclass
class RunResult:
    name: str
    command: str
    returncode: int
    steps: Optional[int] = None
    tokens: Optional[int] = None  # reached the training forward
    train_seconds: Optional[float] = None  # the budget's wall clock: no evaluation, checkpoints or compilation
    reference_hours: Optional[float] = None  # charged by the reference clock, when the run had one
    compile_seconds: Optional[float] = None
    eval_loss: Optional[float] = None
    masked_accuracy: Optional[float] = None
    unigram_floor: Optional[float] = None
    evaluations: int = 0

    @property
    def tokens_per_second(self) -> Optional[float]:
        return self.tokens / self.train_seconds if self.tokens and self.train_seconds else None


def parse_run(text: str) -> RunSpec:
    """``NAME=YAML [YAML ...] [key=value ...]``, a ``--run`` argument of the benchmark scripts."""
    name, sep, rest = text.partition("=")
    if not sep or not name or "/" in name or not rest.strip():
        raise argparse.ArgumentTypeError(f"--run takes NAME=YAML [YAML ...] [key=value ...], got {text!r}")
    return RunSpec(name, shlex.split(rest))


def single_process_launcher(module: bool = False) -> list[str]:
    """The command that starts one training process: ``composer -n 1`` (with ``module``, ``-m``:
    the next argument is a Python module, not a script)."""
    base = ["composer"] if shutil.which("composer") else [sys.executable, "-m", "composer.cli.launcher"]
    return [*base, "-n", "1", *(["-m"] if module else [])]


def equal_footing(data: Optional[str], tokenizer: Optional[str], hours: Optional[float], mask_seed: int,
                  mlm_probability: Optional[float] = None, eval_batches: int = -1) -> list[str]:
    """The overrides every run of a comparison shares: data, tokenizer, the budget (which then ends
    the run) and the evaluation: the same held-out rows, unshuffled, masked with one seed."""
    out = []
    if data:
        out += [f"train_loader.dataset.local={data}", f"eval_loader.dataset.local={data}"]
    if tokenizer:
        out.append(f"tokenizer.path={tokenizer}")
    if hours is not None:
        out += [f"budget.hours={hours}", "max_duration=100000000ba"]
    out.append(f"eval_loader.dataset.mask_seed={mask_seed}")
    if mlm_probability is not None:
        out.append(f"eval_loader.dataset.mlm_probability={mlm_probability}")
    return out + ["eval_loader.dataset.shuffle=false", f"eval_subset_num_batches={eval_batches}"]


def read_result(folder: Path, name: str, command: str, returncode: int) -> RunResult:
    """A run's figures from its record folder."""
    result = RunResult(name, command, returncode)
    try:
        record = read_run(folder)
    except ReportError:  # a run that failed before its first evaluation
        return result
    result.steps, result.tokens, result.compile_seconds = record.batches, record.trained_tokens, record.compile_seconds
    result.train_seconds = record.wall_hours * 3600
    result.reference_hours = record.reference_hours
    result.eval_loss, result.unigram_floor = record.final_eval_loss, record.unigram_floor
    records = json.loads((folder / EVAL_HISTORY_FILE).read_text())
    result.evaluations, result.masked_accuracy = len(records), records[-1].get("eval/MaskedAccuracy")
    return result


def finished_result(folder: Path) -> Optional[RunResult]:
    path = folder / RESULT_FILE
    return RunResult(**json.loads(path.read_text())) if path.is_file() else None


def run_config(spec: RunSpec, out: Path, entry: Sequence[str], overrides: Sequence[str] = (),
               tag: str = "run") -> RunResult:
    """Train ``spec`` into ``out/<name>`` with ``entry`` (the command before main.py's arguments),
    unless it is done already; its output goes to ``out/<name>.log``."""
    folder = out / spec.name
    done = finished_result(folder)
    if done is not None:
        print(f"[{tag}] {spec.name}: done earlier, reading {folder / RESULT_FILE}", flush=True)
        return done
    if folder.exists():
        aside = next(folder.with_name(f"{folder.name}.interrupted-{i}") for i in range(1, 1000)
                     if not folder.with_name(f"{folder.name}.interrupted-{i}").exists())
        folder.rename(aside)
        if (out / f"{spec.name}.log").is_file():
            (out / f"{spec.name}.log").rename(out / f"{aside.name}.log")
        print(f"[{tag}] {spec.name}: {folder} holds no {RESULT_FILE} (an interrupted run): moved to {aside}, "
              "running it again", flush=True)
    cmd = [*entry, *spec.args, *overrides, f"save_folder={folder}", f"run_name={spec.name}"]
    command = shlex.join(cmd)
    print(f"[{tag}] {spec.name}: {command}", flush=True)
    start = time.monotonic()
    log_path = out / f"{spec.name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT)
    result = read_result(folder, spec.name, command, proc.returncode)
    print(f"[{tag}] {spec.name}: exit {proc.returncode} after {time.monotonic() - start:.0f} s; "
          f"eval loss {result.eval_loss}; log {log_path}", flush=True)
    if proc.returncode == 0 and folder.is_dir():
        (folder / RESULT_FILE).write_text(json.dumps(asdict(result), indent=1))
    return result
