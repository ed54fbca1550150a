"""Fine-tune one pretrained checkpoint on one task with one seed, in Composer's Trainer, and score it.

    job = FinetuneJob(task="rte", seed=19, checkpoint="runs/demo-run/hf", out_dir="runs/glue/rte/seed-19")
    result = run_job(job, DataSource(glue_dir="data/glue"))

A job reads its task's train and evaluation splits, tokenizes them once, trains with the task's
recipe (DecoupledAdamW, linear warmup and decay) and evaluates every split at the end. Batches are
padded to their longest row, so short tasks do not pay for ``max_seq_len``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from composer import Callback, Logger, State, Trainer
from composer.core import Precision, get_precision_context
from composer.models import ComposerModel
from composer.optim import LinearWithWarmupScheduler
from composer.utils import reproducibility
from torch.utils.data import DataLoader

from efficient_bert.errors import FineTuningDiverged
from efficient_bert.eval.job import MODEL_DIR, FinetuneJob
from efficient_bert.eval.readers import Example, TaskDataError
from efficient_bert.eval.tasks import TASKS, DataSource, Predictions, Task
from efficient_bert.model.checkpoint import load_pretrained
from efficient_bert.optim import decoupled_adamw, param_groups



# --- data -----------------------------------------------------------------------------------------
def encode(examples: Sequence[Example], tokenizer: Any, max_seq_len: int) -> list[dict[str, Any]]:
    """Token ids per example (pairs as ``[CLS] a [SEP] b [SEP]``, the longer text truncated first)."""
    a = [e.text_a for e in examples]
    b = [e.text_b for e in examples] if examples and examples[0].text_b is not None else None
    enc = tokenizer(a, b, truncation="longest_first", max_length=max_seq_len, return_token_type_ids=True)
    return [{"input_ids": ids, "token_type_ids": types, "label": e.label}
            for ids, types, e in zip(enc["input_ids"], enc["token_type_ids"], examples)]


def grouped(rows: Sequence[Any], groups: Sequence[Optional[int]], by_group: bool) -> list[list[Any]]:
    """Dataset items: one row each, or all candidates of a group together (multiple choice), groups
    in order of first appearance."""
    if not by_group:
        return [[r] for r in rows]
    items: dict[Optional[int], list[Any]] = {}
    for row, group in zip(rows, groups):
        items.setdefault(group, []).append(row)
    return list(items.values())


class Collate:
    """Right-pads a batch of items to its longest row; ``group_index`` ties candidates to their item."""

    def __init__(self, pad_id: int, float_labels: bool):
        self.pad_id = pad_id
        self.float_labels = float_labels

    def __call__(self, items: list[list[dict[str, Any]]]) -> dict[str, torch.Tensor]:
        rows = [r for item in items for r in item]
        width = max(len(r["input_ids"]) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        types = torch.zeros((len(rows), width), dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            n = len(r["input_ids"])
            ids[i, :n], types[i, :n], mask[i, :n] = torch.tensor(r["input_ids"]), torch.tensor(r["token_type_ids"]), 1
        labels = torch.tensor([r["label"] for r in rows], dtype=torch.float if self.float_labels else torch.long)
        group_index = torch.tensor([g for g, item in enumerate(items) for _ in item])
        return {"input_ids": ids, "token_type_ids": types, "attention_mask": mask, "labels": labels,
                "group_index": group_index}


def loader(items: list[list[dict[str, Any]]], batch_size: int, pad_id: int, float_labels: bool, shuffle: bool,
           seed: int) -> DataLoader:
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(items, batch_size=batch_size, shuffle=shuffle, generator=generator,
                      collate_fn=Collate(pad_id, float_labels), num_workers=0)


# --- model ----------------------------------------------------------------------------------------
def group_choice_loss(scores: torch.Tensor, gold: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
    """Mean over groups of -log P(gold candidates), with P a softmax over each group's scores."""
    scores = scores.float()
    n = int(group.max()) + 1
    top = torch.full((n,), -math.inf, device=scores.device).scatter_reduce(0, group, scores, "amax")
    exp = torch.exp(scores - top[group])
    total = torch.zeros(n, device=scores.device).index_add(0, group, exp)
    right = torch.zeros(n, device=scores.device).index_add(0, group, exp * gold.float())
    return (torch.log(total) - torch.log(right)).mean()


class FinetuneModel(ComposerModel):
    """A sequence-classification module (ours or HF's) with the loss of its task kind."""

    def __init__(self, module: torch.nn.Module, kind: str):
        super().__init__()
        self.model = module
        self.kind = kind

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                          token_type_ids=batch["token_type_ids"]).logits

    def loss(self, logits: torch.Tensor, batch: dict[str, torch.Tensor], *args: Any, **kwargs: Any) -> torch.Tensor:
        labels = batch["labels"]
        if self.kind == "regression":
            return F.mse_loss(logits.float().squeeze(-1), labels)
        if self.kind == "multiple_choice":
            return group_choice_loss(logits.squeeze(-1), labels, batch["group_index"])
        return F.cross_entropy(logits.float(), labels)


