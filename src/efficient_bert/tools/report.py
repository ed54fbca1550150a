"""Compare runs: ``efficient-bert report RUN_DIR... [--baseline RUN_DIR] [--out DIR]``.

Each RUN_DIR is a run's save folder, holding the ``metrics.jsonl`` that every run writes (and
``run.json``; a GLUE ``results.json`` in any sub-folder is picked up too). The report is a table,
each run against the baseline (the first run unless ``--baseline``), and two plots of eval MLM loss:
against training wall-clock time and against tokens seen. It writes ``report.md``, ``report.json``
and the PNGs to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from efficient_bert.run_files import (BUDGET_COMPILE_SECONDS, BUDGET_REFERENCE_HOURS, BUDGET_RST_HOURS,
                                      BUDGET_WALL_HOURS, METRICS_FILE, RUN_FILE)

EVAL_LOSS = "metrics/eval/LanguageCrossEntropy"
UNIGRAM_FLOOR = "metrics/eval/UnigramEntropy"  # the loss of a model that knows only token frequencies


class ReportError(ValueError):
    """A run folder that cannot be reported; the message names it and the fix."""


@dataclass
class RunRecord:
    name: str
    folder: str
    eval_points: list[tuple[float, int, float]] = field(default_factory=list)  # (wall hours, tokens, eval loss)
    tokens: int = 0  # drawn by the dataloader (Composer's count)
    trained_tokens: Optional[int] = None  # reached the training forward (fewer with selection methods)
    batches: int = 0
    wall_hours: float = 0.0
    rst_hours: Optional[float] = None
    reference_hours: Optional[float] = None  # charged by a reference-clock budget (budget.clock: reference)
    eval_reference_hours: list[float] = field(default_factory=list)  # the charge at each eval point
    compile_seconds: Optional[float] = None  # torch.compile time the budget left out
    glue_average: Optional[float] = None
    unigram_floor: Optional[float] = None  # of the last evaluation

    @property
    def final_eval_loss(self) -> Optional[float]:
        return self.eval_points[-1][2] if self.eval_points else None


def read_run(folder: str | Path, metric: str = EVAL_LOSS) -> RunRecord:
    folder = Path(folder)
    path = folder / METRICS_FILE
    if not path.is_file():
        raise ReportError(f"{folder} has no {METRICS_FILE}: give the save_folder of a training run (every run "
                          f"writes it there, or under runs/<run_name>/<date-time> without a local save_folder)")
    name = folder.name
    if (folder / RUN_FILE).is_file():
        name = json.loads((folder / RUN_FILE).read_text()).get("run_name", name)
    record = RunRecord(name, str(folder))
    budget_wall: Optional[float] = None
    for line_number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            raise ReportError(f"{path}:{line_number} is not JSON (a run killed mid-write leaves a partial last "
                              "line: delete it)") from None
        record.tokens = max(record.tokens, row["tokens"])
        if "trained/tokens" in row:
            record.trained_tokens = max(record.trained_tokens or 0, int(row["trained/tokens"]))
        record.batches = max(record.batches, row["batch"])
        # the budget's clock leaves evaluation and checkpoints out; without a budget, Composer's train clock
        if BUDGET_WALL_HOURS in row:
            budget_wall = row[BUDGET_WALL_HOURS]
        if BUDGET_RST_HOURS in row:
            record.rst_hours = row[BUDGET_RST_HOURS]
        if BUDGET_REFERENCE_HOURS in row:
            record.reference_hours = row[BUDGET_REFERENCE_HOURS]
        if BUDGET_COMPILE_SECONDS in row:
            record.compile_seconds = row[BUDGET_COMPILE_SECONDS]
        wall = budget_wall if budget_wall is not None else row["wall_s"] / 3600
        record.wall_hours = max(record.wall_hours, wall)
        if metric in row and isinstance(row[metric], float):
            record.eval_points.append((wall, row["tokens"], row[metric]))
            if record.reference_hours is not None:
                record.eval_reference_hours.append(record.reference_hours)
        if isinstance(row.get(UNIGRAM_FLOOR), float):
            record.unigram_floor = row[UNIGRAM_FLOOR]
    if not record.eval_points:
        raise ReportError(f"{path} holds no '{metric}' values: the run never evaluated (set eval_loader and "
                          "eval_interval) or logs its eval loss under another name (--metric)")
    for results in sorted(folder.glob("**/results.json")):
        averages = json.loads(results.read_text()).get("averages", {})
        if "glue" in averages:
            record.glue_average = averages["glue"]["average"]
    return record


def table(runs: Sequence[RunRecord], baseline: RunRecord) -> list[dict[str, object]]:
    rows = []
    for run in runs:
        rows.append({
            "run": run.name, "final_eval_loss": run.final_eval_loss, "unigram_floor": run.unigram_floor,
            "tokens": run.tokens, "trained_tokens": run.trained_tokens, "batches": run.batches,
            "wall_hours": run.wall_hours, "rst_hours": run.rst_hours, "glue_average": run.glue_average,
            "eval_loss_vs_baseline": run.final_eval_loss - baseline.final_eval_loss,
            "wall_vs_baseline": run.wall_hours / baseline.wall_hours if baseline.wall_hours else None,
            "tokens_vs_baseline": run.tokens / baseline.tokens if baseline.tokens else None,
        })
    return rows


def fmt(value: Any, spec: str, scale: float = 1.0) -> str:
    """``value`` (times ``scale``) in ``spec``, or a dash for a missing value: a table cell."""
    return "–" if value is None else format(value * scale if scale != 1.0 else value, spec)


def markdown(rows: list[dict[str, object]], baseline: str, images: Sequence[str]) -> str:
    lines = [f"# Run comparison (baseline: {baseline})", "",
             "| run | final eval loss | Δ vs baseline | unigram floor | tokens drawn | × baseline | tokens trained "
             "| train wall h | × baseline | RST h | GLUE avg |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        glue = None if r["glue_average"] is None else 100 * r["glue_average"]
        lines.append(f"| {r['run']} | {r['final_eval_loss']:.4f} | {r['eval_loss_vs_baseline']:+.4f} | "
                     f"{fmt(r['unigram_floor'], '.4f')} | {r['tokens']:,} | {fmt(r['tokens_vs_baseline'], '.2f')} | "
                     f"{fmt(r['trained_tokens'], ',')} | {r['wall_hours']:.4f} | "
                     f"{fmt(r['wall_vs_baseline'], '.2f')} | {fmt(r['rst_hours'], '.4f')} | {fmt(glue, '.2f')} |")
    lines += ["", "Tokens drawn are what the dataloader gave (Composer's count); tokens trained reached the training",
              "forward pass: fewer when a method trains a part of what it draws (selective backprop, RHO-loss,",
              "batch-size warmup).",
              "Train wall time leaves out evaluation and checkpoints when the run had a budget (its clock);",
              "otherwise it is Composer's training clock. The unigram floor is the eval loss of a model that knows",
              "only token frequencies: a loss near it means the model has learned nothing else.", ""]
    lines += [f"![{Path(i).stem}]({Path(i).name})" for i in images]
    return "\n".join(lines) + "\n"


def plot(runs: Sequence[RunRecord], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def hours_unit(hours: Sequence[float]) -> tuple[str, float]:
        longest = max(hours)
        return next((u, s) for u, s, limit in (("hours", 1, 2.0), ("minutes", 60, 2 / 60), ("seconds", 3600, 0))
                    if longest >= limit)

    unit, scale = hours_unit([p[0] for run in runs for p in run.eval_points])
    axes = [("time", lambda run: [p[0] * scale for p in run.eval_points], f"training wall-clock {unit}"),
            ("tokens", lambda run: [p[1] for p in run.eval_points], "tokens seen")]
    if all(len(run.eval_reference_hours) == len(run.eval_points) for run in runs):  # every run on the reference clock
        ref_unit, ref_scale = hours_unit([h for run in runs for h in run.eval_reference_hours])
        axes.insert(0, ("budget", lambda run: [h * ref_scale for h in run.eval_reference_hours],
                        f"budget charged, reference {ref_unit}"))
    paths = []
    for axis, xs, label in axes:
        fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
        for run in runs:
            ax.plot(xs(run), [p[2] for p in run.eval_points], marker="o", markersize=3, label=run.name)
        floors = sorted({round(run.unigram_floor, 4) for run in runs if run.unigram_floor is not None})
        for i, floor in enumerate(floors):  # one line per distinct eval set
            ax.axhline(floor, color="gray", linestyle="--", linewidth=1,
                       label="unigram floor" if len(floors) == 1 else f"unigram floor {i + 1}")
        ax.set_xlabel(label)
        ax.set_ylabel("eval MLM loss")
        ax.set_title(f"eval MLM loss vs {label}")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        path = out / f"eval_loss_vs_{axis}.png"
        fig.savefig(path)
        plt.close(fig)
        paths.append(path)
    return paths


def name_distinctly(runs: Sequence[RunRecord]) -> None:
    """Runs that share a name (two copies of the demo) are labelled by their folder, else by its path."""
    for label in (lambda r: Path(r.folder).name, lambda r: r.folder):
        clashing = [r for r in runs if sum(o.name == r.name for o in runs) > 1]
        for run in clashing:
            run.name = label(run)


def report(folders: Sequence[str | Path], out: str | Path, baseline: Optional[str | Path] = None,
           metric: str = EVAL_LOSS, overwrite: bool = False) -> dict[str, object]:
    from tqdm.auto import tqdm

    out = Path(out)
    if (out / "report.md").exists() and not overwrite:
        raise ReportError(f"{out / 'report.md'} exists; choose another --out or pass --overwrite")
    folders = list(folders)
    if baseline is not None and Path(baseline) not in map(Path, folders):
        folders.insert(0, baseline)
    runs = [read_run(f, metric) for f in tqdm(folders, desc="reading runs", unit="run", disable=len(folders) < 4)]
    name_distinctly(runs)
    base = runs[[Path(f) for f in folders].index(Path(baseline))] if baseline is not None else runs[0]
    out.mkdir(parents=True, exist_ok=True)
    rows = table(runs, base)
    images = plot(runs, out)
    (out / "report.md").write_text(markdown(rows, base.name, [str(i) for i in images]))
    summary = {"baseline": base.name, "metric": metric, "rows": rows, "runs": [asdict(r) for r in runs],
               "images": [i.name for i in images]}
    (out / "report.json").write_text(json.dumps(summary, indent=1))
    return summary


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="efficient-bert report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="run folders (save_folder of each run)")
    parser.add_argument("--baseline", help="the run the others are compared with (default: the first)")
    parser.add_argument("--out", default="report", help="output folder (default: ./report)")
    parser.add_argument("--metric", default=EVAL_LOSS, help=f"eval metric to compare (default: {EVAL_LOSS})")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    try:
        report(args.runs, args.out, args.baseline, args.metric, args.overwrite)
    except ReportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print((Path(args.out) / "report.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
