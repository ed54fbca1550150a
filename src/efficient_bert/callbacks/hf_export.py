"""Write the trained model (and its tokenizer) in Hugging Face format at the end of training."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Optional

from composer.core import State
from composer.loggers import Logger
from composer.utils import dist

from efficient_bert.callbacks.outputs import WritesOutputs
from efficient_bert.files import replace_folder
from efficient_bert.model.checkpoint import export_hf

log = logging.getLogger(__name__)


class HFExport(WritesOutputs):
    """At the end of ``fit``, export an HF-format copy of the model to ``folder`` (rank 0).

    A fresh run checks the folder when training starts, so an existing export is never overwritten
    after hours of training: it must be empty unless ``overwrite`` is set. A resumed run replaces its
    own export when it ends. The export is written beside the folder and moved into place whole.
    """

    def __init__(self, folder: str, overwrite: bool = False):
        self.folder = Path(folder)
        self.overwrite = overwrite
        self.exported: Path | None = None

    def fit_start(self, state: State, logger: Logger) -> None:
        if int(state.timestamp.batch) == 0:
            self.check_outputs()

    def check_outputs(self) -> None:
        if self.folder.exists() and any(self.folder.iterdir()) and not self.overwrite:
            raise FileExistsError(f"HF export folder {self.folder} is not empty; choose another "
                                  "callbacks.hf_export.folder or set callbacks.hf_export.overwrite=true")

    def fit_end(self, state: State, logger: Logger) -> None:
        if dist.get_global_rank() == 0:
            partial = self.folder.with_name(f".{self.folder.name}.partial")
            shutil.rmtree(partial, ignore_errors=True)
            export_hf(state.model, partial)
            replace_folder(partial, self.folder)
            self.exported = self.folder
            log.info("HF export written to %s", self.exported)
        dist.barrier()
