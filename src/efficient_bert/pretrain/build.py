"""A run's config becomes a Composer Trainer, in named steps in call order (:func:`build_trainer`).

The config is checked first (:mod:`.checks`); each component is built from the table of
:mod:`.components`, and a component's own error about one of its arguments becomes a one-line
message about the YAML key (:func:`~efficient_bert.pretrain.registry.config_errors`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import torch
from composer.core import DataSpec
from composer.devices import Device, DeviceCPU, DeviceGPU
from composer.utils import dist, reproducibility
from torch.utils.data import DataLoader

from efficient_bert.algorithms import SophiaHessian
from efficient_bert.algorithms.batch_selection import DrawsCandidatePool
from efficient_bert.budget import (BudgetEarlyStop, BudgetEvalInterval, EvalInterval, TimeMarkerExport,
                                   TrainingBudget, find_budget)
from efficient_bert.budget.calibrate import load_rst_factor
from efficient_bert.budget.cost_table import CostTable
from efficient_bert.callbacks import (CheckpointOnSignal, ConsoleLog, EvalHistory, HFExport, MetricsFile, NaNGuard,
                                      ReplicaCheck, TrainedCounts)
from efficient_bert.checkpoint_folder import checkpoints, recover_checkpoints
from efficient_bert.data.convert import conversion_info
from efficient_bert.data.dataloader import build_mlm_dataloader
from efficient_bert.data.tokenizer import load_tokenizer
from efficient_bert.errors import ConfigError, nearest
from efficient_bert.model_card import TrainingFacts
from efficient_bert.optim import SophiaG, param_groups
from efficient_bert.pretrain.checks import (check_components, check_cost_table, check_fresh_save_folder,
                                            check_packing, check_precision, check_sizes_and_paths, is_local)
from efficient_bert.pretrain.components import (ALGORITHMS, CALLBACKS, LOGGERS, MODELS, OPTIMIZERS, SCHEDULERS,
                                                replica_check)
from efficient_bert.pretrain.registry import Registry, config_errors
from efficient_bert.pretrain.run import Run, RunFinished, close_loaders
from efficient_bert.pretrain.schema import BudgetConfig, LoaderConfig, TrainConfig, to_container, train_log_batches
from efficient_bert.pretrain.trainer import Trainer
from efficient_bert.run_files import EVAL_HISTORY_FILE

log = logging.getLogger(__name__)


def build_components(registry: Registry, section: dict[str, Any], where: str, **context: Any) -> list[Any]:
    """Build every ``name: {options}`` entry of a YAML section, in order; ``name: null`` removes it
    (so a command-line override can switch off an entry the YAML enables)."""
    return [registry.build(name, options, where=f"{where}.{name}", **context)
            for name, options in section.items() if options is not None]


def build_named(registry: Registry, section: dict[str, Any], where: str, **context: Any) -> Any:
    """Build a ``{name: x, **options}`` section (``model``, ``optimizer``, ``scheduler``)."""
    return registry.build(*registry.split(section, where), where=where, **context)


def build_loader(cfg: LoaderConfig, tokenizer: Any, device_batch_size: int, seed: int, device: str,
                 evaluation: bool = False) -> DataSpec:
    """A loader from its section; an evaluation loader masks each sample the same way on every pass."""
    ds = cfg.dataset
    return build_mlm_dataloader(
        tokenizer, device_batch_size, local=ds.local, remote=ds.remote, split=ds.split, shuffle=ds.shuffle,
        shuffle_seed=seed if ds.shuffle_seed is None else ds.shuffle_seed, mlm_probability=ds.mlm_probability,
        mask_seed=seed if ds.mask_seed is None else ds.mask_seed, vary_masks_by_epoch=not evaluation,
        max_seq_len=ds.max_seq_len, pack=ds.pack, num_workers=cfg.num_workers, drop_last=cfg.drop_last,
        pin_memory=cfg.pin_memory and device == "gpu", prefetch_factor=cfg.prefetch_factor,
        persistent_workers=cfg.persistent_workers, timeout=cfg.timeout, predownload=ds.predownload,
        cache_limit=ds.cache_limit, num_canonical_nodes=ds.num_canonical_nodes)


def build_parallelism(fsdp: Optional[dict[str, Any]], world_size: int, device: str) -> Optional[dict[str, Any]]:
    """Composer's parallelism_config from the ``fsdp`` section (None: DDP).

    ``version: 1`` (the default, Composer's) is ``FSDPConfig`` and CUDA only; ``version: 2`` is
    ``FSDP2Config`` (``fully_shard``), which also runs on CPU processes with gloo. The version is
    decided here, so Composer's ``FSDP_VERSION`` environment variable has no effect.
    """
    if fsdp is None:
        return None
    from composer.utils import FSDP2Config, FSDPConfig

    options = dict(fsdp)
    version = options.pop("version", 1)
    if version not in (1, 2):
        raise ConfigError(f"fsdp.version must be 1 (FSDPConfig) or 2 (FSDP2Config), got {version!r}")
    config_class = FSDPConfig if version == 1 else FSDP2Config
    # device_mesh is a live object, not a YAML value: Composer builds the default 1-D mesh
    known = {f.name for f in dataclasses.fields(config_class) if not f.name.startswith("_")} - {"device_mesh"}
    for key in options:
        if key not in known:
            raise ConfigError(f"fsdp (version {version}): unknown option '{key}'{nearest(key, known)}; "
                              f"valid: {', '.join(sorted(known | {'version'}))}")
    if version == 1 and device != "gpu":
        raise ConfigError("fsdp version 1 runs on CUDA devices only; set fsdp.version: 2 (FSDP2) to shard on "
                          "CPU processes")
    if world_size == 1:
        log.warning("fsdp is set but only one process runs: FSDP shards nothing here")
    return {"fsdp": config_class(**options)}


def build_budget(cfg: BudgetConfig, save_folder: Optional[str]) -> list[Any]:
    """The budget and the callbacks that follow it (time markers, early stop), from ``budget``; they
    find the budget on the Trainer's state, so the budget comes first."""
    if cfg.hours is None and (cfg.finetune_time_markers or cfg.clock != "wall" or cfg.calibration or cfg.cost_table):
        raise ConfigError("budget.finetune_time_markers, budget.clock, budget.calibration and budget.cost_table "
                          "need budget.hours")
    if (cfg.early_stop_time is None) != (cfg.early_stop_eval_loss is None):
        raise ConfigError("budget.early_stop_time and budget.early_stop_eval_loss go together; set both or neither")
    if cfg.finetune_time_markers and not is_local(save_folder):
        raise ConfigError("budget.finetune_time_markers writes under a local save_folder; set one")
    callbacks: list[Any] = []
    with config_errors("budget"):
        if cfg.hours is not None:
            factor = load_rst_factor(cfg.calibration) if cfg.calibration else None
            with config_errors("budget.cost_table"):
                table = CostTable.load(cfg.cost_table) if cfg.cost_table else None
            callbacks.append(TrainingBudget(cfg.hours, cfg.clock, factor, cfg.count_extra_forwards,
                                            cfg.count_compilation, cost_table=table))
        if cfg.finetune_time_markers:
            callbacks.append(TimeMarkerExport(cfg.finetune_time_markers, str(Path(save_folder) / "time_markers")))
        if cfg.early_stop_time is not None:
            callbacks.append(BudgetEarlyStop(cfg.early_stop_time, cfg.early_stop_eval_loss))
    return callbacks


def build_eval_interval(cfg: TrainConfig) -> Any:
    """``eval_interval``, or a schedule in fractions of the budget when ``budget.eval_every`` is set."""
    b = cfg.budget
    if b.eval_every is None:
        return EvalInterval(cfg.eval_interval)
    with config_errors("budget"):
        return BudgetEvalInterval(b.eval_every, b.eval_begin_proportion, b.eval_end_proportion,
                                  b.eval_every_begin, b.eval_every_end)


def init_process_group(cfg: TrainConfig) -> tuple[Device, str, int]:
    """The device, its precision and the number of processes. The process group exists before the
    streaming datasets are built: otherwise each dataset opens and closes a group of its own, which
    hung the second one with NCCL on a 2-GPU host."""
    device = cfg.device or ("gpu" if torch.cuda.is_available() else "cpu")
    precision = check_precision(cfg.precision, device)
    device_obj = DeviceGPU() if device == "gpu" else DeviceCPU()
    dist.initialize_dist(device_obj, timeout=cfg.dist_timeout)
    world_size = dist.get_world_size()
    if cfg.global_train_batch_size % world_size:
        raise ConfigError(f"global_train_batch_size ({cfg.global_train_batch_size}) must be divisible by the "
                          f"number of processes ({world_size})")
    return device_obj, precision, world_size


def build_algorithms(cfg: TrainConfig, world_size: int) -> tuple[list[Any], int]:
    """The algorithms, and the rows per process the loader draws: the trained batch, or the candidate
    pool of a batch-selection algorithm (:class:`DrawsCandidatePool`)."""
    algorithms = build_components(ALGORITHMS, cfg.algorithms, "algorithms",
                                  train_batch_size=cfg.global_train_batch_size)
    selectors = [a for a in algorithms if isinstance(a, DrawsCandidatePool)]
    if len(selectors) > 1:
        raise ConfigError(f"use one batch-selection algorithm at a time, not {', '.join(map(repr, selectors))}")
    if selectors and cfg.train_loader.dataset.pack:
        raise ConfigError(f"{selectors[0]!r} selects rows by sample and cannot train packed rows: set "
                          "train_loader.dataset.pack: false")
    rows = selectors[0].pool_size if selectors else cfg.global_train_batch_size
    if rows % world_size:
        raise ConfigError(f"{selectors[0]!r}: the pool ({rows} rows) must be divisible by the number of processes "
                          f"({world_size})")
    return algorithms, rows // world_size


def build_model(cfg: TrainConfig, tokenizer: Any) -> Any:
    reproducibility.seed_all(cfg.seed)  # the model's initial weights depend on the run's seed only
    return build_named(MODELS, cfg.model, "model", tokenizer=tokenizer,
                       max_seq_len=cfg.train_loader.dataset.max_seq_len)


def build_optimization(cfg: TrainConfig, model: torch.nn.Module, algorithms: Sequence[Any]) -> tuple[Any, Any]:
    """The optimizer over :func:`~efficient_bert.optim.param_groups` (no decay on 1-D parameters) and the
    LR scheduler."""
    optimizer = build_named(OPTIMIZERS, cfg.optimizer, "optimizer", params=param_groups(model))
    if isinstance(optimizer, SophiaG) != any(isinstance(a, SophiaHessian) for a in algorithms):
        raise ConfigError("optimizer.name: sophiag and algorithms.sophia_hessian go together (the algorithm updates "
                          "the optimizer's Hessian estimate): see yamls/methods/sophiag.yaml")
    return optimizer, build_named(SCHEDULERS, cfg.scheduler, "scheduler")


def records_folder(cfg: TrainConfig) -> str:
    """Where the run's local record goes (metrics, eval history, HF export, replica check): the local
    save_folder, else a new folder per run, so that running a YAML again keeps the earlier record."""
    return cfg.save_folder if is_local(cfg.save_folder) else str(Path("runs") / cfg.run_name /
                                                                 time.strftime("%Y%m%d-%H%M%S"))


def build_callbacks(cfg: TrainConfig, device: Device, world_size: int,
                    records: str) -> tuple[list[Any], EvalHistory]:
    """The YAML's callbacks, the monitors every report needs unless the YAML names them (null switches
    one off), and the ones every run has: eval history, trained counts, a checkpoint on SIGTERM, and
    the replica check in multi-process runs."""
    defaults = {"speed_monitor": {}, "lr_monitor": {}, **({"memory_monitor": {}} if isinstance(device, DeviceGPU)
                                                           else {})}
    sections = {**{k: v for k, v in defaults.items() if k not in cfg.callbacks}, **cfg.callbacks}
    callbacks = build_components(CALLBACKS, sections, "callbacks", save_folder=records)
    history = EvalHistory(str(Path(cfg.save_folder) / EVAL_HISTORY_FILE) if is_local(cfg.save_folder) else None)
    callbacks += [history, TrainedCounts(), CheckpointOnSignal()]
    if world_size > 1 and not any(isinstance(c, ReplicaCheck) for c in callbacks):
        callbacks.append(replica_check(records))  # one all-gather at the end: replicas must agree
    return callbacks, history


def launch_command(argv: Sequence[str] = ()) -> str:
    """The command line that started this process, as a user would type it again."""
    argv = list(argv or sys.argv)
    program = Path(argv[0]).name
    if program.endswith(".py"):  # main.py, under Composer's launcher
        world = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))  # processes on this node: composer -n
        return shlex.join(["composer", *(["-n", str(world)] if world > 1 else []), program, *argv[1:]])
    return shlex.join([program, *argv[1:]])


