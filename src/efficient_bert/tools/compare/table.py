"""``efficient-bert compare table``: the methods table, its verdicts and plots, from the records alone.

Per budget, one line per method: its seeds, the mean eval MLM loss and masked accuracy over them,
tokens and steps, each GLUE task and the GLUE average, each difference to the baseline and its
verdict (:mod:`.verdict`: a pooled t-test with Holm's correction over the methods of the budget).
A plot per budget shows every row's eval loss against the budget charged. Nothing here needs a GPU.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from efficient_bert.tools.compare import records as rec
from efficient_bert.tools.compare.methods import BASELINE, NO_TRAIN_NO_GAIN
from efficient_bert.tools.compare.verdict import Comparison, compare_with_baseline
from efficient_bert.tools.report import fmt

GLUE_TASKS = {"cola": "CoLA", "sst2": "SST-2", "mrpc": "MRPC", "stsb": "STS-B", "rte": "RTE"}


@dataclass
class Line:
    method: str
    seeds: list[int]
    eval_loss: Optional[float]
    masked_accuracy: Optional[float]
    tokens: Optional[float]
    steps: Optional[float]
    glue: dict[str, Optional[float]]
    glue_average: Optional[float]
    commits: list[str] = field(default_factory=list)
    # (task, seed, why) without a finite score: "diverged" (the fine-tuning did) or "failed"
    glue_failed: list[tuple[str, int, str]] = field(default_factory=list)
    loss_vs_baseline: Optional[Comparison] = None
    glue_vs_baseline: Optional[Comparison] = None


def _mean(values: Sequence[Optional[float]]) -> Optional[float]:
    present = [v for v in values if v is not None]
    return statistics.fmean(present) if present else None


def summarize(rows: Sequence[rec.Record], alpha: float = 0.05) -> list[Line]:
    """The lines of one budget's table, the baseline first, then methods in order of appearance."""
    methods = list(dict.fromkeys([BASELINE] + [r.method for r in rows]))
    by_method = {m: [r for r in rows if r.method == m] for m in methods}
    lines = []
    for method, mine in by_method.items():
        if not mine:
            continue
        glue = {t: _mean([r.glue_score(t) for r in mine]) for t in GLUE_TASKS}
        lines.append(Line(method, [r.seed for r in mine], _mean([r.eval_loss for r in mine]),
                          _mean([r.pretrain.get("masked_accuracy") for r in mine]),
                          _mean([r.pretrain.get("tokens") for r in mine]), _mean([r.pretrain.get("steps") for r in mine]),
                          glue, _mean([r.glue_average for r in mine]),
                          sorted({str(r.code.get("commit")) for r in mine}),
                          [(t, r.seed, "diverged" if r.glue_diverged(t) else "failed")
                           for r in mine for t in r.glue_failed]))
    base = by_method[BASELINE]
    others = {m: v for m, v in by_method.items() if m != BASELINE and v}
    if base:
        losses = compare_with_baseline([r.eval_loss for r in base],
                                       {m: [r.eval_loss for r in v] for m, v in others.items()}, alpha)
        glue_base = [r.glue_average for r in base if r.glue_average is not None]
        glues = compare_with_baseline(glue_base, {m: [r.glue_average for r in v if r.glue_average is not None]
                                                  for m, v in others.items()}, alpha, lower_is_better=False) \
            if glue_base else {}
        for line in lines:
            line.loss_vs_baseline = losses.get(line.method)
            line.glue_vs_baseline = glues.get(line.method)
    return lines


def _delta(comparison: Optional[Comparison], decimals: int, scale: float = 1.0) -> str:
    if comparison is None:
        return "–"
    spread = "" if comparison.stderr is None else f" ± {comparison.stderr * scale:.{decimals}f}"
    return f"{comparison.delta * scale:+.{decimals}f}{spread}"


def _glue_cell(line: Line, task: str) -> str:
    why = {w for t, _, w in line.glue_failed if t == task}
    if line.glue[task] is None and why:
        return "diverged" if why == {"diverged"} else "failed"
    return fmt(line.glue[task], ".2f", 100)


def budget_table(lines: Sequence[Line]) -> list[str]:
    head = ("| method | seeds | eval loss | Δ loss (± s.e.) | verdict | masked acc % | tokens | steps | "
            + " | ".join(GLUE_TASKS.values()) + " | GLUE avg | Δ GLUE | verdict |")
    out = [head, "|---|---|---:|---:|---|---:|---:|---:|" + "---:|" * len(GLUE_TASKS) + "---:|---:|---|"]
    for line in lines:
        loss, glue = line.loss_vs_baseline, line.glue_vs_baseline
        out.append(
            f"| {line.method} | {', '.join(map(str, line.seeds))} | {fmt(line.eval_loss, '.4f')} | {_delta(loss, 4)} | "
            f"{loss.verdict if loss else '–'} | {fmt(line.masked_accuracy, '.2f', 100)} | {fmt(line.tokens, ',.0f')} | "
            f"{fmt(line.steps, ',.0f')} | " + " | ".join(_glue_cell(line, t) for t in GLUE_TASKS)
            + f" | {fmt(line.glue_average, '.2f', 100)} | {_delta(glue, 2, 100)} | {glue.verdict if glue else '–'} |")
    return out


WORDS = {"better": "helps", "worse": "hurts", "no measurable difference": "no measurable difference",
         "too few seeds": "not decided yet (too few seeds)"}


