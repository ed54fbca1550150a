"""Compare efficient-training methods with a baseline at equal budget, NoTrainNoGain-style.

    efficient-bert compare --out runs/compare --data runs/enwiki/mds --tokenizer runs/enwiki/tok \\
        --hours 0.05 0.15 --seeds 17 18 --glue-dir ../shared/data/glue

Every row is one method (or a composition of methods, ``layer-drop+lion``) trained from one recipe
(``--recipe``, the budget recipe by default) on the same data with the reference clock
(``--clock``, ``yamls/budget/reference-clock.yaml``): each step is charged its price on the
reference system, so every row buys exactly the same training, on any GPU and on any rerun. Each
budget in ``--hours`` gets all rows. The baseline runs with every seed in ``--seeds``; a method
runs with the first, and with the others too when its eval-loss difference to the baseline is
smaller than the baseline's seed spread. RHO-loss first trains its irreducible-loss model on the
data's ``holdout`` split (``convert_c4.py --holdout_fraction``), as NoTrainNoGain does, for the
shortest budget, and extracts its losses.

Per row: eval MLM loss and masked accuracy on the held-out set (fixed masks), steps, tokens
trained, the budget charged, and with ``--glue-dir`` the GLUE scores after fine-tuning its export
(``yamls/finetune/glue-compare.yaml``: CoLA, SST-2, MRPC, STS-B and RTE from the pretrained model),
each with its difference to the baseline. Outputs: ``OUT/compare.md`` and ``OUT/compare.json``, and
per budget ``OUT/<hours>h/report/`` (``efficient-bert report``: eval loss against the budget
charged, one line per row). The table can be built in parts: every finished run and fine-tuning
keeps its results in its folder, and the same command skips them and resumes the rest. Run it from
the repository root (the YAMLs are read from ``yamls/``).
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

METHODS = {  # name -> the YAML layers it adds to the recipe
    "baseline": (),
    "layer-stacking": ("methods/layer-stacking.yaml",),
    "layer-drop": ("methods/layer-drop.yaml",),
    "selective-backprop": ("methods/selective-backprop.yaml",),
    "rho-loss": ("methods/rho-loss.yaml",),
    "lion": ("methods/lion.yaml",),
    "sophiag": ("methods/sophiag.yaml",),
    "lamb": ("methods/lamb.yaml",),
    "adafactor": ("methods/adafactor.yaml",),
}
GLUE_TASKS = {"cola": "CoLA", "sst2": "SST-2", "mrpc": "MRPC", "stsb": "STS-B", "rte": "RTE"}
IL_MODEL = "il-model"


@dataclass
class Row:
    method: str
    hours: float
    seed: int
    folder: str
    run: Optional[dict[str, Any]] = None  # experiments.RunResult as a dict
    glue: dict[str, float] = field(default_factory=dict)  # task -> score (and "average")


def parse_method(text: str) -> str:
    parts = text.split("+")
    unknown = [p for p in parts if p not in METHODS]
    if unknown or not parts:
        raise argparse.ArgumentTypeError(f"unknown method {unknown[0] if unknown else text!r}; choose from "
                                         f"{', '.join(METHODS)}, or join several with '+'")
    if "baseline" in parts and len(parts) > 1:
        raise argparse.ArgumentTypeError("baseline is the recipe alone: it does not compose")
    return text


def layers_of(method: str, yamls: Path) -> list[str]:
    return [str(yamls / layer) for part in method.split("+") for layer in METHODS[part]]


def check_inputs(args: argparse.Namespace) -> None:
    """Everything a row needs, before the first one runs."""
    needed = [Path(args.recipe), Path(args.clock), Path(args.glue_yaml) if args.glue_dir else None,
              *(Path(p) for m in args.methods for p in layers_of(m, Path(args.yamls)))]
    missing = [str(p) for p in needed if p is not None and not p.is_file()]
    if missing:
        raise SystemExit(f"error: {missing[0]} does not exist: run from the repository root or pass --yamls, "
                         "--recipe, --clock and --glue-yaml")
    if "baseline" not in args.methods:
        raise SystemExit("error: --methods needs baseline: every difference is measured against it")
    if uses_rho(args.methods) and not (Path(args.data) / "holdout").is_dir():
        raise SystemExit(f"error: rho-loss trains its irreducible-loss model on the holdout split and {args.data} "
                         "has none: convert the corpus with convert_c4.py --holdout_fraction 0.2")
    if args.glue_dir and not Path(args.glue_dir).is_dir():
        raise SystemExit(f"error: --glue-dir {args.glue_dir} does not exist")


def uses_rho(methods: Sequence[str]) -> bool:
    return any("rho-loss" in m.split("+") for m in methods)


def common_overrides(args: argparse.Namespace, hours: float) -> list[str]:
    from efficient_bert.experiments import equal_footing

    return equal_footing(args.data, args.tokenizer, hours, args.eval_mask_seed) + list(args.override)


def train_il_losses(args: argparse.Namespace, entry: list[str]) -> Path:
    """RHO-loss steps 1-2: the irreducible-loss model on the holdout split, then its losses."""
    from efficient_bert.experiments import RunSpec, run_config

    out = Path(args.out)
    il_losses = out / "il_losses.npz"
    if il_losses.is_file():
        return il_losses
    spec = RunSpec(IL_MODEL, [args.recipe, str(Path(args.yamls) / "methods" / "rho-il-model.yaml"), args.clock,
                              f"seed={args.seeds[0]}"])
    result = run_config(spec, out, entry, common_overrides(args, min(args.hours)), tag="compare")
    if result.returncode != 0:
        raise SystemExit(f"error: the irreducible-loss model failed (exit {result.returncode}); "
                         f"see {out / IL_MODEL}.log")
    cmd = [sys.executable, "-m", "efficient_bert.cli", "extract-il", "--model", str(out / IL_MODEL / "hf"),
           "--tokenizer", args.tokenizer, "--data_local", args.data, "--split", "train", "--out", str(il_losses)]
    print(f"[compare] IL losses: {shlex.join(cmd)}", flush=True)
    if subprocess.run(cmd).returncode != 0:
        raise SystemExit("error: extracting the irreducible losses failed (its output is above)")
    return il_losses


def pretrain(row: Row, args: argparse.Namespace, entry: list[str], il_losses: Optional[Path]) -> None:
    from efficient_bert.experiments import RunSpec, run_config

    folder = Path(row.folder)
    extra = [f"variables.il_losses={il_losses}"] if il_losses is not None and "rho-loss" in row.method else []
    spec = RunSpec(folder.name, [args.recipe, *layers_of(row.method, Path(args.yamls)), args.clock,
                                 f"seed={row.seed}", *extra])
    row.run = asdict(run_config(spec, folder.parent, entry, common_overrides(args, row.hours), tag="compare"))


def finetune(row: Row, args: argparse.Namespace) -> None:
    """GLUE scores of the row's export (skipped when its results are there already)."""
    folder = Path(row.folder)
    results = folder / "glue" / "results.json"
    if not results.is_file() and row.run and row.run["returncode"] == 0:
        cmd = [sys.executable, "-m", "efficient_bert.cli", "finetune", args.glue_yaml, f"checkpoint={folder / 'hf'}",
               f"glue_dir={args.glue_dir}", f"results_dir={folder / 'glue'}", "resume=true", *args.glue_override]
        print(f"[compare] GLUE {folder.name}: {shlex.join(cmd)}", flush=True)
        with open(folder.parent / f"{folder.name}.glue.log", "w", encoding="utf-8") as log:
            subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT)
    if results.is_file():
        summary = json.loads(results.read_text())
        row.glue = {t: summary["tasks"][t]["score"] for t in GLUE_TASKS if "score" in summary["tasks"].get(t, {})}
        if "glue" in summary["averages"]:
            row.glue["average"] = summary["averages"]["glue"]["average"]


