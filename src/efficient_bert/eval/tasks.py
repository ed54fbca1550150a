"""The GLUE and SuperGLUE tasks: where their data lives, how to read it, how to score it, and the
fine-tuning recipe for each.

GLUE recipes are Mosaic BERT's (mosaicml/examples, ``bert/src/glue/finetuning_jobs.py``): DecoupledAdamW
(betas 0.9/0.98, eps 1e-6), linear decay with 6% warmup to 0, sequence length 256, and the per-task
epochs, LR, weight decay, batch size and seeds below; RTE, MRPC and STS-B start from the
MNLI-fine-tuned model. WNLI is not in Mosaic's recipe: it gets RTE's settings and, as in BERT,
stays out of the GLUE average. SuperGLUE recipes are ours (no Mosaic reference): BERT-style
settings with more epochs for the small tasks, SuperGLUE RTE and CB from MNLI.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np

from efficient_bert.eval import metrics as M
from efficient_bert.eval.readers import (Column, Example, TaskDataError, field as get, label_index,
                                         multirc_examples, read_hf_split, read_superglue, read_tsv, record_examples,
                                         record_jsonl_examples)


@dataclass(frozen=True)
class Recipe:
    epochs: float
    lr: float
    weight_decay: float
    batch_size: int
    max_seq_len: int = 256
    seeds: tuple[int, ...] = (19,)
    start_from: Optional[str] = None  # a task whose fine-tuned model (its first seed) this task starts from
    warmup: float = 0.06  # fraction of the run


@dataclass(frozen=True)
class Predictions:
    """A model's outputs on one evaluation split, with the examples they belong to."""

    examples: Sequence[Example]
    logits: np.ndarray  # (rows, num_labels)

    @property
    def labels(self) -> np.ndarray:
        return np.array([e.label for e in self.examples])

    def classes(self) -> np.ndarray:
        return self.logits.argmax(-1)

    def chosen(self) -> list[Example]:
        """Per group (in order of first appearance), the candidate with the highest score."""
        best: dict[int, tuple[float, Example]] = {}
        for score, example in zip(self.logits[:, 0], self.examples):
            if example.group not in best or score > best[example.group][0]:
                best[example.group] = (float(score), example)
        return [e for _, e in best.values()]


Scorer = Callable[[Predictions], dict[str, float]]


@dataclass(frozen=True)
class Task:
    name: str
    benchmark: str  # glue | superglue
    folder: str  # directory under the benchmark's data directory
    kind: str  # classification | regression | multiple_choice
    label_names: Optional[tuple[str, ...]]  # None: regression or candidate scoring
    eval_splits: Mapping[str, str]  # our split name -> file; "train" is the training file
    read_file: Callable[[Path, bool], list[Example]]
    hf: tuple[str, str]  # (dataset, config) in the HF hub naming
    hf_splits: Mapping[str, str]
    convert_hf: Callable[..., list[Example]]
    score: Scorer
    recipe: Recipe
    train_file: str = "train.tsv"

    @property
    def num_labels(self) -> int:
        return 1 if self.label_names is None else len(self.label_names)

    def majority_score(self, train: Sequence[Example], evaluation: Sequence[Example]) -> Optional[dict[str, float]]:
        """The scores of always predicting the most frequent training class (classification only)."""
        if self.kind != "classification":
            return None
        counts = np.bincount([int(e.label) for e in train], minlength=self.num_labels)
        logits = np.zeros((len(evaluation), self.num_labels))
        logits[:, counts.argmax()] = 1.0
        return self.score(Predictions(evaluation, logits))


# --- scorers --------------------------------------------------------------------------------------
def acc(p: Predictions) -> dict[str, float]:
    return {"accuracy": M.accuracy(p.classes(), p.labels)}


def acc_f1(p: Predictions) -> dict[str, float]:
    return {"accuracy": M.accuracy(p.classes(), p.labels), "f1": M.f1_binary(p.classes(), p.labels)}


def mcc(p: Predictions) -> dict[str, float]:
    return {"matthews_corr": M.matthews_corrcoef(p.classes(), p.labels)}


