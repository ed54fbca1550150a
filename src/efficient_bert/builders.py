"""The one place where configuration becomes objects.

Each configurable kind has a :class:`~efficient_bert.registry.Registry`. Later features add
entries here (a model, an algorithm, an optimizer, a callback); the entry script never changes.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import torch
from composer import Trainer
from composer.algorithms import GradientClipping
from composer.callbacks import LRMonitor, MemoryMonitor, RuntimeEstimator, SpeedMonitor
from composer.core import DataSpec
from composer.devices import DeviceCPU, DeviceGPU
from composer.optim import (ConstantScheduler, ConstantWithWarmupScheduler, CosineAnnealingWithWarmupScheduler,
                            LinearWithWarmupScheduler)
from composer.utils import dist, reproducibility

from efficient_bert.algorithms import (BatchSizeWarmup, LayerDrop, LayerStacking, RHOLoss, SelectiveBackprop,
                                       SophiaHessian)
from efficient_bert.calibrate import load_rst_factor
from efficient_bert.callbacks import (BudgetEarlyStop, BudgetEvalInterval, EvalHistory, HFExport, MetricsFile,
                                      NaNGuard, ReplicaCheck, TimeMarkerExport, TrainingBudget)
from efficient_bert.callbacks.console import ConsoleLog
from efficient_bert.callbacks.resume import RestoreRNGMidEpoch
from efficient_bert.callbacks.trained_counts import TrainedCounts
from efficient_bert.config import BudgetConfig, LoaderConfig, TrainConfig, to_container
from efficient_bert.data.dataloader import build_mlm_dataloader
from efficient_bert.data.text_dataset import StreamingTextDataset
from efficient_bert.data.tokenizer import load_tokenizer
from efficient_bert.model.hf_bert import CONFIG_KEYS as HF_BERT_KEYS
from efficient_bert.model.hf_bert import build_hf_bert
from efficient_bert.model.mosaic_bert import CONFIG_KEYS as MOSAIC_BERT_KEYS
from efficient_bert.model.mosaic_bert import build_mosaic_bert
from efficient_bert.optim import BudgetSchedule, Lamb, Lion, SophiaG, decoupled_adamw, param_groups
from efficient_bert.registry import ConfigError, Registry, nearest
from efficient_bert.run_files import EVAL_HISTORY_FILE, METRICS_FILE, RUN_FILE

log = logging.getLogger(__name__)

MODELS = Registry("model", context=("tokenizer", "max_seq_len"))
OPTIMIZERS = Registry("optimizer", context=("model",))
SCHEDULERS = Registry("scheduler")
ALGORITHMS = Registry("algorithm", context=("global_train_batch_size",))
CALLBACKS = Registry("callback", context=("save_folder",))
LOGGERS = Registry("logger", context=("run_name",))

# --- models ---------------------------------------------------------------------------------------
MODELS.register("hf_bert", build_hf_bert, extra_keys=HF_BERT_KEYS)
MODELS.register("mosaic_bert", build_mosaic_bert, extra_keys=MOSAIC_BERT_KEYS)


# --- optimizers -----------------------------------------------------------------------------------
@OPTIMIZERS.register("decoupled_adamw")
def decoupled_adamw_optimizer(model: torch.nn.Module, lr: float, betas: Sequence[float] = (0.9, 0.98),
                              eps: float = 1e-6, weight_decay: float = 1e-5) -> torch.optim.Optimizer:
    """AdamW with weight decay decoupled from the LR (Loshchilov & Hutter): Composer's DecoupledAdamW
    update on PyTorch's fused kernel."""
    return decoupled_adamw(param_groups(model, weight_decay), lr=lr, betas=betas, eps=eps)


@OPTIMIZERS.register("adamw")
def adamw(model: torch.nn.Module, lr: float, betas: Sequence[float] = (0.9, 0.999), eps: float = 1e-8,
          weight_decay: float = 0.01) -> torch.optim.Optimizer:
    """torch.optim.AdamW (decay scaled by the LR, as in PyTorch and HF)."""
    return torch.optim.AdamW(param_groups(model, weight_decay), lr=lr, betas=tuple(betas), eps=eps)


@OPTIMIZERS.register("lion")
def lion(model: torch.nn.Module, lr: float = 1e-4, betas: Sequence[float] = (0.9, 0.99),
         weight_decay: float = 0.1) -> torch.optim.Optimizer:
    """Lion (Chen et al. 2023); decay scaled by the LR as in the paper."""
    return Lion(param_groups(model, weight_decay), lr=lr, betas=betas)


