"""The fine-tuning suite's configuration: its schema (``yamls/finetune/*.yaml``), loading with overrides,
and each task's recipe and data source."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, Optional, Sequence

from efficient_bert.errors import ConfigError, nearest
from efficient_bert.eval.tasks import TASKS, DataSource, Recipe
from efficient_bert.yaml_files import check_keys, load_config


DEFAULT = "default"


@dataclass
class TaskOptions:
    """Per-task changes to the recipe (``tasks: {rte: {lr: 2e-5}}``); unset keys keep the recipe's."""

    epochs: Optional[float] = None
    lr: Optional[float] = None
    weight_decay: Optional[float] = None
    batch_size: Optional[int] = None
    max_seq_len: Optional[int] = None
    seeds: Optional[list[int]] = None
    warmup: Optional[float] = None
    start_from: Optional[str] = DEFAULT  # the recipe's; null: the pretrained checkpoint itself
    files: dict[str, str] = field(default_factory=dict)  # split -> file name, e.g. {dev: test.tsv}


@dataclass
class FinetuneConfig:
    run_name: str = "finetune"
    variables: dict[str, Any] = field(default_factory=dict)
    checkpoint: str = "???"  # HF export folder (ours or an HF BERT) or a Composer .pt checkpoint
    tokenizer: Optional[str] = None  # default: the checkpoint folder; required for a Composer .pt
    results_dir: str = "???"
    glue_dir: Optional[str] = None  # <glue_dir>/CoLA/train.tsv ... (the official layout)
    superglue_dir: Optional[str] = None  # <superglue_dir>/BoolQ/train.jsonl ...
    hf_cache: bool = False  # read tasks missing locally from the HF datasets cache (offline)
    skip_bad_rows: bool = False
    tasks: dict[str, Any] = field(default_factory=dict)  # task name -> TaskOptions ({} = the recipe)
    seeds: Optional[list[int]] = None  # replaces every task's seeds
    model: dict[str, Any] = field(default_factory=dict)  # model config changes, e.g. hidden_dropout_prob
    device: Optional[str] = None
    precision: Optional[str] = None
    parallel: Optional[bool] = None  # default: in parallel when several GPUs are visible
    gpus: Optional[list[int]] = None  # default: every visible GPU
    jobs_per_gpu: int = 1  # fine-tuning jobs sharing each GPU at once (a small-batch job leaves it mostly idle)
    max_train_examples: Optional[int] = None  # caps for quick pipeline checks
    max_eval_examples: Optional[int] = None
    average_excludes: list[str] = field(default_factory=lambda: ["wnli"])  # as in BERT
    resume: bool = False  # keep the results of jobs already finished in results_dir
    overwrite: bool = False
    progress_bar: Optional[bool] = None  # default: when stderr is a terminal (a bar per job floods a log file)


def load_finetune_config(paths: Sequence[str], overrides: Sequence[str] = ()) -> FinetuneConfig:
    # a later YAML's or a whole `tasks={...}` override's task list replaces the earlier one;
    # `tasks.rte.lr=...` edits it
    cfg = load_config(list(paths), overrides, schema=FinetuneConfig, replaced_sections=("tasks",))
    if not cfg.tasks:
        raise ConfigError("tasks: is empty; list the tasks to run, e.g. tasks: {rte: {}, mrpc: {}}")
    for name, options in cfg.tasks.items():
        if name not in TASKS:
            raise ConfigError(f"unknown task '{name}'{nearest(name, TASKS)}; available: {', '.join(TASKS)}")
        check_keys(options or {}, TaskOptions, f"tasks.{name}")
        cfg.tasks[name] = TaskOptions(**(options or {}))
        start = cfg.tasks[name].start_from
        if start not in (None, DEFAULT) and start not in TASKS:
            raise ConfigError(f"tasks.{name}.start_from: unknown task '{start}'")
    for name in cfg.average_excludes:
        if name not in TASKS:
            raise ConfigError(f"average_excludes: unknown task '{name}'{nearest(name, TASKS)}")
    return cfg


def recipe_for(cfg: FinetuneConfig, name: str) -> Recipe:
    options, recipe = cfg.tasks[name], TASKS[name].recipe
    changes = {k: v for k, v in asdict(options).items()
               if k in Recipe.__dataclass_fields__ and k != "start_from" and v is not None}
    if cfg.seeds is not None:
        changes["seeds"] = cfg.seeds
    if "seeds" in changes:
        changes["seeds"] = tuple(changes["seeds"])
    if options.start_from != DEFAULT:
        changes["start_from"] = options.start_from
    return replace(recipe, **changes)


def source_of(cfg: FinetuneConfig) -> DataSource:
    return DataSource(cfg.glue_dir, cfg.superglue_dir, cfg.hf_cache, cfg.skip_bad_rows,
                      {n: dict(o.files) for n, o in cfg.tasks.items() if o.files})
