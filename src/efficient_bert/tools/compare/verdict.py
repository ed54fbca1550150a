"""When a method's difference from the baseline is real: a pooled-variance t-test per method, with
Holm's correction over the methods of one table.

Every seed of every row is one draw of that row's result. Seed-to-seed noise is taken to be the
same for every method at one budget, so its variance is pooled over every row with two or more
seeds (the baseline's and the methods'), as in an analysis of variance. For a method with
``n_m`` seeds against a baseline with ``n_b``:

    t = (mean_m - mean_b) / (s * sqrt(1/n_m + 1/n_b)),   s^2 = pooled variance, df = sum(n_i - 1)

Its two-sided p-value comes from Student's t with ``df`` degrees of freedom. A table compares many
methods with one baseline at once, so Holm's step-down procedure keeps the chance that *any*
method identical to the baseline is called different at or below ``alpha`` for the whole table
(tests/test_compare_verdict.py simulates it). A method is then "better", "worse" or "no measurable
difference"; with no pooled degree of freedom (every row one seed) nothing can be called.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

BETTER, WORSE, NO_DIFFERENCE, UNDECIDED = "better", "worse", "no measurable difference", "too few seeds"


@dataclass(frozen=True)
class Comparison:
    delta: float  # mean of the method minus mean of the baseline
    stderr: Optional[float]  # of delta; None without a pooled variance
    df: int
    p: Optional[float]  # two-sided, before Holm's correction
    verdict: str


def _incomplete_beta_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of the regularized incomplete beta function (modified Lentz)."""
    tiny, eps = 1e-300, 1e-15
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 400):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < eps:
            break
    return h


def regularized_incomplete_beta(a: float, b: float, x: float) -> float:
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _incomplete_beta_fraction(a, b, x) / a
    return 1.0 - front * _incomplete_beta_fraction(b, a, 1.0 - x) / b


def t_two_sided_p(t: float, df: int) -> float:
    """P(|T| >= |t|) for Student's t with ``df`` degrees of freedom."""
    if df < 1:
        raise ValueError(f"Student's t needs at least one degree of freedom, got {df}")
    return regularized_incomplete_beta(df / 2.0, 0.5, df / (df + t * t))


def pooled_variance(groups: Sequence[Sequence[float]]) -> tuple[Optional[float], int]:
    """The variance pooled over the groups with two or more values, and its degrees of freedom."""
    squares = sum((len(g) - 1) * statistics.variance(g) for g in groups if len(g) >= 2)
    df = sum(len(g) - 1 for g in groups if len(g) >= 2)
    return (squares / df if df else None), df


def holm(p_values: Mapping[str, float], alpha: float) -> set[str]:
    """The names whose null hypothesis Holm's step-down procedure rejects at family-wise ``alpha``."""
    rejected = set()
    ordered = sorted(p_values, key=p_values.__getitem__)
    for rank, name in enumerate(ordered):
        if p_values[name] > alpha / (len(ordered) - rank):
            break
        rejected.add(name)
    return rejected


def compare_with_baseline(baseline: Sequence[float], methods: Mapping[str, Sequence[float]], alpha: float = 0.05,
                          lower_is_better: bool = True) -> dict[str, Comparison]:
    """Each method's difference from the baseline and its verdict (see the module docstring)."""
    if not baseline:
        raise ValueError("the baseline has no results")
    variance, df = pooled_variance([baseline, *methods.values()])
    base_mean = statistics.fmean(baseline)
    deltas, errors, p_values = {}, {}, {}
    for name, values in methods.items():
        if not values:
            continue
        deltas[name] = statistics.fmean(values) - base_mean
        if variance is not None:
            errors[name] = math.sqrt(variance * (1.0 / len(values) + 1.0 / len(baseline)))
            p_values[name] = 1.0 if errors[name] == 0.0 and deltas[name] == 0.0 else (
                0.0 if errors[name] == 0.0 else t_two_sided_p(deltas[name] / errors[name], df))
    rejected = holm(p_values, alpha)
    out = {}
    for name, delta in deltas.items():
        if name not in p_values:
            verdict = UNDECIDED
        elif name not in rejected:
            verdict = NO_DIFFERENCE
        else:
            verdict = BETTER if (delta < 0) == lower_is_better else WORSE
        out[name] = Comparison(delta, errors.get(name), df, p_values.get(name), verdict)
    return out