def losses(rows: Sequence[Row]) -> list[float]:
    return [r.run["eval_loss"] for r in rows if r.run and r.run.get("eval_loss") is not None]


def mean(values: Sequence[float]) -> Optional[float]:
    return statistics.mean(values) if values else None


def seed_spread(rows: Sequence[Row]) -> Optional[float]:
    """max - min of the baseline's final eval losses over its seeds (None with fewer than two)."""
    values = losses(rows)
    return max(values) - min(values) if len(values) >= 2 else None


def summarize(rows: Sequence[Row], methods: Sequence[str], hours: float) -> list[dict[str, Any]]:
    """One line per method at ``hours``: means over its seeds, differences to the baseline's means."""
    at = [r for r in rows if r.hours == hours]
    base = [r for r in at if r.method == "baseline"]
    spread, base_loss = seed_spread(base), mean(losses(base))
    base_glue = mean([r.glue["average"] for r in base if "average" in r.glue])
    out = []
    for method in methods:
        mine = [r for r in at if r.method == method]
        done = [r.run for r in mine if r.run and r.run.get("eval_loss") is not None]
        loss = mean(losses(mine))
        glue = {t: mean([r.glue[t] for r in mine if t in r.glue]) for t in (*GLUE_TASKS, "average")}
        delta = None if loss is None or base_loss is None else loss - base_loss
        out.append({
            "method": method, "seeds": [r.seed for r in mine if r.run and r.run.get("eval_loss") is not None],
            "eval_loss": loss, "eval_loss_delta": delta,
            "exceeds_seed_spread": None if spread is None or delta is None or method == "baseline"
            else abs(delta) > spread,
            "masked_accuracy": mean([d["masked_accuracy"] for d in done if d.get("masked_accuracy") is not None]),
            "steps": mean([d["steps"] for d in done]), "tokens": mean([d["tokens"] for d in done if d.get("tokens")]),
            "reference_hours": mean([d["reference_hours"] for d in done if d.get("reference_hours") is not None]),
            "glue": glue, "glue_delta": None if glue["average"] is None or base_glue is None
            else glue["average"] - base_glue,
            "failed": [r.seed for r in mine if r.run and r.run["returncode"] != 0],
        })
    return out


