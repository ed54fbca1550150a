"""Load a pretrained encoder for a task from an HF export folder or a Composer checkpoint; export one.

Works for both model families (``mosaic_bert`` and HF ``bert``): the Composer checkpoints written
by :class:`~efficient_bert.model.composer_mlm.ComposerMLM` carry the model's HF config, so the
checkpoint alone rebuilds the model. A task head that the checkpoint lacks (a classifier on top
of an MLM checkpoint) starts from the model's own initialisation.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModel, AutoModelForMaskedLM, AutoModelForSequenceClassification, PreTrainedModel
from transformers.models.auto.configuration_auto import CONFIG_MAPPING

from efficient_bert.model.auto_classes import register_auto_classes
from efficient_bert.model.layer_plan import depth_fields, truncated_to_depth

log = logging.getLogger(__name__)
register_auto_classes()  # the Auto classes below load our exports

TASKS = {"base": AutoModel, "masked_lm": AutoModelForMaskedLM, "sequence_classification": AutoModelForSequenceClassification}
_NOT_CONFIG = ("model_type", "transformers_version", "architectures")


def load_pretrained(path: str | Path, task: str = "masked_lm", **config_overrides: Any) -> PreTrainedModel:
    """The model at ``path`` (an HF folder or a Composer ``.pt``) with the head for ``task``.

    ``config_overrides`` (e.g. ``num_labels=3``) update the saved config before the model is built.
    """
    if task not in TASKS:
        raise ValueError(f"unknown task '{task}'; choose one of {', '.join(TASKS)}")
    path = Path(path)
    if path.is_dir():
        if not (path / "config.json").exists():
            raise FileNotFoundError(f"{path} has no config.json: not an HF export folder (expected the "
                                    f"folder written by save_pretrained or the hf_export callback)")
        # a classifier of another task (e.g. MNLI's 3 labels under RTE's 2) is replaced by a new one
        extra = {"ignore_mismatched_sizes": True} if task == "sequence_classification" else {}
        return TASKS[task].from_pretrained(str(path), **extra, **config_overrides)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}: give an HF export folder or a Composer .pt file")
    return _from_composer(path, task, config_overrides)


def _from_composer(path: Path, task: str, overrides: dict[str, Any]) -> PreTrainedModel:
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
        model_state = state["state"]["model"]
    except Exception as exc:
        raise ValueError(f"{path} is not a readable Composer checkpoint ({exc})") from exc
    weights = {}
    for key, value in model_state.items():
        for prefix in ("module.", "model."):  # DDP wrapper, then ComposerMLM's wrapped module
            key = key[len(prefix):] if key.startswith(prefix) else key
        weights[key] = value
    extra = weights.pop("_extra_state", None)
    if not isinstance(extra, dict) or "hf_config" not in extra:
        raise ValueError(f"{path} holds no model config (written by an older version?); load its HF export "
                         f"folder instead, or re-save it with this version")
    saved = dict(extra["hf_config"])
    if "trained_depth" in extra:  # saved mid layer-stacking: only the bottom layers are trained
        saved.update(depth_fields(saved, extra["trained_depth"]))
    model_type = saved["model_type"]
    config = CONFIG_MAPPING[model_type](**{k: v for k, v in saved.items() if k not in _NOT_CONFIG})
    for key, value in overrides.items():
        setattr(config, key, value)
    model = TASKS[task].from_config(config)
    if task == "base":
        prefix = model.base_model_prefix + "."
        weights = {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}
    missing, unexpected = model.load_state_dict(weights, strict=False)
    # BERT's pooler belongs to the classification head, not to what MLM pretraining trains
    encoder_missing = [k for k in missing if "pooler" not in k
                       and (task == "base" or k.startswith(model.base_model_prefix + "."))]
    if encoder_missing:
        raise ValueError(f"{path} does not match a {model_type} {task} model: missing "
                         f"{', '.join(encoder_missing[:5])}{' ...' if len(encoder_missing) > 5 else ''}")
    if missing:
        log.info("new %s head parameters (not in the checkpoint): %s", task, ", ".join(missing))
    if unexpected:
        log.info("%d checkpoint parameters not used by the %s model: %s%s", len(unexpected), task,
                 ", ".join(unexpected[:5]), " ..." if len(unexpected) > 5 else "")
    model.tie_weights()
    return model


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The ComposerModel inside DDP (Composer wraps it when world_size > 1)."""
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


def export_hf(composer_model: torch.nn.Module, folder: str | Path) -> Path:
    """``save_pretrained`` the wrapped HF module and tokenizer of a ComposerMLM into ``folder``."""
    wrapper = unwrap(composer_model)
    folder = Path(folder)
    with truncated_to_depth(wrapper.model, [wrapper.model.config]):  # mid layer-stacking: the trained layers
        wrapper.model.save_pretrained(str(folder))
    if getattr(wrapper, "tokenizer", None) is not None:
        wrapper.tokenizer.save_pretrained(str(folder))
    return folder
