"""GLUE and SuperGLUE metrics, computed from predictions with numpy.

Each is the standard definition (the one sklearn/scipy and the official SuperGLUE scorer use);
``tests/test_finetune.py`` checks them against sklearn and scipy. They work on whole prediction
arrays, not batches: fine-tuning evaluates a full dev set at once.
"""

from __future__ import annotations

import re
import string
from collections import Counter, defaultdict
from typing import Hashable, Sequence

import numpy as np


def accuracy(preds: Sequence[int], labels: Sequence[int]) -> float:
    preds, labels = np.asarray(preds), np.asarray(labels)
    return float((preds == labels).mean())


def _f1(tp: float, fp: float, fn: float) -> float:
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


def f1_binary(preds: Sequence[int], labels: Sequence[int], positive: int = 1) -> float:
    """F1 of the positive class (MRPC, QQP, MultiRC's F1a)."""
    p, y = np.asarray(preds) == positive, np.asarray(labels) == positive
    return _f1(float((p & y).sum()), float((p & ~y).sum()), float((~p & y).sum()))


def f1_macro(preds: Sequence[int], labels: Sequence[int], num_classes: int) -> float:
    """Unweighted mean of the per-class F1 (CB)."""
    p, y = np.asarray(preds), np.asarray(labels)
    return float(np.mean([f1_binary(p, y, c) for c in range(num_classes)]))


def matthews_corrcoef(preds: Sequence[int], labels: Sequence[int]) -> float:
    """Matthews correlation (CoLA), the multiclass form; 0 when either side is constant."""
    p, y = np.asarray(preds), np.asarray(labels)
    classes = np.union1d(p, y)
    conf = np.array([[np.sum((y == a) & (p == b)) for b in classes] for a in classes], dtype=np.float64)
    t, pk = conf.sum(1), conf.sum(0)  # true / predicted counts per class
    n, correct = conf.sum(), np.trace(conf)
    denom = np.sqrt(n * n - pk @ pk) * np.sqrt(n * n - t @ t)
    return 0.0 if denom == 0 else float((correct * n - t @ pk) / denom)


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    x, y = x - x.mean(), y - y.mean()
    denom = np.sqrt((x * x).sum() * (y * y).sum())
    return 0.0 if denom == 0 else float((x * y).sum() / denom)


def _ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks with ties given their average rank (as scipy.stats.rankdata)."""
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.arange(1, len(x) + 1)
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    return sums[inverse] / counts[inverse]


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    return pearson(_ranks(np.asarray(x, dtype=np.float64)), _ranks(np.asarray(y, dtype=np.float64)))


def exact_match_by_group(preds: Sequence[int], labels: Sequence[int], groups: Sequence[Hashable]) -> float:
    """Fraction of groups whose every prediction is right (MultiRC's EM over questions)."""
    right: dict[Hashable, bool] = defaultdict(lambda: True)
    for p, y, g in zip(preds, labels, groups):
        right[g] &= bool(p == y)
    return float(np.mean(list(right.values())))


def normalize_answer(text: str) -> str:
    """SQuAD/ReCoRD normalisation: lowercase, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def token_f1(prediction: str, gold: str) -> float:
    pred, ref = normalize_answer(prediction).split(), normalize_answer(gold).split()
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def record_scores(predictions: Sequence[str], golds: Sequence[Sequence[str]]) -> dict[str, float]:
    """ReCoRD: per query the best F1 and exact match over its gold answers, averaged over queries."""
    f1 = [max(token_f1(p, g) for g in gs) for p, gs in zip(predictions, golds)]
    em = [max(float(normalize_answer(p) == normalize_answer(g)) for g in gs) for p, gs in zip(predictions, golds)]
    return {"f1": float(np.mean(f1)), "exact_match": float(np.mean(em))}
