"""Downstream evaluation: GLUE and SuperGLUE fine-tuning of any pretrained checkpoint.

``tasks`` defines the tasks (data, metrics, recipe), ``readers`` reads their files, ``metrics``
scores predictions, ``finetune`` runs one (task, seed) job in Composer, and ``suite`` runs many,
in parallel across GPUs, and reports the medians.
"""

from efficient_bert.eval.finetune import FinetuneJob, run_job
from efficient_bert.eval.readers import Example, TaskDataError
from efficient_bert.eval.suite import FinetuneConfig, load_finetune_config, run_suite, summarize
from efficient_bert.eval.tasks import TASKS, DataSource, Recipe, Task

__all__ = ["TASKS", "DataSource", "Example", "FinetuneConfig", "FinetuneJob", "Recipe", "Task", "TaskDataError",
           "load_finetune_config", "run_job", "run_suite", "summarize"]
