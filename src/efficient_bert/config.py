"""The training configuration: its schema, loading from YAML with ``key=value`` overrides, validation.

The schema below is the single source of truth for which keys a run YAML may contain. Sections that
name a registered component (``model``, ``optimizer``, ``scheduler``, ``algorithms``, ``callbacks``,
``loggers``) are free-form here and checked against the component's factory by the builder layer.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence, Union, get_args, get_origin, get_type_hints

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from efficient_bert.registry import ConfigError, is_time_string, nearest


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
    # batches: each log makes the host wait for the GPU (efficient_bert.trainer)
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


def _section_type(tp: Any) -> Optional[type]:
    """The dataclass a field holds (unwrapping Optional), or None for free-form fields."""
    if dataclasses.is_dataclass(tp):
        return tp
    if get_origin(tp) is Union:
        inner = [a for a in get_args(tp) if a is not type(None)]
        if len(inner) == 1 and dataclasses.is_dataclass(inner[0]):
            return inner[0]
    return None


def check_keys(node: Any, schema: type, path: str = "") -> None:
    """Raise ConfigError for the first key in ``node`` that ``schema`` does not declare."""
    if not isinstance(node, (dict, DictConfig)):
        return
    hints = get_type_hints(schema)
    for key in node:
        if key not in hints:
            where = f"{path}.{key}" if path else str(key)
            raise ConfigError(f"unknown key '{where}'{nearest(str(key), hints)}; "
                              f"valid keys{' under ' + path if path else ''}: {', '.join(sorted(hints))}")
        sub = _section_type(hints[key])
        if sub is not None:
            check_keys(node[key], sub, f"{path}.{key}" if path else str(key))


# Sections of the form {name: ..., **options}: the options belong to the named component.
NAMED_SECTIONS = ("model", "optimizer", "scheduler")


def load_yaml(path: Union[str, Path]) -> DictConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        return OmegaConf.load(path)
    except Exception as exc:  # yaml's own errors carry line/column
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc


def merge_layers(base: DictConfig, layer: DictConfig, replaced: Sequence[str],
                 sections: Sequence[str] = NAMED_SECTIONS) -> DictConfig:
    """``layer`` on top of ``base``; the named sections in ``replaced`` are replaced, not merged
    (another optimizer's options do not apply to this one)."""
    for key in replaced:
        if key in sections and key in base:
            del base[key]
    return OmegaConf.merge(base, layer)


def merge_user_layers(paths: Sequence[Path], overrides: Sequence[str], replaced_sections: Sequence[str]) -> DictConfig:
    """The YAML files merged in order, then the ``key=value`` overrides (see :func:`load_config`)."""
    if not paths:
        raise ConfigError("no config file given")
    user = load_yaml(paths[0])
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise ConfigError(f"overrides must look like key=value, got: {' '.join(bad)}")
    try:
        for extra in paths[1:]:
            layer = load_yaml(extra)
            user = merge_layers(user, layer, list(layer.keys()) if isinstance(layer, DictConfig) else [],
                                replaced_sections)
        whole = [o.split("=", 1)[0].strip() for o in overrides]
        return merge_layers(user, OmegaConf.from_dotlist(list(overrides)), whole, replaced_sections)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"bad override: {exc}") from exc


def load_config(path: Union[str, Path, Sequence[Union[str, Path]]], overrides: Sequence[str] = (),
                schema: type = TrainConfig, replaced_sections: Sequence[str] = NAMED_SECTIONS) -> Any:
    """Load a run YAML, apply ``key=value`` overrides, validate keys and types, resolve ${...}.

    ``path`` may be several YAMLs, merged in order: a base run and method files that add to it
    (``yamls/methods/*.yaml``). A ``model``/``optimizer``/``scheduler`` section in a later file or
    a whole-section override (``scheduler={name: ...}``) replaces the earlier section; dotted keys
    (``scheduler.alpha_f=0.1``) edit it. ``schema`` is the dataclass the result must fit
    (fine-tuning has its own, :class:`efficient_bert.eval.finetune_config.FinetuneConfig`, whose replaced
    section is ``tasks``).
    """
    paths = [Path(p) for p in ([path] if isinstance(path, (str, Path)) else path)]
    user = merge_user_layers(paths, overrides, replaced_sections)
    source = " + ".join(str(p) for p in paths)
    check_keys(user, schema)
    try:
        base = OmegaConf.structured(schema)
        for key in NAMED_SECTIONS:
            if key in user and key in base:  # the user's section replaces the default one, whose options may not apply
                base[key] = {}
        merged = OmegaConf.merge(base, user)
        OmegaConf.resolve(merged)
        missing = sorted(OmegaConf.missing_keys(merged))
        if missing:
            raise ConfigError(f"{source}: required keys are not set: {', '.join(missing)}")
        cfg = OmegaConf.to_object(merged)
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None)
        message = str(exc.msg if hasattr(exc, "msg") else exc).splitlines()[0]  # omegaconf appends its own context
        raise ConfigError(f"{source}: invalid value{' for ' + key if key else ''}: {message}") from exc
    check_time_strings(cfg, source)
    return cfg


def user_settings(paths: Sequence[Union[str, Path]], overrides: Sequence[str] = ()) -> dict[str, Any]:
    """What the YAML files and overrides set, resolved, without the schema's defaults (after checking
    the whole config loads): a record of a run's choices that a new default elsewhere does not change."""
    load_config(list(paths), overrides)
    user = merge_user_layers([Path(p) for p in paths], overrides, NAMED_SECTIONS)
    return OmegaConf.to_container(user, resolve=True)


# TrainConfig fields that Composer reads as time strings
TIME_KEYS = ("max_duration", "eval_interval", "save_interval", "console_log_interval", "train_log_interval")


def check_time_strings(cfg: Any, source: str) -> None:
    for key in TIME_KEYS:
        value = getattr(cfg, key, None)
        if value is not None and not is_time_string(str(value)):
            raise ConfigError(f"{source}: invalid value for {key}: {value!r} is not a Composer time string "
                              "(a number and a unit: 1000ba, 2ep, 128000sp, 1000000tok, 0.5dur)")
    if isinstance(cfg, TrainConfig) and train_log_batches(cfg) is None:
        raise ConfigError(f"{source}: invalid value for train_log_interval: {cfg.train_log_interval!r} is not a "
                          "number of batches (e.g. 10ba)")


def train_log_batches(cfg: TrainConfig) -> Optional[int]:
    """``train_log_interval`` as a number of batches (None if it is not one)."""
    from composer.core import Time, TimeUnit

    interval = Time.from_timestring(str(cfg.train_log_interval))
    return int(interval.value) if interval.unit == TimeUnit.BATCH and interval.value >= 1 else None


def to_container(cfg: TrainConfig) -> dict[str, Any]:
    """Plain-dict view of a config (for logging hyper-parameters)."""
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)