def training_facts(config: dict[str, Any], command: str) -> TrainingFacts:
    """What a run's configuration (``to_container(cfg)``, as ``run.json`` holds it) says of the run, for
    its model card; ``command`` started it."""
    data = {}
    for name, loader in (("train", config.get("train_loader")), ("validation", config.get("eval_loader"))):
        dataset = (loader or {}).get("dataset") or {}
        if dataset.get("local") and is_local(dataset["local"]):
            info = conversion_info(Path(dataset["local"]) / dataset.get("split", name))
            if info is not None:
                data[name] = info
    train = (config.get("train_loader") or {}).get("dataset") or {}
    optimizer = config.get("optimizer") or {}
    return TrainingFacts(command=command, batch_size=config.get("global_train_batch_size"),
                         max_seq_len=train.get("max_seq_len"), mlm_probability=train.get("mlm_probability"),
                         optimizer=optimizer.get("name"), lr=optimizer.get("lr"), precision=config.get("precision"),
                         algorithms=sorted(config.get("algorithms") or {}), data=data)


def build_loggers(cfg: TrainConfig, records: str) -> list[Any]:
    """The YAML's loggers, the metrics file that ``efficient-bert report`` reads, and the console line
    (ours instead of Composer's multi-line dump)."""
    loggers = build_components(LOGGERS, cfg.loggers, "loggers", run_name=cfg.run_name)
    loggers.append(MetricsFile(records, cfg.save_overwrite))
    if cfg.log_to_console:
        loggers.append(ConsoleLog(cfg.console_log_interval))
    return loggers