def in_words(lines: Sequence[Line]) -> list[str]:
    """One sentence per method: its verdicts on eval loss and on GLUE."""
    out = []
    for line in lines:
        if line.method == BASELINE or line.loss_vs_baseline is None:
            continue
        loss, glue = line.loss_vs_baseline, line.glue_vs_baseline
        text = (f"- **{line.method}** ({len(line.seeds)} seed{'s' if len(line.seeds) > 1 else ''}): "
                f"{WORDS[loss.verdict]} on eval loss ({_delta(loss, 4)})")
        if glue is not None:
            text += f"; {WORDS[glue.verdict]} on GLUE-5 ({_delta(glue, 2, 100)} points)"
        if line.glue_failed:
            failed = ", ".join(f"{GLUE_TASKS.get(t, t)} (seed {seed}{', diverged' if why == 'diverged' else ''})"
                               for t, seed, why in line.glue_failed)
            text += f"; GLUE-5 incomplete, no finite score for {failed}: no GLUE average for those seeds"
        found = [NO_TRAIN_NO_GAIN[m] for m in line.method.split("+") if m in NO_TRAIN_NO_GAIN]
        text += f". NoTrainNoGain: {'; '.join(found)}." if found else ". Not studied by NoTrainNoGain."
        out.append(text)
    return out


def beat_or_tied(lines: Sequence[Line]) -> list[str]:
    """The methods that beat or tied the baseline, which the next budget measures again: eval loss
    *better* or *no measurable difference*, and GLUE-5 not *worse*."""
    return [line.method for line in lines if line.loss_vs_baseline is not None
            and line.loss_vs_baseline.verdict in ("better", "no measurable difference")
            and (line.glue_vs_baseline is None or line.glue_vs_baseline.verdict != "worse")]


def plot(rows: Sequence[rec.Record], path: Path, title: str) -> Optional[Path]:
    """Eval loss against the budget charged, one line per row (each method one colour, seeds alike)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    drawn = [r for r in rows if r.pretrain.get("curve") and all(p[0] is not None for p in r.pretrain["curve"])]
    if not drawn:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=110)
    colours = {m: f"C{i % 10}" for i, m in enumerate(dict.fromkeys(r.method for r in drawn))}
    labelled = set()
    for r in drawn:
        xs = [60 * p[0] for p in r.pretrain["curve"]]
        ys = [p[2] for p in r.pretrain["curve"]]
        ax.plot(xs, ys, color=colours[r.method], marker="o", markersize=2.5, linewidth=1.2, alpha=0.85,
                label=None if r.method in labelled else r.method)
        labelled.add(r.method)
    floors = {round(r.pretrain["unigram_floor"], 4) for r in drawn if r.pretrain.get("unigram_floor")}
    for floor in sorted(floors)[:1]:
        ax.axhline(floor, color="gray", linestyle="--", linewidth=1, label="unigram floor")
    finals = [p[2] for r in drawn for p in r.pretrain["curve"][-1:]]
    ax.set_ylim(min(finals) - 0.3, max(floors) + 0.4 if floors else None)
    ax.set_xlabel("budget charged, reference minutes")
    ax.set_ylabel("eval MLM loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def markdown(all_rows: Sequence[rec.Record], images: Path, relative_to: Path, records: str | Path,
             alpha: float = 0.05) -> str:
    budgets = sorted({r.hours for r in all_rows})
    out = ["# Methods at equal budget", "",
           f"Generated by `efficient-bert compare table` from the records in `{records}` (how they are made and "
           "what each column means: docs/compare.md); every figure is the mean over the seeds listed. Δ is the method's mean minus the baseline's (± its standard "
           "error from the seed-to-seed variance pooled over every row of the budget). The verdict is a "
           f"two-sided t-test with Holm's correction over the methods of the budget, family-wise α = {alpha}: "
           "*better*, *worse*, or *no measurable difference*; *too few seeds* when no row has two.", ""]
    for hours in budgets:
        rows = [r for r in all_rows if r.hours == hours]
        lines = summarize(rows, alpha)
        envs = sorted({f"{r.environment.get('gpu')} (torch {r.environment.get('torch')}, Triton "
                       f"{r.environment.get('triton')})" for r in rows})
        commits = sorted({str(r.code.get("commit")) for r in rows})
        floors = sorted({round(r.pretrain["unigram_floor"], 4) for r in rows if r.pretrain.get("unigram_floor")})
        out += [f"## {60 * hours:g} minutes (budget.hours={hours:g})", ""] + budget_table(lines) + [
            "", f"Unigram floor of the eval set: {', '.join(f'{f:.4f}' for f in floors) or '–'}. "
                f"Machines: {'; '.join(envs)}. Code: {', '.join(commits)}."]
        words = in_words(lines)
        if words:
            ahead = beat_or_tied(lines)
            out += ["", *words, "", "Beat or tied the baseline (eval loss *better* or *no measurable difference*, "
                    f"GLUE-5 not *worse*), so measured again at the next budget: {', '.join(ahead) or 'none'}."]
        image = plot(rows, images / f"eval_loss_{rec.budget_folder(hours)}.png",
                     f"eval MLM loss, {60 * hours:g}-minute budget")
        if image is not None:
            out += ["", f"![eval loss against budget, {60 * hours:g} minutes]({image.relative_to(relative_to)})"]
        out.append("")
    return "\n".join(out)


def write(records: str | Path, out: str | Path, alpha: float = 0.05) -> Path:
    rows = list(rec.all_records(records))
    if not rows:
        raise SystemExit(f"error: no records under {records}: `efficient-bert compare run` writes them")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(markdown(rows, out.parent / out.stem, out.parent, records, alpha))
    return out