def _f(value: Any, spec: str, scale: float = 1.0) -> str:
    return "–" if value is None else format(value * scale, spec)


def markdown(tables: dict[float, list[dict[str, Any]]], spreads: dict[float, Optional[float]],
             args: argparse.Namespace) -> str:
    lines = ["# Methods at equal budget", "",
             f"Recipe `{args.recipe}`, clock `{args.clock}`, data `{args.data}`, eval mask seed {args.eval_mask_seed}.",
             "Eval loss and GLUE are means over the seeds listed; Δ is the difference to the baseline's mean "
             "(negative loss Δ, positive GLUE Δ: better).", ""]
    head = ("| method | seeds | eval loss | Δ loss | > seed spread | masked acc | steps | tokens | budget charged h | "
            + " | ".join(GLUE_TASKS.values()) + " | GLUE avg | Δ GLUE |")
    for hours, table in tables.items():
        spread = spreads[hours]
        lines += [f"## Budget {hours} h", "",
                  f"Baseline seed spread (max − min eval loss): {_f(spread, '.4f')}.", "", head,
                  "|" + "---|" * 2 + "---:|" * (9 + len(GLUE_TASKS))]
        for r in table:
            exceeds = {None: "–", True: "yes", False: "no"}[r["exceeds_seed_spread"]]
            failed = f" (failed: seed {', '.join(map(str, r['failed']))})" if r["failed"] else ""
            lines.append(
                f"| {r['method']}{failed} | {', '.join(map(str, r['seeds'])) or '–'} | {_f(r['eval_loss'], '.4f')} | "
                f"{_f(r['eval_loss_delta'], '+.4f')} | {exceeds} | {_f(r['masked_accuracy'], '.2f', 100)} | "
                f"{_f(r['steps'], ',.0f')} | {_f(r['tokens'], ',.0f')} | {_f(r['reference_hours'], '.4f')} | "
                + " | ".join(_f(r["glue"][t], ".2f", 100) for t in GLUE_TASKS)
                + f" | {_f(r['glue']['average'], '.2f', 100)} | {_f(r['glue_delta'], '+.2f', 100)} |")
        lines += ["", f"![eval loss vs budget, {hours} h]({hours}h/report/eval_loss_vs_budget.png)", ""]
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="efficient-bert compare", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder of every run, the table and the plots")
    parser.add_argument("--data", required=True, help="local MDS root with train/, validation/ (and holdout/)")
    parser.add_argument("--tokenizer", required=True, help="tokenizer folder (efficient-bert train-tokenizer)")
    parser.add_argument("--hours", type=float, nargs="+", required=True, help="budgets, in reference hours")
    parser.add_argument("--seeds", type=int, nargs="+", default=[17], help="the baseline's seeds (methods: the first)")
    parser.add_argument("--methods", type=parse_method, nargs="+", default=list(METHODS),
                        help=f"rows (default: all of {', '.join(METHODS)}); join methods with '+' to compose them")
    parser.add_argument("--yamls", default="yamls", help="the folder of the method YAMLs (default: ./yamls)")
    parser.add_argument("--recipe", default="yamls/pretrain/mosaic-bert-budget.yaml")
    parser.add_argument("--clock", default="yamls/budget/reference-clock.yaml", help="the budget's clock and table")
    parser.add_argument("--eval-mask-seed", type=int, default=2024)
    parser.add_argument("--override", action="append", default=[], metavar="KEY=VALUE", help="for every run")
    parser.add_argument("--glue-dir", help="GLUE task folders; without it no row is fine-tuned")
    parser.add_argument("--glue-yaml", default="yamls/finetune/glue-compare.yaml")
    parser.add_argument("--glue-override", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--launcher", type=shlex.split, default=None,
                        help="command that runs a Python module as one training process (default: 'composer -n 1 -m')")
    args = parser.parse_args(argv)
    if len(set(args.methods)) != len(args.methods):
        parser.error(f"methods must be unique: {args.methods}")
    check_inputs(args)

    from efficient_bert.experiments import single_process_launcher
    from efficient_bert.report import ReportError, report

    entry = [*(args.launcher or single_process_launcher(module=True)), "efficient_bert.train"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    il_losses = train_il_losses(args, entry) if uses_rho(args.methods) else None
    rows: list[Row] = []

    def add(method: str, hours: float, seed: int) -> None:
        row = Row(method, hours, seed, str(out / f"{hours}h" / f"{method}-s{seed}"))
        pretrain(row, args, entry, il_losses)
        if args.glue_dir:
            finetune(row, args)
        rows.append(row)
        write(rows, args)  # after every row: an interrupted table keeps what it has

    for hours in args.hours:
        for seed in args.seeds:
            add("baseline", hours, seed)
        for method in args.methods:
            if method != "baseline":
                add(method, hours, args.seeds[0])
        spread = seed_spread([r for r in rows if r.hours == hours and r.method == "baseline"])
        for line in summarize(rows, args.methods, hours):  # too close to tell apart with one seed
            if line["method"] != "baseline" and spread is not None and line["exceeds_seed_spread"] is False:
                for seed in args.seeds[1:]:
                    add(line["method"], hours, seed)
        try:
            report([r.folder for r in rows if r.hours == hours and r.seed == args.seeds[0] and r.run
                    and r.run["returncode"] == 0], out / f"{hours}h" / "report", overwrite=True)
        except ReportError as exc:
            print(f"[compare] no report for {hours} h: {exc}", file=sys.stderr)
    print((out / "compare.md").read_text())
    return 0 if all(r.run and r.run["returncode"] == 0 for r in rows) else 1


def write(rows: Sequence[Row], args: argparse.Namespace) -> None:
    out = Path(args.out)
    budgets = sorted({r.hours for r in rows})
    tables = {h: summarize(rows, [m for m in args.methods if any(r.method == m and r.hours == h for r in rows)], h)
              for h in budgets}
    spreads = {h: seed_spread([r for r in rows if r.hours == h and r.method == "baseline"]) for h in budgets}
    (out / "compare.md").write_text(markdown(tables, spreads, args))
    (out / "compare.json").write_text(json.dumps(
        {"recipe": args.recipe, "clock": args.clock, "data": args.data, "seeds": args.seeds,
         "tables": {str(h): t for h, t in tables.items()}, "seed_spreads": {str(h): s for h, s in spreads.items()},
         "rows": [asdict(r) for r in rows]}, indent=1))


if __name__ == "__main__":
    raise SystemExit(main())
