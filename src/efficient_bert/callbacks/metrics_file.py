"""A local metrics file for every run: one JSON line per batch with everything the loggers received.

``efficient-bert report`` reads it, so comparing runs needs no tracking service. Each line holds the
batch, samples, tokens and training wall-clock seconds of the moment, and the metrics logged at that
batch (loss, eval loss, LR, throughput, MFU, memory, budget used ...). The counts are Composer's
timestamp: a step's training loss is logged before the step is counted, so it sits on the row of
the batches before it (Composer's own logging step); evaluations after step n sit on row n.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Optional

from composer.core import State
from composer.loggers import Logger, LoggerDestination
from composer.utils import dist

from efficient_bert.files import write_text_atomically
from efficient_bert.run_files import METRICS_FILE, RUN_FILE, trained_batches


class MetricsFile(LoggerDestination):
    """Writes ``<folder>/metrics.jsonl`` (rank 0). A fresh run refuses a folder that already holds the
    metrics of a run that trained unless ``overwrite``; a resumed run (starting past batch 0) appends.
    ``run.json`` gets the hyper-parameters.

    Every checkpoint records how many rows the file held when it was saved and the row being filled,
    so a run resumed from it first drops the rows of the steps it will redo: the file then reads as if
    the run never stopped."""

    def __init__(self, folder: str, overwrite: bool = False):
        self.folder = Path(folder)
        self.path = self.folder / METRICS_FILE
        self.overwrite = overwrite
        self._state: Optional[State] = None
        self._row: dict[str, Any] = {}
        self._handle = None
        self._rows_written = 0
        self._rows_to_keep: Optional[int] = None  # from the checkpoint a resumed run loaded
        self._hyperparameters: dict[str, Any] = {}
        self._run_file_written = False

    def _resumed(self) -> bool:
        return self._state is not None and int(self._state.timestamp.batch) > 0

    def init(self, state: State, logger: Logger) -> None:
        self._state = state

    def _open(self) -> None:
        # opened at the first row, which may come before fit (eval_at_start)
        resumed = self._resumed()
        # a run that trained nothing (failed at its first step) leaves nothing to keep
        if not resumed and not self.overwrite and trained_batches(self.folder) > 0:
            raise FileExistsError(f"{self.path} already holds a run's metrics; choose another save_folder or "
                                  "set save_overwrite=true")
        if not self._run_file_written:
            self._write_run_file()
        self.folder.mkdir(parents=True, exist_ok=True)
        if resumed and self._rows_to_keep is not None and self.path.exists():
            kept = self.path.read_text(encoding="utf-8").splitlines(keepends=True)[: self._rows_to_keep]
            write_text_atomically(self.path, "".join(kept))
            self._rows_written = len(kept)
        self._handle = open(self.path, "a" if resumed else "w", encoding="utf-8")

    def log_hyperparameters(self, hyperparameters: dict[str, Any]) -> None:
        # Composer logs some of its own too. Kept until the run starts: a resume refused before it
        # (a finished run) leaves run.json as it was
        self._hyperparameters.update(hyperparameters)
        if self._run_file_written:
            self._write_run_file()

    def _write_run_file(self) -> None:
        if dist.get_global_rank() == 0:
            self.folder.mkdir(parents=True, exist_ok=True)
            path = self.folder / RUN_FILE
            earlier = json.loads(path.read_text()) if path.is_file() and self._resumed() else {}
            write_text_atomically(path, json.dumps({**earlier, **self._hyperparameters}, indent=1, default=str))
        self._run_file_written = True

    def fit_start(self, state: State, logger: Logger) -> None:
        if not self._run_file_written:
            self._write_run_file()

    def log_metrics(self, metrics: dict[str, float], step: Optional[int] = None) -> None:
        if dist.get_global_rank() != 0 or self._state is None:
            return
        ts = self._state.timestamp
        if self._row and self._row["batch"] != int(ts.batch):
            self._flush()
        if not self._row:
            self._row = {"batch": int(ts.batch), "samples": int(ts.sample), "tokens": int(ts.token),
                         "wall_s": round(ts.total_wct.total_seconds(), 3)}
        for key, value in metrics.items():
            value = float(value.item() if hasattr(value, "item") else value)
            self._row[key] = value if math.isfinite(value) else str(value)  # JSON has no NaN

    def _flush(self) -> None:
        if self._row and self._handle is None:
            self._open()
        if self._row:
            self._handle.write(json.dumps(self._row) + "\n")
            self._handle.flush()
            self._rows_written += 1
        self._row = {}

    def state_dict(self) -> dict[str, Any]:
        # called when a checkpoint is saved: the rows written so far and the row being filled are the
        # run up to that checkpoint (a row is not cut in two where a checkpoint falls)
        return {"rows": self._rows_written, "row": json.dumps(self._row)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._rows_to_keep = int(state.get("rows", 0))
        if dist.get_global_rank() == 0:  # the one process that writes the file
            self._row = json.loads(state.get("row", "{}"))

    def eval_end(self, state: State, logger: Logger) -> None:
        self._flush()  # an evaluation's metrics are a row of their own at that batch

    def fit_end(self, state: State, logger: Logger) -> None:
        self._flush()

    def close(self, state: State, logger: Logger) -> None:
        self._flush()
        if self._handle is not None:
            self._handle.close()
            self._handle = None
