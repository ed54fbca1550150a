"""Write the trained model (and its tokenizer) in Hugging Face format at the end of training."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from composer.core import Callback, State
from composer.loggers import Logger
from composer.utils import dist

from efficient_bert.model.layer_plan import truncated_to_depth

log = logging.getLogger(__name__)


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


class HFExport(Callback):
    """At the end of ``fit``, export an HF-format copy of the model to ``folder`` (rank 0).

    The folder is checked when training starts, so an existing export is never overwritten after
    hours of training: it must be empty unless ``overwrite`` is set.
    """

    def __init__(self, folder: str, overwrite: bool = False):
        self.folder = Path(folder)
        self.overwrite = overwrite
        self.exported: Path | None = None

    def fit_start(self, state: State, logger: Logger) -> None:
        self.check_outputs()

    def check_outputs(self) -> None:
        if self.folder.exists() and any(self.folder.iterdir()) and not self.overwrite:
            raise FileExistsError(f"HF export folder {self.folder} is not empty; choose another "
                                  "callbacks.hf_export.folder or set callbacks.hf_export.overwrite=true")

    def fit_end(self, state: State, logger: Logger) -> None:
        if dist.get_global_rank() == 0:
            self.exported = export_hf(state.model, self.folder)
            log.info("HF export written to %s", self.exported)
        dist.barrier()