def build_loaders(cfg: TrainConfig, tokenizer: Any, train_rows: int, device: str
                  ) -> tuple[DataSpec, Optional[DataSpec], list[DataLoader]]:
    """The train loader (``train_rows`` per process) and the eval loader, with their DataLoaders, whose
    datasets hold shared memory until closed: on an error here, the ones already built are closed."""
    loaders: list[DataLoader] = []
    try:
        with config_errors("train_loader"):
            train = build_loader(cfg.train_loader, tokenizer, train_rows, cfg.seed, device)
        loaders.append(train.dataloader)
        evaluation = None
        if cfg.eval_loader is not None:
            with config_errors("eval_loader"):
                evaluation = build_loader(cfg.eval_loader, tokenizer, cfg.device_eval_batch_size, cfg.seed, device,
                                          evaluation=True)
            loaders.append(evaluation.dataloader)
    except BaseException:
        close_loaders(loaders)
        raise
    return train, evaluation, loaders


def build_trainer(cfg: TrainConfig) -> Run:
    """Check the config, then build the run: process group, algorithms, model, optimizer and
    scheduler, callbacks, loggers, data (last: a config error above leaves no dataset behind), trainer."""
    check_components(cfg)
    check_sizes_and_paths(cfg)
    check_packing(cfg)
    check_fresh_save_folder(cfg)
    # the guard first: a step with a non-finite loss stops before any other callback exports its weights
    callbacks = [NaNGuard(), *build_budget(cfg.budget, cfg.save_folder)]
    device, precision, world_size = init_process_group(cfg)
    if cfg.autoresume and is_local(cfg.save_folder):
        resume_from_complete_checkpoint(cfg.save_folder)
    parallelism = build_parallelism(cfg.fsdp, world_size, device.name)
    algorithms, train_rows = build_algorithms(cfg, world_size)
    with config_errors("tokenizer.path"):
        tokenizer = load_tokenizer(cfg.tokenizer.path)
    model = build_model(cfg, tokenizer)
    optimizer, scheduler = build_optimization(cfg, model, algorithms)
    check_cost_table(callbacks, model, optimizer, cfg)
    records = records_folder(cfg)
    run_callbacks, history = build_callbacks(cfg, device, world_size, records)
    callbacks += run_callbacks
    for exporter in (c for c in callbacks if isinstance(c, (HFExport, TimeMarkerExport))):
        exporter.facts = training_facts(to_container(cfg), launch_command())  # for the model cards
    loggers = build_loggers(cfg, records)
    train_loader, eval_loader, loaders = build_loaders(cfg, tokenizer, train_rows, device.name)
    try:
        trainer = Trainer(
            run_name=cfg.run_name, model=model, train_dataloader=train_loader, eval_dataloader=eval_loader,
            optimizers=optimizer, schedulers=scheduler, step_schedulers_every_batch=True,
            max_duration=cfg.max_duration, eval_interval=build_eval_interval(cfg),
            eval_subset_num_batches=cfg.eval_subset_num_batches, device=device, precision=precision,
            parallelism_config=parallelism,
            device_train_microbatch_size=cfg.device_train_microbatch_size or train_rows_per_step(cfg, world_size),
            train_log_interval=train_log_batches(cfg), seed=cfg.seed, algorithms=algorithms, callbacks=callbacks,
            loggers=loggers,
            progress_bar=sys.stdout.isatty() if cfg.progress_bar is None else cfg.progress_bar, log_to_console=False,
            save_folder=cfg.save_folder, save_interval=cfg.save_interval,
            save_num_checkpoints_to_keep=cfg.save_num_checkpoints_to_keep, save_overwrite=cfg.save_overwrite,
            load_path=cfg.load_path, autoresume=cfg.autoresume, dist_timeout=cfg.dist_timeout,
        )
        # before anything is written: a resume refused here changes nothing
        check_not_finished(trainer, cfg)
        check_no_later_checkpoints(trainer, cfg)
        for destination in trainer.logger.destinations:
            destination.log_hyperparameters({**to_container(cfg), "command": launch_command()})
    except RuntimeError as exc:
        close_loaders(loaders)
        mismatch = next((line.strip() for line in str(exc).splitlines() if "size mismatch" in line), None)
        if mismatch is None:
            raise
        where = cfg.load_path or f"the last checkpoint in {cfg.save_folder}"
        raise ConfigError(f"load_path: {where} holds another model than this run builds ({mismatch.rstrip('.')}); "
                          "load it with the model section it was trained with, or start without it") from None
    except BaseException:
        close_loaders(loaders)
        raise
    exporter = next((c for c in callbacks if isinstance(c, HFExport)), None)
    return Run(trainer, history, exporter, cfg.eval_at_start and eval_loader is not None, tuple(loaders))


