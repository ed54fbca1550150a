"""One (task, seed) fine-tuning job, as the suite plans it and ``finetune`` runs it (no heavy imports)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional

from efficient_bert.eval.tasks import Recipe

MODEL_DIR = "model"  # under a job's out_dir: the fine-tuned model, kept for tasks that start from it


@dataclass
class FinetuneJob:
    """One (task, seed) fine-tuning run; ``recipe`` defaults to the task's."""

    task: str
    seed: int
    checkpoint: str  # HF folder or Composer .pt (for start_from tasks: the source task's saved model)
    out_dir: str
    tokenizer: Optional[str] = None  # default: the checkpoint folder
    recipe: Optional[Recipe] = None
    model_overrides: dict[str, Any] = field(default_factory=dict)  # config keys, e.g. hidden_dropout_prob
    save_model: bool = False  # keep the fine-tuned model (a start_from source)
    device: Optional[str] = None
    precision: Optional[str] = None
    max_train_examples: Optional[int] = None
    max_eval_examples: Optional[int] = None
    progress_bar: bool = True
    progress_position: int = 0

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "FinetuneJob":
        data = dict(data)
        if data.get("recipe") is not None:
            data["recipe"] = Recipe(**{**data["recipe"], "seeds": tuple(data["recipe"]["seeds"])})
        return cls(**data)