class TaskProgress(Callback):
    """One tqdm bar per job (``position`` keeps parallel jobs on their own lines)."""

    def __init__(self, description: str, position: int = 0, enabled: bool = True):
        self.description, self.position, self.enabled = description, position, enabled
        self.bar = None

    def fit_start(self, state: State, logger: Logger) -> None:
        if self.enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=int(state.max_duration.value), desc=self.description, position=self.position,
                            leave=True, dynamic_ncols=True, unit="ba")

    def batch_end(self, state: State, logger: Logger) -> None:
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{float(state.loss):.4f}", refresh=False)

    def fit_end(self, state: State, logger: Logger) -> None:
        if self.bar is not None:
            self.bar.close()


class FirstNonFiniteLoss(Callback):
    """The first batch whose training loss was not finite (0: none), kept on the device so that no step
    waits for the GPU; it tells a checkpoint that fails at once from a fine-tuning that diverged later."""

    def __init__(self):
        self.first: Optional[torch.Tensor] = None
        self.count: Optional[torch.Tensor] = None  # the batch under way, counted on the device

    def fit_start(self, state: State, logger: Logger) -> None:
        self.first = state.device.tensor_to_device(torch.zeros((), dtype=torch.long))
        self.count = self.first.clone()

    def batch_start(self, state: State, logger: Logger) -> None:
        self.count.add_(1)

    def after_loss(self, state: State, logger: Logger) -> None:
        if torch.is_tensor(state.loss):
            finite = torch.isfinite(state.loss.detach()).all()
            self.first = torch.where((self.first == 0) & ~finite, self.count, self.first)

    @property
    def batch(self) -> int:
        return 0 if self.first is None else int(self.first)


@torch.no_grad()
def predict(trainer: Trainer, data: DataLoader) -> np.ndarray:
    model, state = trainer.state.model, trainer.state
    model.eval()
    outputs = []
    for batch in data:
        batch = state.device.batch_to_device(batch)
        with get_precision_context(state.precision):
            outputs.append(model(batch).float().cpu())
    return torch.cat(outputs).numpy()


# --- one job --------------------------------------------------------------------------------------
def load_task_model(job: FinetuneJob, task: Task) -> torch.nn.Module:
    overrides = dict(job.model_overrides)
    if task.kind == "regression":
        overrides["problem_type"] = "regression"
    from transformers.utils import logging as hf_logging

    level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()  # its load report lists the new head's weights, which are expected
    hf_logging.disable_progress_bar()  # a "Loading weights" bar per job, in every log
    try:
        return load_pretrained(job.checkpoint, "sequence_classification", num_labels=task.num_labels, **overrides)
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def load_job_tokenizer(job: FinetuneJob) -> Any:
    from efficient_bert.data.tokenizer import load_tokenizer

    path = job.tokenizer or job.checkpoint
    if not Path(path).is_dir():
        raise TaskDataError(f"no tokenizer for {job.checkpoint}: a Composer checkpoint carries none; set "
                            "tokenizer: to the tokenizer folder used in pretraining")
    return load_tokenizer(path)


def check_tokenizer(model: torch.nn.Module, tokenizer: Any, job: FinetuneJob) -> None:
    """The tokenizer must be the one the checkpoint was pretrained with, where the checkpoint names it,
    and never give ids past the model's embedding."""
    from efficient_bert.data.tokenizer import vocabulary_digest

    trained_with = getattr(model.config, "tokenizer_vocabulary", None)
    if trained_with is not None and trained_with != vocabulary_digest(tokenizer):
        raise TaskDataError(f"the tokenizer {job.tokenizer or job.checkpoint} is not the one {job.checkpoint} was "
                            f"pretrained with (vocabulary {vocabulary_digest(tokenizer)}, not {trained_with}): set "
                            "tokenizer: to the tokenizer folder used in pretraining")
    if len(tokenizer) > model.config.vocab_size:
        raise TaskDataError(f"the tokenizer {job.tokenizer or job.checkpoint} has {len(tokenizer)} ids and the model's "
                            f"embedding {model.config.vocab_size}: set tokenizer: to the tokenizer folder used in "
                            "pretraining")


