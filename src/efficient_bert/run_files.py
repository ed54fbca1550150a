"""What a run writes into its record folder (its local ``save_folder``), by name: its files, and the
budget's metrics among the rows of ``metrics.jsonl``.

Here, apart from the callbacks that write them, so that readers (``efficient-bert report``) need not
import Composer.
"""

METRICS_FILE = "metrics.jsonl"  # one JSON line per logged batch (callbacks.metrics_file)
RUN_FILE = "run.json"  # the run's resolved configuration
EVAL_HISTORY_FILE = "eval_history.json"  # every evaluation's metrics (callbacks.eval_history)

# what efficient_bert.budget.TrainingBudget logs after every step
BUDGET_FRACTION = "budget/fraction"  # of the budget used
BUDGET_WALL_HOURS = "budget/wall_hours"  # training time on this machine
BUDGET_RST_HOURS = "budget/rst_hours"  # in reference-system time
BUDGET_REFERENCE_HOURS = "budget/reference_hours"  # charged by the reference clock (only with one)
BUDGET_COMPILE_SECONDS = "budget/compile_seconds"  # torch.compile time the budget left out
