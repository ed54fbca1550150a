"""Composer's experiment loggers by name, with the run's name filled in."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from efficient_bert.registries import LOGGERS


@LOGGERS.register("wandb")
def wandb_logger(run_name: str, project: Optional[str] = None, entity: Optional[str] = None,
                 group: Optional[str] = None, tags: Optional[list[str]] = None, mode: Optional[str] = None,
                 dir: Optional[str] = None, log_artifacts: bool = False):
    """Weights & Biases; ``mode: offline`` (or WANDB_MODE=offline) logs locally with no network."""
    from composer.loggers import WandBLogger

    init_kwargs = {k: v for k, v in {"mode": mode, "dir": dir}.items() if v is not None}
    return WandBLogger(project=project, entity=entity, group=group, tags=list(tags) if tags else None,
                       name=run_name, log_artifacts=log_artifacts, init_kwargs=init_kwargs or None)


@LOGGERS.register("tensorboard")
def tensorboard_logger(run_name: str, log_dir: Optional[str] = None, flush_interval: int = 100):
    """TensorBoard event files (default ``runs/<run_name>/tensorboard``)."""
    from composer.loggers import TensorboardLogger

    return TensorboardLogger(log_dir=log_dir or str(Path("runs") / run_name / "tensorboard"),
                             flush_interval=flush_interval)