def correlations(p: Predictions) -> dict[str, float]:
    scores = p.logits[:, 0]
    return {"pearson": M.pearson(scores, p.labels), "spearman": M.spearman(scores, p.labels)}


def acc_macro_f1(p: Predictions) -> dict[str, float]:
    return {"accuracy": M.accuracy(p.classes(), p.labels),
            "f1_macro": M.f1_macro(p.classes(), p.labels, p.logits.shape[1])}


def multirc(p: Predictions) -> dict[str, float]:
    preds, groups = p.classes(), [e.group for e in p.examples]
    return {"f1a": M.f1_binary(preds, p.labels), "exact_match": M.exact_match_by_group(preds, p.labels, groups)}


def choice_accuracy(p: Predictions) -> dict[str, float]:
    return {"accuracy": float(np.mean([e.label == 1 for e in p.chosen()]))}


def record(p: Predictions) -> dict[str, float]:
    chosen = p.chosen()
    return M.record_scores([e.answer for e in chosen], [e.golds for e in chosen])


# --- GLUE -----------------------------------------------------------------------------------------
ENTAILMENT = ("entailment", "not_entailment")
NLI3 = ("entailment", "neutral", "contradiction")  # GLUE MNLI's label order (as in HF datasets)
BINARY = ("0", "1")


def glue_reader(text_a: Column, text_b: Optional[Column], label: Column, labels: Optional[Sequence[str]]):
    def read(path: Path, skip_bad_rows: bool) -> list[Example]:
        return read_tsv(path, text_a, text_b, label, labels, skip_bad_rows)
    return read


def glue_hf(a: str, b: Optional[str], labels: Optional[Sequence[str]]):
    def convert(row: Mapping[str, Any], where: str, _next_group) -> list[Example]:
        return [Example(row[a], row[b] if b else None, label_index(row["label"], labels, where))]
    return convert


def glue_task(name: str, folder: str, a: Column, b: Optional[Column], label: Column,
              hf_fields: tuple[str, Optional[str]], labels: Optional[Sequence[str]], score: Scorer, recipe: Recipe,
              kind: str = "classification", eval_splits: Optional[dict[str, str]] = None) -> Task:
    eval_splits = eval_splits or {"dev": "dev.tsv"}
    # dev -> validation, dev_matched -> validation_matched
    hf_splits = {"train": "train", **{s: "validation" + s[3:] for s in eval_splits}}
    return Task(name, "glue", folder, kind, tuple(labels) if labels else None, eval_splits,
                glue_reader(a, b, label, labels), ("glue", name), hf_splits, glue_hf(*hf_fields, labels), score, recipe)


FROM_MNLI = "mnli"
GLUE_TASKS = [
    glue_task("cola", "CoLA", Column("sentence", 3), None, Column("label", 1), ("sentence", None), BINARY, mcc,
              Recipe(10, 5.0e-5, 5.0e-6, 32, seeds=(19, 8364, 717, 10536))),
    glue_task("sst2", "SST-2", Column("sentence", 0), None, Column("label", 1), ("sentence", None), BINARY, acc,
              Recipe(3, 3.0e-5, 3.0e-6, 16, seeds=(19, 8364, 717))),
    glue_task("mrpc", "MRPC", Column("#1 String", 3), Column("#2 String", 4), Column("Quality", 0),
              ("sentence1", "sentence2"), BINARY, acc_f1,
              Recipe(10, 8.0e-5, 8.0e-6, 32, seeds=(19, 8364, 717, 10536, 90166), start_from=FROM_MNLI)),
    glue_task("stsb", "STS-B", Column("sentence1", 7), Column("sentence2", 8), Column("score", -1),
              ("sentence1", "sentence2"), None, correlations,
              Recipe(10, 3.0e-5, 3.0e-6, 32, seeds=(19, 8364, 717, 10536, 90166), start_from=FROM_MNLI),
              kind="regression"),
    glue_task("qqp", "QQP", Column("question1", 3), Column("question2", 4), Column("is_duplicate", 5),
              ("question1", "question2"), BINARY, acc_f1, Recipe(5, 3.0e-5, 3.0e-6, 16)),
    glue_task("mnli", "MNLI", Column("sentence1", 8), Column("sentence2", 9), Column("gold_label", -1),
              ("premise", "hypothesis"), NLI3, acc, Recipe(3, 5.0e-5, 5.0e-6, 48),
              eval_splits={"dev_matched": "dev_matched.tsv", "dev_mismatched": "dev_mismatched.tsv"}),
    glue_task("qnli", "QNLI", Column("question", 1), Column("sentence", 2), Column("label", 3),
              ("question", "sentence"), ENTAILMENT, acc, Recipe(10, 1.0e-5, 1.0e-6, 16)),
    glue_task("rte", "RTE", Column("sentence1", 1), Column("sentence2", 2), Column("label", 3),
              ("sentence1", "sentence2"), ENTAILMENT, acc,
              Recipe(3, 1.0e-5, 1.0e-5, 16, seeds=(19, 8364, 717, 10536, 90166), start_from=FROM_MNLI)),
    glue_task("wnli", "WNLI", Column("sentence1", 1), Column("sentence2", 2), Column("label", 3),
              ("sentence1", "sentence2"), BINARY, acc, Recipe(3, 1.0e-5, 1.0e-5, 16, seeds=(19, 8364, 717))),
]


