"""The checks a run's config passes before anything is built: component names and options, packing,
the save folder, the precision, the cost table. Each failure is one line naming the key and the fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from efficient_bert.checkpoint_folder import checkpoints
from efficient_bert.errors import ConfigError, nearest
from efficient_bert.pretrain.components import ALGORITHMS, CALLBACKS, LOGGERS, MODELS, OPTIMIZERS, SCHEDULERS
from efficient_bert.pretrain.registry import config_errors
from efficient_bert.pretrain.schema import TrainConfig
from efficient_bert.run_files import EVAL_HISTORY_FILE, METRICS_FILE, RUN_FILE, trained_batches


def is_local(folder: Optional[str]) -> bool:
    """Whether ``folder`` is a local path (not unset, not an object-store URI such as s3://...)."""
    return folder is not None and "://" not in folder


def check_components(cfg: TrainConfig) -> None:
    """Check every component section's names and options before any data or model is built."""
    for registry, where, section in ((MODELS, "model", cfg.model), (OPTIMIZERS, "optimizer", cfg.optimizer),
                                     (SCHEDULERS, "scheduler", cfg.scheduler)):
        registry.check(*registry.split(section, where), where=where)
    for registry, where, section in ((ALGORITHMS, "algorithms", cfg.algorithms),
                                     (CALLBACKS, "callbacks", cfg.callbacks), (LOGGERS, "loggers", cfg.loggers)):
        for name, options in section.items():
            if options is not None:
                registry.check(name, options, where=f"{where}.{name}")


def check_sizes_and_paths(cfg: TrainConfig) -> None:
    """Batch sizes that are rows, and a checkpoint to load that exists."""
    for key in ("global_train_batch_size", "device_eval_batch_size"):
        if getattr(cfg, key) < 1:
            raise ConfigError(f"{key} must be a positive number of rows, got {getattr(cfg, key)}")
    micro = cfg.device_train_microbatch_size
    if micro is not None and micro != "auto" and (not isinstance(micro, int) or micro < 1):
        raise ConfigError(f"device_train_microbatch_size must be a positive number of rows or auto, got {micro!r}")
    if cfg.load_path is not None and is_local(cfg.load_path) and not Path(cfg.load_path).exists():
        raise ConfigError(f"load_path: no checkpoint at {cfg.load_path}; give a Composer checkpoint (.pt) or a "
                          "sharded checkpoint's folder, or continue a run with autoresume=true")


def check_packing(cfg: TrainConfig) -> None:
    """Packed rows need a model that keeps attention within each document: ours, unpadded."""
    for where, loader in (("train_loader", cfg.train_loader), ("eval_loader", cfg.eval_loader)):
        if loader is not None and loader.dataset.pack and cfg.model.get("name") != "mosaic_bert":
            raise ConfigError(f"{where}.dataset.pack needs model.name: mosaic_bert, which attends within each "
                              f"document of a row; {cfg.model.get('name')} would attend across the whole row")


def resumes(cfg: TrainConfig) -> bool:
    """Whether the run continues from a checkpoint: ``load_path``, or ``autoresume`` with one to resume."""
    if cfg.load_path is not None:
        return True
    return cfg.autoresume and (not is_local(cfg.save_folder) or any(Path(cfg.save_folder).glob("latest-rank*.pt"))
                               or bool(checkpoints(Path(cfg.save_folder))))


def check_fresh_save_folder(cfg: TrainConfig) -> None:
    """A fresh run refuses, before it writes anything, a local ``save_folder`` that holds an earlier run's
    records or checkpoints (otherwise its first evaluation would already have replaced them). A run
    that trained nothing (it failed at its first step) does not count: its rerun takes the folder."""
    if not is_local(cfg.save_folder) or cfg.save_overwrite or resumes(cfg):
        return
    folder = Path(cfg.save_folder)
    checkpoints = sorted(p.name for p in folder.glob("*.pt"))
    if not checkpoints and trained_batches(folder) == 0:
        return
    held = [name for name in (METRICS_FILE, RUN_FILE, EVAL_HISTORY_FILE) if (folder / name).exists()] + checkpoints
    raise FileExistsError(f"save_folder {folder} already holds a run ({', '.join(held[:4])}"
                          f"{', ...' if len(held) > 4 else ''}): choose another save_folder, continue that run "
                          "with autoresume=true, or replace it with save_overwrite=true")


def check_precision(precision: Optional[str], device: str) -> str:
    """The run's precision: the given one if the device runs it, else a one-line error naming the fix."""
    from composer.core import Precision

    if precision is None:
        return "amp_bf16" if device == "gpu" else "fp32"
    names = [p.value for p in Precision]
    if precision not in names:
        raise ConfigError(f"precision '{precision}' is not one of {', '.join(names)}{nearest(precision, names)}")
    if device == "cpu" and precision != "fp32":
        raise ConfigError(f"precision {precision} needs a GPU and this run is on the CPU: set precision=fp32, or "
                          "leave precision unset (amp_bf16 on GPUs, fp32 on the CPU)")
    return precision


def check_cost_table(callbacks: list[Any], model: Any, optimizer: Any, cfg: TrainConfig) -> None:
    """A budget's cost table must price this model at this run's sequence length, and its optimizer."""
    from efficient_bert.budget import TrainingBudget

    budget = next((c for c in callbacks if isinstance(c, TrainingBudget)), None)
    if budget is not None and budget.cost_table is not None:
        with config_errors("budget.cost_table"):
            budget.cost_table.check_model(model, cfg.train_loader.dataset.max_seq_len)
            budget.cost_table.step_surcharge(type(optimizer).__name__)
