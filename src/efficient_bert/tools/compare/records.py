"""One JSON file per finished comparison row, kept in a folder meant to be committed.

``<records>/<hours>h/<method>-s<seed>.json`` holds everything the table needs, so the table and its
plots are rebuilt from the records alone, on any machine: the row's pretraining figures and its
eval-loss curve, its GLUE scores, the inputs that decided them and their fingerprint
(:mod:`.fingerprint`), the code that ran, the machine (GPU, torch, Triton), the commands and the
wall time each part took (which the time limit of later slices estimates from).
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

from efficient_bert.errors import FineTuningDiverged
from efficient_bert.files import write_text_atomically

SUPERSEDED = "superseded"


def diverged(error: str) -> bool:
    """Whether a fine-tuning job's error (as the suite lists it) says the fine-tuning diverged."""
    return f"{FineTuningDiverged.__name__}: " in error


def budget_folder(hours: float) -> str:
    return f"{hours:g}h"


def row_name(method: str, seed: int) -> str:
    return f"{method}-s{seed}"


@dataclass
class Record:
    method: str
    hours: float
    seed: int
    fingerprint: str
    inputs: dict[str, Any]
    code: dict[str, Any]
    environment: dict[str, Any]
    pretrain: dict[str, Any]  # experiments.RunResult's figures, the eval curve, the command, wall seconds
    glue: Optional[dict[str, Any]] = None  # task -> score, average, per-task metrics, wall seconds
    recorded_at: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))

    @property
    def name(self) -> str:
        return row_name(self.method, self.seed)

    @property
    def eval_loss(self) -> Optional[float]:
        return self.pretrain.get("eval_loss")

    def glue_score(self, task: str) -> Optional[float]:
        """The task's score; None when it was not run or did not finish with a finite score."""
        score = ((self.glue or {}).get("tasks", {}).get(task) or {}).get("score")
        return score if score is not None and math.isfinite(score) else None

    @property
    def glue_failed(self) -> list[str]:
        """The GLUE tasks this row ran that have no finite score (an error, or a fine-tuning that diverged)."""
        return [t for t in (self.glue or {}).get("tasks", {}) if self.glue_score(t) is None]

    def glue_diverged(self, task: str) -> bool:
        """Whether every error of the task says its fine-tuning diverged (and there was one)."""
        errors = ((self.glue or {}).get("tasks", {}).get(task) or {}).get("errors") or []
        return bool(errors) and all(diverged(e) for e in errors)

    @property
    def glue_average(self) -> Optional[float]:
        """The suite's average, only when every task it ran has a score: one over fewer tasks is not comparable."""
        average = (self.glue or {}).get("average")
        return None if self.glue_failed or average is None or not math.isfinite(average) else average


def record_path(records: str | Path, hours: float, method: str, seed: int) -> Path:
    return Path(records) / budget_folder(hours) / f"{row_name(method, seed)}.json"


def save(record: Record, records: str | Path) -> Path:
    """Write the record (atomically: a killed writer leaves the old file or none, never half of one)."""
    path = record_path(records, record.hours, record.method, record.seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically(path, json.dumps(asdict(record), indent=1, sort_keys=False) + "\n")
    return path


def load(path: str | Path) -> Record:
    try:
        return Record(**json.loads(Path(path).read_text()))
    except (json.JSONDecodeError, TypeError) as exc:
        raise ValueError(f"{path} is not a comparison record ({exc}); move it out of the records folder") from exc


def find(records: str | Path, hours: float, method: str, seed: int) -> Optional[Record]:
    path = record_path(records, hours, method, seed)
    return load(path) if path.is_file() else None


def all_records(records: str | Path) -> Iterator[Record]:
    """Every record under ``records`` (superseded ones left out), by budget, then file name."""
    root = Path(records)
    for path in sorted(root.glob("*h/*.json")):
        yield load(path)


def set_aside(records: str | Path, record: Record) -> Path:
    """Move a stale record to ``<records>/superseded/`` under its fingerprint, keeping it."""
    path = record_path(records, record.hours, record.method, record.seed)
    target = Path(records) / SUPERSEDED / budget_folder(record.hours) / f"{record.name}-{record.fingerprint}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(path, target)
    return target


def environment() -> dict[str, Any]:
    """The machine a row ran on: GPU, torch, CUDA, Triton and Python versions."""
    import torch

    env: dict[str, Any] = {"torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version(),
                           "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                           "gpus": torch.cuda.device_count(), "cpus": os.cpu_count()}
    try:
        import triton

        env["triton"] = triton.__version__
    except ImportError:
        env["triton"] = None
    return env
