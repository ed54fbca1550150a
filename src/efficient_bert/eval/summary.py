"""A suite's results: the median over seeds of every metric, the benchmark averages, the markdown table."""

from __future__ import annotations

import statistics
from typing import Any, Sequence

from efficient_bert.eval.tasks import TASKS


def task_score(metrics: dict[str, dict[str, float]]) -> float:
    """The mean of a task's metrics over its splits (GLUE/SuperGLUE leaderboard convention)."""
    return statistics.mean(statistics.mean(m.values()) for m in metrics.values())


def summarize(results: Sequence[dict[str, Any]], excludes: Sequence[str] = ("wnli",)) -> dict[str, Any]:
    """Median over seeds of every metric, per task; the per-benchmark average of the task scores."""
    by_task: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        by_task.setdefault(r["task"], []).append(r)
    tasks, averages = {}, {}
    for name, runs in by_task.items():
        ok = [r for r in runs if "error" not in r]
        entry: dict[str, Any] = {"benchmark": TASKS[name].benchmark, "seeds": [r["seed"] for r in ok],
                                 "errors": [f"seed {r['seed']}: {r['error']}" for r in runs if "error" in r]}
        if ok:
            entry["median"] = {split: {m: statistics.median(r["metrics"][split][m] for r in ok) for m in values}
                               for split, values in ok[0]["metrics"].items()}
            entry["per_seed"] = {r["seed"]: r["metrics"] for r in ok}
            entry["majority_class"] = ok[0].get("majority_class")
            entry["score"] = task_score(entry["median"])
        tasks[name] = entry
    for bench in ("glue", "superglue"):
        scores = [t["score"] for n, t in tasks.items()
                  if t["benchmark"] == bench and "score" in t and n not in excludes]
        if scores:
            averages[bench] = {"average": statistics.mean(scores), "tasks": len(scores)}
    return {"tasks": tasks, "averages": averages, "excluded_from_average": list(excludes)}


def job_line(result: dict[str, Any]) -> str:
    """One job's outcome: ``sst2 seed 19: dev accuracy 70.07 (10 s)``, or its error."""
    head = f"{result['task']} seed {result['seed']}"
    if "error" in result:
        return f"{head} failed: {result['error']}"
    scores = "; ".join(f"{split} " + ", ".join(f"{m} {100 * v:.2f}" for m, v in values.items())
                       for split, values in result["metrics"].items())
    return f"{head}: {scores} ({result['seconds']:.0f} s)"


def to_markdown(summary: dict[str, Any], title: str) -> str:
    lines = [f"# {title}", "",
             "Median over seeds (scores x 100). Majority: always the most frequent training class.", "",
             "| task | split | metric | median | seeds | majority |", "|---|---|---|---:|---:|---:|"]
    for name, t in summary["tasks"].items():
        for split, values in t.get("median", {}).items():
            for metric, value in values.items():
                majority = ((t.get("majority_class") or {}).get(split) or {}).get(metric)
                lines.append(f"| {name} | {split} | {metric} | {100 * value:.2f} | {len(t['seeds'])} | "
                             f"{'' if majority is None else f'{100 * majority:.2f}'} |")
        for error in t["errors"]:
            lines.append(f"| {name} | | failed | {error} | | |")
    lines.append("")
    for bench, avg in summary["averages"].items():
        lines.append(f"**{bench.upper()} average** ({avg['tasks']} tasks, without "
                     f"{', '.join(summary['excluded_from_average']) or 'none'}): {100 * avg['average']:.2f}")
    return "\n".join(lines) + "\n"