# --- SuperGLUE ------------------------------------------------------------------------------------
def pair(a: str, b: str, labels: Sequence[str]):
    """A record with two text fields and a label (BoolQ, CB, RTE)."""
    def convert(r: Mapping[str, Any], where: str, _next_group) -> list[Example]:
        return [Example(get(r, a, where), get(r, b, where), label_index(get(r, "label", where), labels, where))]
    return convert


def copa(r: Mapping[str, Any], where: str, next_group) -> list[Example]:
    group, answer = next_group(), int(label_index(get(r, "label", where), ("0", "1"), where))
    question = "What was the cause?" if r["question"] == "cause" else "What happened as a result?"
    return [Example(f"{r['premise']} {question}", r[key], float(i == answer), group)
            for i, key in enumerate(("choice1", "choice2"))]


def wic(r: Mapping[str, Any], where: str, _next_group) -> list[Example]:
    return [Example(f"{r['word']}: {r['sentence1']}", r["sentence2"], label_index(get(r, "label", where), BOOL, where))]


def wsc(r: Mapping[str, Any], where: str, _next_group) -> list[Example]:
    target = r.get("target", r)  # JSONL nests the spans under "target"; HF rows are flat
    question = f"Does \"{target['span2_text']}\" refer to \"{target['span1_text']}\"?"
    return [Example(r["text"], question, label_index(get(r, "label", where), BOOL, where))]


def multirc_hf(r: Mapping[str, Any], where: str, next_group) -> list[Example]:
    # HF rows are flat (paragraph, question, answer); the question id groups them
    group = hash((r["idx"]["paragraph"], r["idx"]["question"])) & 0x7FFFFFFF
    return [Example(r["paragraph"], f"{r['question']} {r['answer']}", label_index(r["label"], BOOL, where), group)]


def record_hf(r: Mapping[str, Any], where: str, next_group) -> list[Example]:
    return record_examples(r["passage"], r["query"], r["entities"], r["answers"], next_group())


BOOL = ("False", "True")
CB_LABELS = ("entailment", "contradiction", "neutral")  # SuperGLUE's order (as in HF datasets)


def superglue_task(name: str, folder: str, kind: str, labels: Optional[Sequence[str]],
                   convert: Callable[..., list[Example]], score: Scorer, recipe: Recipe,
                   convert_hf: Optional[Callable[..., list[Example]]] = None, hf_config: Optional[str] = None) -> Task:
    def read(path: Path, _skip_bad_rows: bool) -> list[Example]:
        return read_superglue(path, convert)
    return Task(name, "superglue", folder, kind, tuple(labels) if labels else None, {"val": "val.jsonl"}, read,
                ("super_glue", hf_config or name.removeprefix("sg_")), {"train": "train", "val": "validation"},
                convert_hf or convert, score, recipe, train_file="train.jsonl")


