"""Write the trained model (and its tokenizer) in Hugging Face format at the end of training, with its
model card."""

from __future__ import annotations

import dataclasses
import logging
import shutil
from pathlib import Path
from typing import Optional

from composer.core import State
from composer.loggers import Logger
from composer.utils import dist

from efficient_bert import model_card
from efficient_bert.callbacks.eval_history import EvalHistory
from efficient_bert.callbacks.outputs import WritesOutputs
from efficient_bert.files import replace_folder
from efficient_bert.model.checkpoint import export_hf, unwrap
from efficient_bert.progress import find_budget

log = logging.getLogger(__name__)


class HFExport(WritesOutputs):
    """At the end of ``fit``, export an HF-format copy of the model to ``folder`` (rank 0).

    A fresh run checks the folder when training starts, so an existing export is never overwritten
    after hours of training: it must be empty unless ``overwrite`` is set. A resumed run replaces its
    own export when it ends. The export is written beside the folder and moved into place whole. Its
    ``README.md`` is a model card made from ``facts`` (what the run's configuration says) and what the
    run did: steps, tokens, its budget and its last evaluation.
    """

    def __init__(self, folder: str, overwrite: bool = False, facts: Optional[model_card.TrainingFacts] = None):
        self.folder = Path(folder)
        self.overwrite = overwrite
        self.facts = facts
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
            export_with_card(state, partial, self.facts)
            replace_folder(partial, self.folder)
            self.exported = self.folder
            log.info("HF export written to %s", self.exported)
        dist.barrier()


def export_with_card(state: State, folder: Path, facts: Optional[model_card.TrainingFacts]) -> None:
    """The run's model, tokenizer and model card, in HF format, into ``folder``."""
    export_hf(state.model, folder)
    wrapper = unwrap(state.model)
    model_card.write(folder, model_card.render(wrapper.model, getattr(wrapper, "tokenizer", None),
                                               run_facts(state, facts)))


def run_facts(state: State, facts: Optional[model_card.TrainingFacts]) -> model_card.TrainingFacts:
    """``facts`` completed with what the run did: its steps and tokens, its budget, its last evaluation."""
    ts = state.timestamp
    facts = dataclasses.replace(facts or model_card.TrainingFacts(command=""), steps=int(ts.batch),
                                tokens=int(ts.token), samples=int(ts.sample))
    budget = find_budget(state)
    if budget is not None:
        facts.budget = {"hours": budget.seconds / 3600, "clock": budget.clock, "charged_hours": budget.used_seconds / 3600}
    history = next((c for c in state.callbacks if isinstance(c, EvalHistory)), None)
    if history is not None and history.records:
        facts.take_evaluation(history.records[-1])
    return facts
