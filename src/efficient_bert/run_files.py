"""What a run writes into its record folder (its local ``save_folder``), by name: its files, and the
budget's metrics among the rows of ``metrics.jsonl``.

Here, apart from the callbacks that write them, so that readers (``efficient-bert report``) need not
import Composer.
"""

import json
from pathlib import Path
from typing import Any, Iterator

METRICS_FILE = "metrics.jsonl"  # one JSON line per logged batch (callbacks.metrics_file)
RUN_FILE = "run.json"  # the run's resolved configuration
EVAL_HISTORY_FILE = "eval_history.json"  # every evaluation's metrics (callbacks.eval_history)

# what efficient_bert.budget.TrainingBudget logs after every step
BUDGET_FRACTION = "budget/fraction"  # of the budget used
BUDGET_WALL_HOURS = "budget/wall_hours"  # training time on this machine
BUDGET_RST_HOURS = "budget/rst_hours"  # in reference-system time
BUDGET_REFERENCE_HOURS = "budget/reference_hours"  # charged by the reference clock (only with one)
BUDGET_COMPILE_SECONDS = "budget/compile_seconds"  # torch.compile time the budget left out


def metric_rows(folder: Path) -> Iterator[dict[str, Any]]:
    """The rows of the metrics file in ``folder`` (none without one); a line that a killed run cut off
    is skipped."""
    path = Path(folder) / METRICS_FILE
    if not path.is_file():
        return
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            yield row


def trained_batches(folder: Path) -> int:
    """The last batch that the run recorded in ``folder`` reached, by its metrics file: 0 for a run that
    trained nothing (one that failed at its first step leaves only its evaluation at batch 0)."""
    last = 0
    for row in metric_rows(folder):
        try:
            last = max(last, int(row.get("batch", 0)))
        except (ValueError, TypeError):
            continue
    return last
