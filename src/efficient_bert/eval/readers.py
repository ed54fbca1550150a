"""Reading task data: GLUE TSVs, SuperGLUE JSONL, and HF ``datasets`` (local or offline cache).

Every reader returns :class:`Example` rows. Tasks that choose among candidates (COPA, ReCoRD) give
one row per candidate with a ``group`` id; MultiRC gives one row per answer, grouped by question.
"""

from __future__ import annotations

import csv
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence


class TaskDataError(ValueError):
    """Task data that is missing or malformed; the message names the file and the fix."""


@dataclass(frozen=True)
class Example:
    text_a: str
    text_b: Optional[str] = None
    label: float = 0  # class index, regression score, or 1/0 for a gold/wrong candidate
    group: Optional[int] = None  # the question/query a row belongs to (MultiRC, COPA, ReCoRD)
    answer: Optional[str] = None  # ReCoRD: the candidate entity this row fills in
    golds: tuple[str, ...] = ()  # ReCoRD: the gold answers of the row's query


def label_index(value: Any, names: Optional[Sequence[str]], where: str) -> float:
    """A label as a class index (``names`` gives the order) or, with ``names=None``, a float score."""
    try:
        if names is None:
            return float(value)
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, int) or (isinstance(value, str) and value.lstrip("-").isdigit()):
            index = int(value)
            if 0 <= index < len(names):
                return index
        elif value in names:
            return names.index(value)
    except (TypeError, ValueError):
        pass
    expected = "a number" if names is None else f"one of {', '.join(names)} (or 0..{len(names) - 1})"
    raise TaskDataError(f"{where}: label {value!r} is not {expected}")


# --- GLUE TSV ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Column:
    """A TSV column by header name, or by position in files without a header row."""

    name: str
    position: int


def read_tsv(path: Path, text_a: Column, text_b: Optional[Column], label: Column,
             labels: Optional[Sequence[str]], skip_bad_rows: bool = False) -> list[Example]:
    """A GLUE TSV, with or without its header row (several GLUE mirrors drop it).

    A first row that holds ``text_a.name`` is the header; otherwise columns are taken by position.
    GLUE's TSVs are unquoted: a quote character is text (csv.QUOTE_NONE).
    """
    csv.field_size_limit(sys.maxsize)
    with open(path, encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    if not rows:
        raise TaskDataError(f"{path} is empty")
    columns = [text_a] + ([text_b] if text_b else []) + [label]
    start, positions = 0, [c.position for c in columns]
    if text_a.name in rows[0]:
        missing = [c.name for c in columns if c.name not in rows[0]]
        if missing:
            raise TaskDataError(f"{path}: the header has no column {', '.join(missing)} (it has: "
                                f"{', '.join(rows[0])}); is this a test file without labels?")
        start, positions = 1, [rows[0].index(c.name) for c in columns]
    need = max(max(positions) + 1, 1)  # a negative position counts from the end
    examples, bad = [], 0
    for line, row in enumerate(rows[start:], start=start + 1):
        where = f"{path}:{line}"
        try:
            if len(row) < need:
                raise TaskDataError(f"{where}: {len(row)} column(s), expected at least {need}")
            values = [row[p] for p in positions]
            examples.append(Example(values[0], values[1] if text_b else None, label_index(values[-1], labels, where)))
        except TaskDataError as exc:
            if not skip_bad_rows:
                raise TaskDataError(f"{exc}; fix the file or set skip_bad_rows: true to skip such rows") from None
            bad += 1
    if bad:
        print(f"[efficient-bert] {path}: skipped {bad} bad row(s)", file=sys.stderr)
    return examples


# --- SuperGLUE JSONL and HF rows ----------------------------------------------------------------------
def read_jsonl(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    with open(path, encoding="utf-8") as handle:
        for line, text in enumerate(handle, start=1):
            if text.strip():
                try:
                    yield f"{path}:{line}", json.loads(text)
                except json.JSONDecodeError as exc:
                    raise TaskDataError(f"{path}:{line} is not JSON ({exc.msg})") from None


def field(record: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in record:
        raise TaskDataError(f"{where}: no '{key}' field (has: {', '.join(record)}); "
                            "a test split without labels cannot be used for fine-tuning or evaluation")
    return record[key]


def multirc_examples(record: Mapping[str, Any], where: str, next_group: Callable[[], int]) -> list[Example]:
    """MultiRC's JSONL: one passage with questions, each with answer options labelled 0/1."""
    passage = field(record, "passage", where)
    rows = []
    for question in field(passage, "questions", where):
        group = next_group()
        for answer in field(question, "answers", where):
            rows.append(Example(passage["text"], f"{question['question']} {answer['text']}",
                                label_index(field(answer, "label", where), ("False", "True"), where), group))
    return rows


def record_examples(passage: str, query: str, entities: Sequence[str], answers: Sequence[str],
                    group: int) -> list[Example]:
    """ReCoRD: every distinct entity of the passage is a candidate filling the query's @placeholder."""
    passage = passage.replace("@highlight\n", "- ")
    golds = tuple(answers)
    return [Example(passage, query.replace("@placeholder", entity), float(entity in golds), group, entity, golds)
            for entity in dict.fromkeys(entities)]


def record_jsonl_examples(record: Mapping[str, Any], where: str, next_group: Callable[[], int]) -> list[Example]:
    passage = field(record, "passage", where)
    text = passage["text"]
    entities = [text[e["start"]:e["end"] + 1] for e in field(passage, "entities", where)]
    rows = []
    for qa in field(record, "qas", where):
        answers = [a["text"] for a in field(qa, "answers", where)]
        rows += record_examples(text, qa["query"], entities, answers, next_group())
    return rows


def read_superglue(path: Path, convert: Callable[..., list[Example]]) -> list[Example]:
    counter = iter(range(sys.maxsize))
    examples = []
    for where, record in read_jsonl(path):
        examples += convert(record, where, lambda: next(counter))
    if not examples:
        raise TaskDataError(f"{path} holds no examples")
    return examples


def read_hf_split(source: str, name: str, config: Optional[str], split: str,
                  convert: Callable[..., list[Example]]) -> list[Example]:
    """A split from a ``save_to_disk`` folder (``source``) or, with ``name``, the HF datasets cache,
    offline: nothing is downloaded."""
    try:
        import datasets
    except ImportError as exc:  # pragma: no cover - datasets is a dependency
        raise TaskDataError("reading HF datasets needs the `datasets` package") from exc
    where = f"HF dataset {source or name}{'/' + config if config else ''} [{split}]"
    try:
        if source:
            dataset = datasets.load_from_disk(source)[split]
        else:
            os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
            dataset = datasets.load_dataset(name, config, split=split)
    except (KeyError, FileNotFoundError, ConnectionError, ValueError) as exc:
        raise TaskDataError(f"{where} is not available offline ({type(exc).__name__}: {exc}); put the "
                            "task's files under the data directory instead") from None
    counter = iter(range(sys.maxsize))
    examples = []
    for i, row in enumerate(dataset):
        examples += convert(row, f"{where} row {i}", lambda: next(counter))
    return examples
