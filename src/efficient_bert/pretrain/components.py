"""Every name a run YAML can give a component, and the factory it builds: one table per section.

The library's components know nothing of this table; it imports them (and Composer's own), so a
plain Composer script that imports an algorithm loads none of the YAML layer. ``context`` names what
the builder supplies rather than the YAML: the parameter groups for an optimizer, the trained batch
size for an algorithm, and so on (:class:`~efficient_bert.pretrain.registry.Registry`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
from composer.algorithms import GradientClipping
from composer.callbacks import LRMonitor, MemoryMonitor, RuntimeEstimator
from composer.optim import (ConstantScheduler, ConstantWithWarmupScheduler, CosineAnnealingWithWarmupScheduler,
                            LinearWithWarmupScheduler)

from efficient_bert.algorithms import (BatchSizeWarmup, LayerDrop, LayerStacking, RHOLoss, SelectiveBackprop,
                                       SophiaHessian)
from efficient_bert.budget import BudgetSchedule
from efficient_bert.callbacks import HFExport, ReplicaCheck, SpeedMonitor
from efficient_bert.model import hf_bert
from efficient_bert.model.modernbert import factory as modernbert
from efficient_bert.model.mosaic_bert import factory as mosaic_bert
from efficient_bert.optim import Adafactor, Lamb, Lion, SophiaG, decoupled_adamw
from efficient_bert.pretrain.registry import Registry

MODELS = Registry("model", context=("tokenizer", "max_seq_len"))
OPTIMIZERS = Registry("optimizer", context=("params",))  # params: efficient_bert.optim.param_groups(model)
SCHEDULERS = Registry("scheduler")
ALGORITHMS = Registry("algorithm", context=("train_batch_size",))  # the global batch a step trains on
CALLBACKS = Registry("callback", context=("save_folder",))  # the run's local record folder
LOGGERS = Registry("logger", context=("run_name",))


def hf_export(save_folder: str, folder: Optional[str] = None, overwrite: bool = False) -> HFExport:
    """The export as a run's callback; ``folder`` defaults to ``<save_folder>/hf``."""
    return HFExport(folder or str(Path(save_folder) / "hf"), overwrite)


def replica_check(save_folder: str, interval: Optional[int] = None) -> ReplicaCheck:
    """The check as a run's callback, writing ``<save_folder>/replica_check.json``; on by default in
    multi-process runs."""
    return ReplicaCheck(interval, str(Path(save_folder) / "replica_check.json"))


def wandb_logger(run_name: str, project: Optional[str] = None, entity: Optional[str] = None,
                 group: Optional[str] = None, tags: Optional[list[str]] = None, mode: Optional[str] = None,
                 dir: Optional[str] = None, log_artifacts: bool = False):
    """Weights & Biases; ``mode: offline`` (or WANDB_MODE=offline) logs locally with no network."""
    from composer.loggers import WandBLogger

    init_kwargs = {k: v for k, v in {"mode": mode, "dir": dir}.items() if v is not None}
    return WandBLogger(project=project, entity=entity, group=group, tags=list(tags) if tags else None,
                       name=run_name, log_artifacts=log_artifacts, init_kwargs=init_kwargs or None)


def tensorboard_logger(run_name: str, log_dir: Optional[str] = None, flush_interval: int = 100):
    """TensorBoard event files (default ``runs/<run_name>/tensorboard``)."""
    from composer.loggers import TensorboardLogger

    return TensorboardLogger(log_dir=log_dir or str(Path("runs") / run_name / "tensorboard"),
                             flush_interval=flush_interval)


MODELS.register("mosaic_bert", mosaic_bert.build_mosaic_bert, extra_keys=mosaic_bert.CONFIG_KEYS)
MODELS.register("hf_bert", hf_bert.build_hf_bert, extra_keys=hf_bert.CONFIG_KEYS)
MODELS.register("modernbert", modernbert.build_modernbert, extra_keys=modernbert.CONFIG_KEYS)
MODELS.register("hf_modernbert", modernbert.build_hf_modernbert, extra_keys=modernbert.CONFIG_KEYS)

OPTIMIZERS.register("decoupled_adamw", decoupled_adamw)
OPTIMIZERS.register("adamw", torch.optim.AdamW)  # PyTorch's own, whose decay is scaled by the LR
OPTIMIZERS.register("lion", Lion)
OPTIMIZERS.register("sophiag", SophiaG)
OPTIMIZERS.register("lamb", Lamb)
OPTIMIZERS.register("adafactor", Adafactor)

SCHEDULERS.register("budget", BudgetSchedule)
SCHEDULERS.register("constant", ConstantScheduler)  # Composer's, their times Composer time strings
SCHEDULERS.register("constant_with_warmup", ConstantWithWarmupScheduler)
SCHEDULERS.register("linear_decay_with_warmup", LinearWithWarmupScheduler)
SCHEDULERS.register("cosine_decay_with_warmup", CosineAnnealingWithWarmupScheduler)

ALGORITHMS.register("layer_stacking", LayerStacking)
ALGORITHMS.register("layer_drop", LayerDrop)
ALGORITHMS.register("selective_backprop", SelectiveBackprop)
ALGORITHMS.register("rho_loss", RHOLoss)
ALGORITHMS.register("sophia_hessian", SophiaHessian)
ALGORITHMS.register("batch_size_warmup", BatchSizeWarmup)
ALGORITHMS.register("gradient_clipping", GradientClipping)  # Composer's

CALLBACKS.register("hf_export", hf_export)
CALLBACKS.register("replica_check", replica_check)
CALLBACKS.register("speed_monitor", SpeedMonitor)
CALLBACKS.register("lr_monitor", LRMonitor)  # Composer's
CALLBACKS.register("memory_monitor", MemoryMonitor)
CALLBACKS.register("runtime_estimator", RuntimeEstimator)

LOGGERS.register("wandb", wandb_logger)
LOGGERS.register("tensorboard", tensorboard_logger)