SUPERGLUE_TASKS = [
    superglue_task("boolq", "BoolQ", "classification", BOOL, pair("question", "passage", BOOL), acc,
                   Recipe(5, 2.0e-5, 1.0e-6, 16, max_seq_len=256, seeds=(19, 8364, 717))),
    superglue_task("cb", "CB", "classification", CB_LABELS, pair("premise", "hypothesis", CB_LABELS), acc_macro_f1,
                   Recipe(10, 2.0e-5, 1.0e-6, 16, seeds=(19, 8364, 717, 10536, 90166), start_from=FROM_MNLI)),
    superglue_task("copa", "COPA", "multiple_choice", None, copa, choice_accuracy,
                   Recipe(10, 2.0e-5, 1.0e-6, 16, max_seq_len=128, seeds=(19, 8364, 717, 10536, 90166))),
    superglue_task("sg_rte", "RTE", "classification", ENTAILMENT, pair("premise", "hypothesis", ENTAILMENT), acc,
                   Recipe(3, 1.0e-5, 1.0e-5, 16, seeds=(19, 8364, 717, 10536, 90166), start_from=FROM_MNLI)),
    superglue_task("wic", "WiC", "classification", BOOL, wic, acc,
                   Recipe(10, 2.0e-5, 1.0e-6, 16, max_seq_len=128, seeds=(19, 8364, 717))),
    superglue_task("wsc", "WSC", "classification", BOOL, wsc, acc,
                   Recipe(10, 1.0e-5, 1.0e-6, 16, max_seq_len=128, seeds=(19, 8364, 717, 10536, 90166)),
                   hf_config="wsc.fixed"),
    superglue_task("multirc", "MultiRC", "classification", BOOL, multirc_examples, multirc,
                   Recipe(3, 2.0e-5, 1.0e-6, 16, max_seq_len=384, seeds=(19, 8364, 717)), convert_hf=multirc_hf),
    superglue_task("record", "ReCoRD", "multiple_choice", None, record_jsonl_examples, record,
                   Recipe(2, 2.0e-5, 1.0e-6, 8, max_seq_len=384), convert_hf=record_hf),
]

TASKS: dict[str, Task] = {t.name: t for t in GLUE_TASKS + SUPERGLUE_TASKS}


@dataclass
class DataSource:
    """Where task data is read from: ``<glue_dir>/<Folder>/`` and ``<superglue_dir>/<Folder>/`` files
    (or a ``save_to_disk`` folder there), else the offline HF datasets cache when ``hf_cache``."""

    glue_dir: Optional[str] = None
    superglue_dir: Optional[str] = None
    hf_cache: bool = False
    skip_bad_rows: bool = False
    files: dict[str, dict[str, str]] = field(default_factory=dict)  # task -> {split: file name}

    def locate(self, task: Task, split: str) -> tuple[str, str]:
        """Where ``split`` of ``task`` is read from: ("file", path), ("disk", folder) or ("hub", name)."""
        root = self.glue_dir if task.benchmark == "glue" else self.superglue_dir
        folder = Path(root) / task.folder if root else None
        names = {"train": task.train_file, **task.eval_splits, **self.files.get(task.name, {})}
        if split not in names:
            raise TaskDataError(f"task {task.name} has no split '{split}' (has: {', '.join(names)})")
        if folder is not None and (folder / "dataset_dict.json").is_file():
            return "disk", str(folder)
        path = folder / names[split] if folder is not None else None
        if path is not None and path.is_file():
            return "file", str(path)
        if self.hf_cache:
            return "hub", "/".join(task.hf)
        key = "glue_dir" if task.benchmark == "glue" else "superglue_dir"
        looked = f"looked for {path}" if path is not None else f"{key} is not set"
        raise TaskDataError(f"no {split} data for {task.name}: {looked}. Put {task.benchmark.upper()}'s "
                            f"{task.folder}/{names[split]} under {key} (the official layout), or set "
                            f"hf_cache: true to read the HF datasets cache offline")

    def read(self, task: Task, split: str) -> list[Example]:
        kind, where = self.locate(task, split)
        hf_split = task.hf_splits.get(split, split)
        if kind == "file":
            return task.read_file(Path(where), self.skip_bad_rows)
        if kind == "disk":
            return read_hf_split(where, "", None, hf_split, task.convert_hf)
        return read_hf_split("", *task.hf, hf_split, task.convert_hf)
