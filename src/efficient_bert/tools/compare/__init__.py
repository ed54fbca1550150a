"""``efficient-bert compare``: every efficient-training method against the baseline at equal budget.

    efficient-bert compare run --records results/compare --out runs/compare --data MDS --tokenizer TOK \\
        --hours 0.05 --glue-dir GLUE --time-limit 25
    efficient-bert compare table --records results/compare --out docs/results.md

``run`` trains the rows that have no valid record yet (:mod:`.run`) and writes one record per row
(:mod:`.records`); ``table`` rebuilds the table, its verdicts (:mod:`.verdict`) and plots from the
records alone (:mod:`.table`). Run both from the repository root: the YAMLs are read from ``yamls/``.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Optional, Sequence

from efficient_bert.tools.compare.methods import BASELINE, METHODS, layers_of, parse_method, uses_rho


def check_inputs(args: argparse.Namespace) -> None:
    """Everything a row needs, before the first one runs."""
    needed = [args.recipe, args.clock, args.glue_yaml if args.glue_dir else None,
              *(p for m in args.methods for p in layers_of(m, args.yamls))]
    missing = [str(p) for p in needed if p is not None and not Path(p).is_file()]
    if missing:
        raise SystemExit(f"error: {missing[0]} does not exist: run from the repository root or pass --yamls, "
                         "--recipe, --clock and --glue-yaml")
    if BASELINE not in args.methods:
        raise SystemExit("error: --methods needs baseline: every difference is measured against it")
    if len(set(args.methods)) != len(args.methods):
        raise SystemExit(f"error: --methods must be unique: {' '.join(args.methods)}")
    if any(uses_rho(m) for m in args.methods) and not (Path(args.data) / "holdout").is_dir():
        raise SystemExit(f"error: rho-loss trains its irreducible-loss model on the holdout split and {args.data} "
                         "has none: convert documents the train split lacks into it (convert_c4.py --files DOCS "
                         f"--splits holdout --out_root {args.data} ...), or convert anew with --holdout_fraction 0.2")
    if args.glue_dir and not Path(args.glue_dir).is_dir():
        raise SystemExit(f"error: --glue-dir {args.glue_dir} does not exist")
    if args.il_epochs < 1:
        raise SystemExit(f"error: --il-epochs {args.il_epochs} must be at least 1")
    if not 1 <= args.method_seeds <= len(args.seeds):
        raise SystemExit(f"error: --method-seeds {args.method_seeds} must be between 1 and the {len(args.seeds)} "
                         "--seeds")
    for path, what in ((args.data, "--data"), (args.tokenizer, "--tokenizer")):
        if not Path(path).is_dir():
            raise SystemExit(f"error: {what} {path} does not exist")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="efficient-bert compare", description=__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = top.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="train and record the rows that have no valid record")
    run.add_argument("--records", default="results/compare", help="the records folder (default: results/compare)")
    run.add_argument("--out", required=True, help="working folder: every run's checkpoints, exports and logs")
    run.add_argument("--data", required=True, help="local MDS root with train/, validation/ (and holdout/)")
    run.add_argument("--tokenizer", required=True, help="tokenizer folder (efficient-bert train-tokenizer)")
    run.add_argument("--hours", type=float, nargs="+", required=True, help="budgets, in reference hours")
    run.add_argument("--seeds", type=int, nargs="+", default=[17, 18, 19], help="the baseline's seeds")
    run.add_argument("--method-seeds", type=int, default=2,
                     help="how many of --seeds every other method runs (default 2: see docs/compare.md)")
    run.add_argument("--methods", type=parse_method, nargs="+", default=list(METHODS),
                     help=f"rows, in order (default: all of {', '.join(METHODS)}); join methods with '+'")
    run.add_argument("--yamls", default="yamls", help="the folder of the method YAMLs (default: ./yamls)")
    run.add_argument("--recipe", default="yamls/pretrain/mosaic-bert-budget.yaml")
    run.add_argument("--clock", default="yamls/budget/reference-clock.yaml", help="the budget's clock and table")
    run.add_argument("--eval-mask-seed", type=int, default=2024)
    run.add_argument("--eval-every", type=float, default=0.1, help="evaluate every this fraction of the budget")
    run.add_argument("--override", action="append", default=[], metavar="KEY=VALUE", help="for every run")
    run.add_argument("--glue-dir", help="GLUE task folders; without it no row is fine-tuned")
    run.add_argument("--glue-yaml", default="yamls/finetune/glue-compare.yaml")
    run.add_argument("--glue-override", action="append", default=[], metavar="KEY=VALUE")
    run.add_argument("--glue-concurrent", type=int, default=2, help="GLUE suites running at once (default 2)")
    run.add_argument("--il-epochs", type=int, default=4,
                     help="RHO-loss: epochs of training masks the irreducible losses are computed for")
    run.add_argument("--time-limit", type=float, metavar="MINUTES",
                     help="start a row only when it is estimated to end within this many minutes")
    run.add_argument("--rerun-stale", action="store_true",
                     help="retrain rows whose record has other inputs (the old record moves to superseded/)")
    run.add_argument("--strict-code", action="store_true", help="treat a record of other code as stale")
    run.add_argument("--code-commit", help="the git commit of the code, where the checkout has no git history")
    run.add_argument("--dry-run", action="store_true", help="list what would run, and estimates; train nothing")
    run.add_argument("--launcher", type=shlex.split, default=None,
                     help="command that runs a Python module as one training process (default: 'composer -n 1 -m')")
    table = commands.add_parser("table", help="the table, verdicts and plots from the records")
    table.add_argument("--records", default="results/compare")
    table.add_argument("--out", default="docs/results.md", help="the markdown file (plots go beside it)")
    table.add_argument("--alpha", type=float, default=0.05, help="family-wise error rate of the verdicts per budget")
    return top


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "table":
        from efficient_bert.tools.compare.table import write

        print(f"[compare] wrote {write(args.records, args.out, args.alpha)}")
        return 0
    check_inputs(args)
    from efficient_bert.tools.compare.run import main as run_main

    code = run_main(args)
    if code != 2 and not args.dry_run:
        from efficient_bert.tools.compare.table import markdown
        from efficient_bert.tools.compare.records import all_records

        rows = list(all_records(args.records))
        if rows:
            out = Path(args.out) / "compare.md"
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(markdown(rows, out.parent / "compare", out.parent, args.records))
            print(out.read_text())
    return code


if __name__ == "__main__":
    sys.exit(main())