@OPTIMIZERS.register("sophiag")
def sophiag(model: torch.nn.Module, lr: float = 1e-3, betas: Sequence[float] = (0.965, 0.99), rho: float = 0.04,
            weight_decay: float = 0.1, eps: float = 1e-12) -> torch.optim.Optimizer:
    """Sophia-G (Liu et al. 2023); needs the sophia_hessian algorithm for its Hessian estimate."""
    return SophiaG(param_groups(model, weight_decay), lr=lr, betas=betas, rho=rho, eps=eps)


@OPTIMIZERS.register("lamb")
def lamb(model: torch.nn.Module, lr: float = 1e-3, betas: Sequence[float] = (0.9, 0.999), eps: float = 1e-6,
         weight_decay: float = 0.01) -> torch.optim.Optimizer:
    """LAMB (You et al. 2020), the paper's Algorithm 2."""
    return Lamb(param_groups(model, weight_decay), lr=lr, betas=betas, eps=eps)


@OPTIMIZERS.register("adafactor")
def adafactor(model: torch.nn.Module, lr: float = 1e-2, beta2_decay: float = -0.8,
              eps: Sequence[Optional[float]] = (None, 1e-3), d: float = 1.0,
              weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """Adafactor (Shazeer & Stern 2018) as PyTorch implements it (``torch.optim.Adafactor``)."""
    return torch.optim.Adafactor(param_groups(model, weight_decay), lr=lr, beta2_decay=beta2_decay,
                                 eps=tuple(eps), d=d, foreach=True)


# --- schedulers (Composer's; t_warmup and friends take time strings: 0.06dur, 500ba) -----------
SCHEDULERS.register("constant", ConstantScheduler)
SCHEDULERS.register("constant_with_warmup", ConstantWithWarmupScheduler)
SCHEDULERS.register("linear_decay_with_warmup", LinearWithWarmupScheduler)
SCHEDULERS.register("cosine_decay_with_warmup", CosineAnnealingWithWarmupScheduler)
# progress = fraction of budget.hours used (of max_duration without a budget); warmup a fraction
SCHEDULERS.register("budget", BudgetSchedule)

# --- algorithms -----------------------------------------------------------------------------------
ALGORITHMS.register("gradient_clipping", GradientClipping)
# progressive stacking (Gong et al. 2019): depth doubles at budget fractions stack_at
ALGORITHMS.register("layer_stacking", LayerStacking)
# progressive layer dropping (Zhang & He 2020): keep probability decays to theta_bar
ALGORITHMS.register("layer_drop", LayerDrop)
# ModernBERT's batch-size warmup: the trained part of each batch grows from min_fraction over `warmup`
ALGORITHMS.register("batch_size_warmup", BatchSizeWarmup)

# Sophia-G's Gauss-Newton-Bartlett Hessian estimate every `every` steps (with optimizer.name: sophiag)
ALGORITHMS.register("sophia_hessian", SophiaHessian)


# Batch selection: the dataloader draws a pool of candidates (pool_size rows) and the algorithm
# keeps global_train_batch_size of them, so the trained batch is the one the run configures.
@ALGORITHMS.register("selective_backprop")
def selective_backprop(global_train_batch_size: int, beta: float = 1.0, pool_size: Optional[int] = None,
                       history: int = 5000, score_batch_size: Optional[int] = None) -> SelectiveBackprop:
    """Selective backprop (Jiang et al. 2019): P(select) = loss percentile ** beta; pool (beta+1)x."""
    return SelectiveBackprop(global_train_batch_size, beta, pool_size, history, score_batch_size)


@ALGORITHMS.register("rho_loss")
def rho_loss(global_train_batch_size: int, il_losses: str, mega_batch_size: int = 3072,
             score_batch_size: Optional[int] = None) -> RHOLoss:
    """RHO-loss (Mindermann et al. 2022): the top reducible losses of a mega-batch."""
    return RHOLoss(global_train_batch_size, il_losses, mega_batch_size, score_batch_size)

# --- callbacks ------------------------------------------------------------------------------------
CALLBACKS.register("speed_monitor", SpeedMonitor)
CALLBACKS.register("lr_monitor", LRMonitor)
CALLBACKS.register("memory_monitor", MemoryMonitor)
CALLBACKS.register("runtime_estimator", RuntimeEstimator)


def is_local(folder: Optional[str]) -> bool:
    """Whether ``folder`` is a local path (not unset, not an object-store URI such as s3://...)."""
    return folder is not None and "://" not in folder


@CALLBACKS.register("replica_check")
def replica_check(save_folder: Optional[str], interval: Optional[int] = None) -> ReplicaCheck:
    """Data-parallel replicas hold identical weights (at the end, and every ``interval`` batches);
    on by default in multi-process runs. Writes ``<save_folder>/replica_check.json``."""
    local = is_local(save_folder)
    return ReplicaCheck(interval, str(Path(save_folder) / "replica_check.json") if local else None)


@CALLBACKS.register("hf_export")
def hf_export(save_folder: Optional[str], folder: Optional[str] = None, overwrite: bool = False) -> HFExport:
    """HF-format export at the end of training; ``folder`` defaults to ``<save_folder>/hf``."""
    if folder is None:
        if save_folder is None:
            raise ConfigError("callbacks.hf_export needs a folder (or a save_folder to put it under)")
        folder = str(Path(save_folder) / "hf")
    return HFExport(folder, overwrite)


# --- loggers --------------------------------------------------------------------------------------
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


# --- assembly -------------------------------------------------------------------------------------
def build_components(registry: Registry, section: dict[str, Any], where: str, **context: Any) -> list[Any]:
    """Build every ``name: {options}`` entry of a YAML section, in order; ``name: null`` removes it
    (so a command-line override can switch off an entry the YAML enables)."""
    built = []
    for name, options in section.items():
        if options is None:
            continue
        try:
            built.append(registry.build(name, options, where=f"{where}.{name}", **context))
        except ConfigError:
            raise
        except (ValueError, FileNotFoundError) as exc:  # a component's own check of its options
            raise ConfigError(f"{where}.{name}: {exc}") from exc
    return built


def build_loader(cfg: LoaderConfig, tokenizer: Any, device_batch_size: int, seed: int, device: str,
                 evaluation: bool = False) -> DataSpec:
    """A loader from its section; an evaluation loader masks each sample the same way on every pass."""
    ds = cfg.dataset
    return build_mlm_dataloader(
        tokenizer, device_batch_size, local=ds.local, remote=ds.remote, split=ds.split, shuffle=ds.shuffle,
        shuffle_seed=seed if ds.shuffle_seed is None else ds.shuffle_seed, mlm_probability=ds.mlm_probability,
        mask_seed=seed if ds.mask_seed is None else ds.mask_seed, vary_masks_by_epoch=not evaluation,
        max_seq_len=ds.max_seq_len, num_workers=cfg.num_workers, drop_last=cfg.drop_last,
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


def build_budget_callbacks(cfg: BudgetConfig, save_folder: Optional[str]) -> tuple[Optional[TrainingBudget], list[Any]]:
    """The budget and the callbacks that read it (markers, early stop), from the ``budget`` section."""
    try:
        budget = None
        if cfg.hours is not None:
            factor = load_rst_factor(cfg.calibration) if cfg.calibration else None
            budget = TrainingBudget(cfg.hours, cfg.clock, factor, cfg.count_extra_forwards, cfg.count_compilation)
        elif cfg.finetune_time_markers or cfg.clock != "wall" or cfg.calibration:
            raise ConfigError("budget.finetune_time_markers, budget.clock and budget.calibration need budget.hours")
        callbacks: list[Any] = [budget] if budget else []
        if cfg.finetune_time_markers:
            if not is_local(save_folder):
                raise ConfigError("budget.finetune_time_markers writes under a local save_folder; set one")
            callbacks.append(TimeMarkerExport(budget, cfg.finetune_time_markers, str(Path(save_folder) / "time_markers")))
        if (cfg.early_stop_time is None) != (cfg.early_stop_eval_loss is None):
            raise ConfigError("budget.early_stop_time and budget.early_stop_eval_loss go together; set both or neither")
        if cfg.early_stop_time is not None:
            callbacks.append(BudgetEarlyStop(cfg.early_stop_time, cfg.early_stop_eval_loss, budget))
    except ConfigError:
        raise
    except (ValueError, FileNotFoundError) as exc:  # from the callbacks' own checks
        raise ConfigError(f"budget: {exc}") from exc
    return budget, callbacks


def build_eval_interval(cfg: TrainConfig, budget: Optional[TrainingBudget]) -> Any:
    b = cfg.budget
    if b.eval_every is None:
        return cfg.eval_interval
    try:
        return BudgetEvalInterval(b.eval_every, budget, b.eval_begin_proportion, b.eval_end_proportion,
                                  b.eval_every_begin, b.eval_every_end)
    except ValueError as exc:
        raise ConfigError(f"budget: {exc}") from exc


@dataclass
class Run:
    """What :func:`build_trainer` made, for the entry point and for tests."""

    trainer: Trainer
    eval_history: EvalHistory
    hf_export: Optional[HFExport]
    eval_at_start: bool = False
    datasets: tuple[StreamingTextDataset, ...] = ()

    def fit(self) -> None:
        rng = getattr(self.trainer, "_rng_state", None)  # a loaded checkpoint's, until Composer uses it
        if rng is not None and int(self.trainer.state.timestamp.batch_in_epoch) > 0:
            self.trainer.state.callbacks.append(RestoreRNGMidEpoch(rng))
            self.trainer._rng_state = None
        if self.eval_at_start and int(self.trainer.state.timestamp.batch) == 0:
            for callback in self.trainer.state.callbacks:  # their refusals come before the evaluation writes
                if hasattr(callback, "check_outputs"):
                    callback.check_outputs()
            self.trainer.eval()
        self.trainer.fit()

    def close(self) -> None:
        """Close the trainer (loggers, pending uploads), then free the datasets' shared memory."""
        self.trainer.close()
        for dataset in self.datasets:
            dataset.close()


def named(section: dict[str, Any], where: str, registry: Registry) -> tuple[str, dict[str, Any]]:
    """Split a ``{name: x, **options}`` section into the name and its options."""
    options = dict(section)
    if "name" not in options:
        raise ConfigError(f"{where}.name is required; available: {', '.join(registry.names())}")
    return options.pop("name"), options


def check_components(cfg: TrainConfig) -> None:
    """Check every component section's names and options before any data or model is built."""
    for registry, where, section in ((MODELS, "model", cfg.model), (OPTIMIZERS, "optimizer", cfg.optimizer),
                                     (SCHEDULERS, "scheduler", cfg.scheduler)):
        registry.check(*named(section, where, registry), where=where)
    for registry, where, section in ((ALGORITHMS, "algorithms", cfg.algorithms),
                                     (CALLBACKS, "callbacks", cfg.callbacks), (LOGGERS, "loggers", cfg.loggers)):
        for name, options in section.items():
            if options is not None:
                registry.check(name, options, where=f"{where}.{name}")


def resumes(cfg: TrainConfig) -> bool:
    """Whether the run continues from a checkpoint: ``load_path``, or ``autoresume`` with one to resume."""
    if cfg.load_path is not None:
        return True
    return cfg.autoresume and (not is_local(cfg.save_folder) or any(Path(cfg.save_folder).glob("latest-rank*.pt")))


def check_fresh_save_folder(cfg: TrainConfig) -> None:
    """A fresh run refuses, before it writes anything, a local ``save_folder`` that holds an earlier run's
    records or checkpoints (otherwise its first evaluation would already have replaced them)."""
    if not is_local(cfg.save_folder) or cfg.save_overwrite or resumes(cfg):
        return
    folder = Path(cfg.save_folder)
    held = [name for name in (METRICS_FILE, RUN_FILE, EVAL_HISTORY_FILE) if (folder / name).exists()]
    held += sorted(p.name for p in folder.glob("*.pt"))
    if held:
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


def build_trainer(cfg: TrainConfig) -> Run:
    check_components(cfg)
    check_fresh_save_folder(cfg)
    budget, callbacks = build_budget_callbacks(cfg.budget, cfg.save_folder)  # first: later callbacks read it
    device = cfg.device or ("gpu" if torch.cuda.is_available() else "cpu")
    precision = check_precision(cfg.precision, device)
    # The process group exists before the streaming datasets are built: otherwise each dataset opens
    # and closes a group of its own, which hung the second one with NCCL on a 2-GPU host.
    device_obj = DeviceGPU() if device == "gpu" else DeviceCPU()
    dist.initialize_dist(device_obj, timeout=cfg.dist_timeout)
    world_size = dist.get_world_size()
    parallelism = build_parallelism(cfg.fsdp, world_size, device)
    if cfg.global_train_batch_size % world_size:
        raise ConfigError(f"global_train_batch_size ({cfg.global_train_batch_size}) must be divisible by the "
                          f"number of processes ({world_size})")
    device_batch = cfg.global_train_batch_size // world_size

    algorithms = build_components(ALGORITHMS, cfg.algorithms, "algorithms",
                                  global_train_batch_size=cfg.global_train_batch_size)
    loader_batch = device_batch
    selectors = [a for a in algorithms if hasattr(a, "pool_size")]
    if len(selectors) > 1:
        raise ConfigError(f"use one batch-selection algorithm at a time, not {', '.join(map(repr, selectors))}")
    if selectors:  # the loader draws the candidate pool the algorithm selects from
        if selectors[0].pool_size % world_size:
            raise ConfigError(f"{selectors[0]!r}: the pool ({selectors[0].pool_size} rows) must be divisible by the "
                              f"number of processes ({world_size})")
        loader_batch = selectors[0].pool_size // world_size

    tokenizer = load_tokenizer(cfg.tokenizer.path)
    reproducibility.seed_all(cfg.seed)  # the model's initial weights depend on the run's seed only
    model = MODELS.build(*named(cfg.model, "model", MODELS), where="model", tokenizer=tokenizer,
                         max_seq_len=cfg.train_loader.dataset.max_seq_len)
    optimizer = OPTIMIZERS.build(*named(cfg.optimizer, "optimizer", OPTIMIZERS), where="optimizer", model=model)
    if isinstance(optimizer, SophiaG) != any(isinstance(a, SophiaHessian) for a in algorithms):
        raise ConfigError("optimizer.name: sophiag and algorithms.sophia_hessian go together (the algorithm updates "
                          "the optimizer's Hessian estimate): see yamls/methods/sophiag.yaml")
    scheduler = SCHEDULERS.build(*named(cfg.scheduler, "scheduler", SCHEDULERS), where="scheduler")

    # the monitors whose figures every report needs run unless the YAML names them (null switches one off)
    defaults = {"speed_monitor": {}, "lr_monitor": {}, **({"memory_monitor": {}} if device == "gpu" else {})}
    sections = {**{k: v for k, v in defaults.items() if k not in cfg.callbacks}, **cfg.callbacks}
    local_save = is_local(cfg.save_folder)
    # always on: the local record that `efficient-bert report` reads; without a local save_folder, a
    # new folder per run, so that running a YAML again keeps the earlier record (the HF export and the
    # replica check write there too)
    metrics_folder = (cfg.save_folder if local_save
                      else str(Path("runs") / cfg.run_name / time.strftime("%Y%m%d-%H%M%S")))
    callbacks += build_components(CALLBACKS, sections, "callbacks", save_folder=metrics_folder)
    loggers = build_components(LOGGERS, cfg.loggers, "loggers", run_name=cfg.run_name)
    loggers.append(MetricsFile(metrics_folder, cfg.save_overwrite))
    if cfg.log_to_console:  # ours instead of Composer's multi-line dump
        loggers.append(ConsoleLog(cfg.console_log_interval))
    history = EvalHistory(str(Path(cfg.save_folder) / EVAL_HISTORY_FILE) if local_save else None)
    callbacks += [history, NaNGuard(), TrainedCounts()]
    if world_size > 1 and not any(isinstance(c, ReplicaCheck) for c in callbacks):
        callbacks.append(replica_check(metrics_folder))  # one all-gather at the end: replicas must agree

    # the loaders last: a config error anywhere above leaves no dataset (and its shared memory) behind
    train_loader = build_loader(cfg.train_loader, tokenizer, loader_batch, cfg.seed, device)
    datasets = [train_loader.dataloader.dataset]
    try:
        eval_loader = None
        if cfg.eval_loader is not None:
            eval_loader = build_loader(cfg.eval_loader, tokenizer, cfg.device_eval_batch_size, cfg.seed, device,
                                       evaluation=True)
            datasets.append(eval_loader.dataloader.dataset)
        trainer = Trainer(
            run_name=cfg.run_name, model=model, train_dataloader=train_loader, eval_dataloader=eval_loader,
            optimizers=optimizer, schedulers=scheduler, step_schedulers_every_batch=True,
            max_duration=cfg.max_duration, eval_interval=build_eval_interval(cfg, budget),
            eval_subset_num_batches=cfg.eval_subset_num_batches, device=device_obj, precision=precision,
            parallelism_config=parallelism,
            device_train_microbatch_size=cfg.device_train_microbatch_size or device_batch, seed=cfg.seed,
            algorithms=algorithms, callbacks=callbacks, loggers=loggers,
            progress_bar=sys.stdout.isatty() if cfg.progress_bar is None else cfg.progress_bar, log_to_console=False,
            save_folder=cfg.save_folder, save_interval=cfg.save_interval,
            save_num_checkpoints_to_keep=cfg.save_num_checkpoints_to_keep, save_overwrite=cfg.save_overwrite,
            load_path=cfg.load_path, autoresume=cfg.autoresume, dist_timeout=cfg.dist_timeout,
        )
        for lg in trainer.logger.destinations:
            lg.log_hyperparameters(to_container(cfg))
    except BaseException:
        for dataset in datasets:
            dataset.close()
        raise
    exporter = next((c for c in callbacks if isinstance(c, HFExport)), None)
    return Run(trainer, history, exporter, cfg.eval_at_start and eval_loader is not None, tuple(datasets))
