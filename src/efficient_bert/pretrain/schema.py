"""The pretraining configuration: its schema, loaded from YAML files with ``key=value`` overrides.

The schema below is the single source of truth for which keys a run YAML may contain. Sections that
name a component (``model``, ``optimizer``, ``scheduler``, ``algorithms``, ``callbacks``, ``loggers``)
are free-form here and checked against the component's factory (:mod:`efficient_bert.pretrain.components`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence, Union

from omegaconf import OmegaConf

from efficient_bert import yaml_files
from efficient_bert.errors import ConfigError
from efficient_bert.pretrain.registry import is_time_string


@dataclass
class TokenizerConfig:
    # A local directory written by `efficient-bert train-tokenizer` (or any HF tokenizer saved with
    # save_pretrained). Never a hub name: nothing is downloaded at run time.
    path: str = "???"


@dataclass
class DatasetConfig:
    local: str = "???"  # MDS root written by convert_c4.py (or a local cache when `remote` is set)
    remote: Optional[str] = None  # s3://, gs://, oci://, ... mirrored into `local`
    split: str = "train"
    shuffle: bool = True
    shuffle_seed: Optional[int] = None  # defaults to the run's seed
    mlm_probability: float = 0.30
    mask_seed: Optional[int] = None  # masks hash (mask_seed, epoch, sample_id); default: the run's seed. An eval
    # loader ignores the epoch: the same masks at every evaluation
    max_seq_len: int = 128
    # several documents per row of max_seq_len tokens, attention within each (mosaic_bert only): batch
    # sizes then count documents, device_train_microbatch_size counts packed rows
    pack: bool = False
    predownload: Optional[int] = None
    cache_limit: Optional[str] = None
    num_canonical_nodes: Optional[int] = None


@dataclass
class LoaderConfig:
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    num_workers: int = 2
    drop_last: bool = True
    pin_memory: bool = True
    prefetch_factor: Optional[int] = 2
    persistent_workers: bool = True
    timeout: float = 0


@dataclass
class BudgetConfig:
    """A training budget in hours (efficient_bert.budget); every fraction is of the budget."""

    hours: Optional[float] = None  # unset: no budget; max_duration alone ends the run
    clock: str = "wall"  # wall | rst (needs `calibration`) | reference (needs `cost_table`)
    calibration: Optional[str] = None  # JSON written by `efficient-bert calibrate`
    cost_table: Optional[str] = None  # JSON written by `efficient-bert calibrate --cost-table`
    count_extra_forwards: bool = True  # selective backprop / RHO-loss / Sophia forwards count
    count_compilation: bool = False  # whether torch.compile's time inside steps counts (it depends on the cache)
    finetune_time_markers: list[float] = field(default_factory=list)  # HF exports, e.g. [0.5, 0.9]
    eval_every: Optional[float] = None  # evaluate every this fraction (replaces eval_interval)
    eval_begin_proportion: float = 0.0  # inside the first ... of the budget,
    eval_every_begin: Optional[float] = None  # ... evaluate this often
    eval_end_proportion: float = 0.0  # inside the last ... of the budget,
    eval_every_end: Optional[float] = None  # ... evaluate this often
    early_stop_time: Optional[float] = None  # at this fraction, stop if eval loss >
    early_stop_eval_loss: Optional[float] = None  # ... this


@dataclass
class TrainConfig:
    run_name: str = "efficient-bert"
    seed: int = 17
    # Free-form values for ${...} interpolation elsewhere in the file.
    variables: dict[str, Any] = field(default_factory=dict)

    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: dict[str, Any] = field(default_factory=lambda: {"name": "hf_bert"})
    train_loader: LoaderConfig = field(default_factory=LoaderConfig)
    eval_loader: Optional[LoaderConfig] = None

    optimizer: dict[str, Any] = field(default_factory=lambda: {"name": "decoupled_adamw", "lr": 5.0e-4})
    scheduler: dict[str, Any] = field(default_factory=lambda: {"name": "linear_decay_with_warmup",
                                                               "t_warmup": "0.06dur", "alpha_f": 0.02})
    algorithms: dict[str, Any] = field(default_factory=dict)
    callbacks: dict[str, Any] = field(default_factory=dict)
    loggers: dict[str, Any] = field(default_factory=dict)

    budget: BudgetConfig = field(default_factory=BudgetConfig)
    max_duration: str = "???"  # Composer time string: 1000ba, 2ep, 1000000tok, 0.5dur ... (with a budget: a cap)
    eval_interval: str = "1000ba"
    eval_at_start: bool = False  # one evaluation before the first step: the curve's starting point
    eval_subset_num_batches: int = -1
    global_train_batch_size: int = 256
    device_train_microbatch_size: Any = None  # int, or "auto" on GPU; defaults to the per-device batch
    device_eval_batch_size: int = 64
    precision: Optional[str] = None  # fp32 | amp_fp16 | amp_bf16 | ...; default: amp_bf16 on GPU, fp32 on CPU
    device: Optional[str] = None  # cpu | gpu; default: gpu when one is visible

    progress_bar: Optional[bool] = None  # default: when stdout is a terminal
    log_to_console: bool = True  # one line per console_log_interval and per evaluation
    console_log_interval: str = "100ba"
    # the training loss (its mean since the last log) and train metrics are logged every this many
    # batches: each log makes the host wait for the GPU (efficient_bert.pretrain.trainer)
    train_log_interval: str = "10ba"

    save_folder: Optional[str] = None  # Composer checkpoints (local path or object-store URI)
    save_interval: str = "1ep"
    save_num_checkpoints_to_keep: int = -1
    save_overwrite: bool = False  # Composer refuses to replace existing checkpoints unless this is set
    load_path: Optional[str] = None
    autoresume: bool = False
    dist_timeout: float = 300.0
    # Composer's FSDP options (composer.utils.FSDPConfig), e.g. {sharding_strategy: FULL_SHARD};
    # unset: DDP when several processes run
    fsdp: Optional[dict[str, Any]] = None


# Sections of the form {name: ..., **options}: the options belong to the named component.
NAMED_SECTIONS = ("model", "optimizer", "scheduler")


def load_config(path: Union[str, Path, Sequence[Union[str, Path]]], overrides: Sequence[str] = ()) -> TrainConfig:
    """A run's config from its YAML files and ``key=value`` overrides, validated (see
    :func:`efficient_bert.yaml_files.load_config`). Files merge in order: a base run and method files
    that add to it (``yamls/methods/*.yaml``); a ``model``, ``optimizer`` or ``scheduler`` section in a
    later file replaces the earlier one."""
    cfg = yaml_files.load_config(path, overrides, TrainConfig, NAMED_SECTIONS)
    check_time_strings(cfg, " + ".join(str(p) for p in ([path] if isinstance(path, (str, Path)) else path)),
                       overrides)
    return cfg


def user_settings(paths: Sequence[Union[str, Path]], overrides: Sequence[str] = ()) -> dict[str, Any]:
    """What the YAML files and overrides set, resolved, without the schema's defaults (after checking
    the whole config loads): a record of a run's choices that a new default elsewhere does not change."""
    load_config(list(paths), overrides)
    user = yaml_files.merge_user_layers([Path(p) for p in paths], overrides, NAMED_SECTIONS)
    return OmegaConf.to_container(user, resolve=True)


# TrainConfig fields that Composer reads as time strings
TIME_KEYS = ("max_duration", "eval_interval", "save_interval", "console_log_interval", "train_log_interval")


def check_time_strings(cfg: Any, source: str, overrides: Sequence[str] = ()) -> None:
    for key in TIME_KEYS:
        value = getattr(cfg, key, None)
        if value is not None and not is_time_string(str(value)):
            raise ConfigError(f"{yaml_files.origin(key, overrides, source)}: invalid value for {key}: {value!r} is not "
                              "a Composer time string (a number and a unit: 1000ba, 2ep, 128000sp, 1000000tok, 0.5dur)")
    if isinstance(cfg, TrainConfig) and train_log_batches(cfg) is None:
        raise ConfigError(f"{yaml_files.origin('train_log_interval', overrides, source)}: invalid value for "
                          f"train_log_interval: {cfg.train_log_interval!r} is not a number of batches (e.g. 10ba)")


def train_log_batches(cfg: TrainConfig) -> Optional[int]:
    """``train_log_interval`` as a number of batches (None if it is not one)."""
    from composer.core import Time, TimeUnit

    interval = Time.from_timestring(str(cfg.train_log_interval))
    return int(interval.value) if interval.unit == TimeUnit.BATCH and interval.value >= 1 else None


def to_container(cfg: TrainConfig) -> dict[str, Any]:
    """Plain-dict view of a config (for logging hyper-parameters)."""
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)
