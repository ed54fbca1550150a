"""Keep every evaluation's metrics, write them to JSON and report the first and last at the end."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from composer.core import Callback, State
from composer.loggers import Logger
from composer.utils import dist

from efficient_bert.files import write_text_atomically


class EvalHistory(Callback):
    """Records ``{batch, tokens, <evaluator>/<metric>: value}`` after each evaluation.

    With ``path`` set, rank 0 rewrites that JSON file after every evaluation, so the curve survives a
    killed run. The records are part of every checkpoint: a resumed run starts from the evaluations
    made up to its checkpoint and, once it trains, drops those of the abandoned steps after it (a
    resume refused before training changes nothing).
    """

    def __init__(self, path: Optional[str] = None):
        self.path = Path(path) if path else None
        self.records: list[dict[str, Any]] = []

    def eval_end(self, state: State, logger: Logger) -> None:
        record: dict[str, Any] = {"batch": int(state.timestamp.batch), "tokens": int(state.timestamp.token)}
        for label, metrics in state.eval_metrics.items():
            for name, metric in metrics.items():
                record[f"{label}/{name}"] = float(metric.compute())
        self.records.append(record)
        self._write()

    def _write(self) -> None:
        if self.path is not None and dist.get_global_rank() == 0:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomically(self.path, json.dumps(self.records, indent=1) + "\n")

    def state_dict(self) -> dict[str, Any]:
        # one string: sharded (FSDP) checkpoints would flatten a list of dicts, and a resumed run's
        # empty list would then not match the saved one
        return {"records": json.dumps(self.records)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.records = json.loads(state.get("records", "[]"))

    def fit_start(self, state: State, logger: Logger) -> None:
        if int(state.timestamp.batch) > 0:  # resumed: the file as of the checkpoint
            self._write()

    def series(self, key: str) -> list[float]:
        return [r[key] for r in self.records if key in r]

    def summary(self, key: str = "eval/LanguageCrossEntropy", floor: str = "eval/UnigramEntropy") -> str:
        """First and last value of ``key``, and the last value of ``floor`` (the unigram floor) beside them."""
        values = self.series(key)
        if not values:
            return f"no evaluation of {key} was run"
        first, last = self.records[0], self.records[-1]
        floors = self.series(floor)
        beside = f"; unigram floor {floors[-1]:.4f} (last - floor = {values[-1] - floors[-1]:+.4f})" if floors else ""
        return (f"{key}: first {values[0]:.4f} (batch {first['batch']}) -> last {values[-1]:.4f} "
                f"(batch {last['batch']}) over {len(values)} evaluations{beside}")