def check_not_finished(trainer: Trainer, cfg: TrainConfig) -> None:
    """A resumed run that has nothing left to train (max_duration reached, or its budget spent) stops here."""
    state = trainer.state
    batch = int(state.timestamp.batch)
    if batch == 0:
        return
    budget = find_budget(state)
    end = state.max_duration
    if end is not None and state.timestamp.get(end.unit) >= end.value:
        why = f"max_duration {cfg.max_duration}"
    elif budget is not None and budget.spent:
        why = f"its budget of {cfg.budget.hours} h"
    else:
        return
    trainer.close()
    run = f"the checkpoint {cfg.load_path}" if cfg.load_path else f"the run in {cfg.save_folder}"
    raise RunFinished(f"{run} already finished at batch {batch} ({why}): nothing to train; to train it further, "
                      "raise max_duration" + (" and budget.hours" if budget is not None else ""))


def check_no_later_checkpoints(trainer: Trainer, cfg: TrainConfig) -> None:
    """A run that starts below a checkpoint of its folder would write over it: refused, before Composer's
    own check at the start of fit, which comes after the run's records were written."""
    if cfg.save_overwrite or not is_local(cfg.save_folder):
        return
    batch = int(trainer.state.timestamp.batch)
    later = [path for _, b, path in checkpoints(Path(cfg.save_folder)) if b > batch]
    if later:
        trainer.close()
        raise FileExistsError(f"{later[0]} is a checkpoint of a later step than the one this run starts from "
                              f"(batch {batch}), and the run would write over it: continue from the latest with "
                              "autoresume=true and no load_path, save into another save_folder, or set "
                              "save_overwrite=true")


def resume_from_complete_checkpoint(save_folder: str) -> None:
    """Before autoresume reads the folder: a checkpoint that a kill or a full disk cut off is set aside,
    and the run continues from the last complete one (one process per node does it)."""
    if dist.get_local_rank() == 0:
        for line in recover_checkpoints(Path(save_folder)):
            log.warning("%s", line)
    dist.barrier()


def train_rows_per_step(cfg: TrainConfig, world_size: int) -> int:
    """Rows each process trains on per step (the default microbatch: no gradient accumulation)."""
    return cfg.global_train_batch_size // world_size
