"""The files every training run writes into its record folder (its local ``save_folder``), by name.

Here, apart from the callbacks that write them, so that readers (``efficient-bert report``) need not
import Composer.
"""

METRICS_FILE = "metrics.jsonl"  # one JSON line per logged batch (callbacks.metrics_file)
RUN_FILE = "run.json"  # the run's resolved configuration
EVAL_HISTORY_FILE = "eval_history.json"  # every evaluation's metrics (callbacks.eval_history)