def run_job(job: FinetuneJob, source: DataSource) -> dict[str, Any]:
    """Fine-tune, evaluate every split, write ``out_dir/result.json`` (and ``model/`` when kept)."""
    task = TASKS[job.task]
    recipe = job.recipe or task.recipe
    out = Path(job.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    train = source.read(task, "train")[:job.max_train_examples]
    evals = {s: source.read(task, s)[:job.max_eval_examples] for s in task.eval_splits}
    if task.kind == "multiple_choice":  # a query whose gold answer is not a candidate teaches nothing
        golds = {e.group for e in train if e.label == 1}
        train = [e for e in train if e.group in golds]
    tokenizer = load_job_tokenizer(job)
    by_group = task.kind == "multiple_choice"
    float_labels = task.kind != "classification"
    train_items = grouped(encode(train, tokenizer, recipe.max_seq_len), [e.group for e in train], by_group)
    if not train_items:
        raise TaskDataError(f"{task.name}: no training examples")

    reproducibility.seed_all(job.seed)  # the new head's initialisation depends on the seed
    module = load_task_model(job, task)
    check_tokenizer(module, tokenizer, job)
    model = FinetuneModel(module, task.kind)
    device = job.device or ("gpu" if torch.cuda.is_available() else "cpu")
    precision = job.precision or ("amp_bf16" if device == "gpu" else "fp32")
    batch_size = recipe.batch_size
    train_loader = loader(train_items, batch_size, tokenizer.pad_token_id, float_labels, True, job.seed)
    # in batches, not epochs: Composer counts a warmup of "0.06dur" in max_duration's unit, so with
    # "3ep" it would round down to no warmup at all
    steps = math.ceil(recipe.epochs * len(train_loader))
    watch = FirstNonFiniteLoss()
    trainer = Trainer(
        model=model, train_dataloader=train_loader,
        optimizers=decoupled_adamw(param_groups(model, recipe.weight_decay), lr=recipe.lr, betas=(0.9, 0.98), eps=1e-6),
        schedulers=LinearWithWarmupScheduler(t_warmup=f"{recipe.warmup}dur", alpha_f=0.0),
        step_schedulers_every_batch=True, max_duration=f"{steps}ba",
        device=device, precision=Precision(precision), seed=job.seed, progress_bar=False, log_to_console=False,
        callbacks=[TaskProgress(f"{task.name} seed {job.seed}", job.progress_position, job.progress_bar), watch],
        loggers=[], python_log_level=None)
    with warnings.catch_warnings():  # Composer warns that the short last batch cannot be split
        warnings.filterwarnings("ignore", message="Cannot split tensor")
        trainer.fit()

    metrics, majority, counts = {}, {}, {}
    try:
        for split, examples in evals.items():
            groups = [e.group for e in examples]
            items = grouped(encode(examples, tokenizer, recipe.max_seq_len), groups, by_group)
            in_order = [e for item in grouped(examples, groups, by_group) for e in item]  # as the loader yields them
            logits = predict(trainer, loader(items, batch_size * 2, tokenizer.pad_token_id, float_labels, False, 0))
            bad = int((~np.isfinite(logits)).any(axis=tuple(range(1, logits.ndim))).sum()) if logits.size else 0
            if bad:  # a NaN score would pass for a result and poison every average it enters
                when = (f"its training loss was first not finite at batch {watch.batch} of {steps}" if watch.batch
                        else "its training loss stayed finite")
                raise FineTuningDiverged(
                    f"{task.name} seed {job.seed}: {bad} of {len(logits)} predictions on {split} are not finite "
                    f"({when}): the fine-tuning diverged or the checkpoint holds non-finite weights; check the "
                    f"checkpoint, or lower the task's lr ({recipe.lr:g})")
            metrics[split] = task.score(Predictions(in_order, logits))
            majority[split] = task.majority_score(train, examples)
            counts[split] = len(examples)
        if job.save_model:
            model.model.save_pretrained(str(out / MODEL_DIR))
            tokenizer.save_pretrained(str(out / MODEL_DIR))
    finally:
        trainer.close()
    result = {"task": task.name, "benchmark": task.benchmark, "seed": job.seed, "metrics": metrics,
              "majority_class": majority, "train_examples": len(train), "eval_examples": counts,
              "checkpoint": job.checkpoint, "recipe": dataclasses.asdict(recipe), "device": device,
              "precision": precision, "seconds": round(time.time() - started, 1)}
    (out / "result.json").write_text(json.dumps(result, indent=2))
    return result


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m efficient_bert.eval.finetune JOB.json SOURCE.json``: one job in its own process
    (how the suite runs tasks in parallel, one per GPU)."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("job")
    parser.add_argument("source")
    args = parser.parse_args(argv)
    job = FinetuneJob.from_json(json.loads(Path(args.job).read_text()))
    source = DataSource(**json.loads(Path(args.source).read_text()))
    try:
        run_job(job, source)
    except (TaskDataError, ValueError, FileNotFoundError) as exc:  # the suite shows this line as the job's error
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    from efficient_bert.process import exit_process

    exit_process(main())  # the job closed its trainer and wrote its result: skip the interpreter's teardown
