"""Downstream evaluation: GLUE and SuperGLUE fine-tuning of any pretrained checkpoint.

``tasks`` defines the tasks (data, metrics, recipe), ``readers`` reads their files, ``metrics``
scores predictions, ``finetune`` runs one (task, seed) job in Composer; ``finetune_config`` is the
suite's schema, ``scheduling`` plans and runs its jobs (in parallel across GPUs), ``summary`` takes
the medians and writes the report, and ``suite`` puts them together.
"""

from efficient_bert.eval.job import FinetuneJob
from efficient_bert.eval.readers import Example, TaskDataError
from efficient_bert.eval.finetune_config import FinetuneConfig, load_finetune_config
from efficient_bert.eval.suite import run_suite
from efficient_bert.eval.summary import summarize
from efficient_bert.eval.tasks import TASKS, DataSource, Recipe, Task


def __getattr__(name: str):
    # run_job needs torch and Composer: imported on first use, so that `finetune --help` answers at once
    if name == "run_job":
        from efficient_bert.eval.finetune import run_job

        return run_job
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["TASKS", "DataSource", "Example", "FinetuneConfig", "FinetuneJob", "Recipe", "Task", "TaskDataError",
           "load_finetune_config", "run_job", "run_suite", "summarize"]
