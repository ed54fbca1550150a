"""Quality per budget: train named configs one after another at an equal training budget, compare eval MLM loss.

Every run goes through the normal path, ``composer -n 1 main.py <yamls> <overrides>``, into
``OUT/<name>/`` (its metrics, eval history, checkpoint and HF export, as any run writes them). All runs
get the same budget, data, tokenizer and evaluation: the same held-out rows, masked by a fixed seed
(``eval_loader.dataset.mask_seed``), so every run's eval loss is measured on identical masks. Then it
prints, per run: steps, tokens, tokens/s over the budget's training clock, the final eval MLM loss and
masked accuracy, and the eval set's unigram floor (the best loss of a model that knows only token
frequencies, :mod:`efficient_bert.model.unigram_floor`). It writes ``OUT/quality.md`` (the table and
each run's exact command) and ``OUT/quality.json``, and runs ``efficient-bert report`` over the run
folders (``OUT/report/``: loss-vs-time and loss-vs-tokens plots). A script, not a test: run it on a GPU.

    python bench/quality.py --out runs/quality-3min --hours 0.05 \\
        --data runs/enwiki-mds --tokenizer runs/enwiki-tok \\
        --run "ours=yamls/pretrain/mosaic-bert-budget.yaml" \\
        --run "ours-lr2e-3=yamls/pretrain/mosaic-bert-budget.yaml optimizer.lr=2e-3" \\
        --run "hf=yamls/pretrain/mosaic-bert-budget.yaml yamls/pretrain/hf-bert-budget.yaml"

A run whose folder already holds its result is skipped (rerun the same command after an interruption);
a folder without one (a killed run) is moved aside, with its log, and the run starts again.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Optional, Sequence

from efficient_bert.tools.experiments import RunResult, equal_footing, parse_run, run_config, single_process_launcher
from efficient_bert.tools.report import ReportError, fmt, report

ROOT = Path(__file__).resolve().parents[1]


def common_overrides(args: argparse.Namespace) -> list[str]:
    """What every run shares: data, tokenizer, budget and the fixed evaluation."""
    return equal_footing(args.data, args.tokenizer, args.hours, args.eval_mask_seed, args.eval_mlm_probability,
                         args.eval_batches) + list(args.override)


def table(results: Sequence[RunResult]) -> str:
    lines = ["| run | steps | tokens | tok/s | eval loss | masked acc | unigram floor | loss − floor | compile s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        gap = None if r.eval_loss is None or r.unigram_floor is None else r.eval_loss - r.unigram_floor
        acc = None if r.masked_accuracy is None else 100 * r.masked_accuracy
        status = "" if r.returncode == 0 else f" (exit {r.returncode})"
        lines.append(f"| {r.name}{status} | {fmt(r.steps, ',')} | {fmt(r.tokens, ',')} | "
                     f"{fmt(r.tokens_per_second, ',.0f')} | {fmt(r.eval_loss, '.4f')} | {fmt(acc, '.2f')}% | "
                     f"{fmt(r.unigram_floor, '.4f')} | {fmt(gap, '+.4f')} | {fmt(r.compile_seconds, '.0f')} |")
    return "\n".join(lines)


def write_outputs(results: Sequence[RunResult], args: argparse.Namespace) -> None:
    out = Path(args.out)
    setup = (f"budget {args.hours} h per run" if args.hours is not None else "each YAML's own budget") + \
        f"; eval: mask seed {args.eval_mask_seed}, masking {args.eval_mlm_probability}, batches {args.eval_batches}"
    md = [f"# Quality per budget ({setup})", "", table(results), "", "Commands:", ""]
    md += [f"- `{r.name}`: `{r.command}`" for r in results]
    (out / "quality.md").write_text("\n".join(md) + "\n")
    (out / "quality.json").write_text(json.dumps(
        {"hours": args.hours, "eval_mask_seed": args.eval_mask_seed, "eval_mlm_probability": args.eval_mlm_probability,
         "eval_batches": args.eval_batches,
         "results": [{**asdict(r), "tokens_per_second": r.tokens_per_second} for r in results]}, indent=1))
    finished = [str(out / r.name) for r in results if r.eval_loss is not None]
    if finished:
        try:
            report(finished, out / "report", overwrite=True)
        except ReportError as exc:
            print(f"[quality] no report: {exc}", file=sys.stderr)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=parse_run, action="append", required=True, metavar="NAME=ARGS",
                        help="a named config: YAML files and key=value overrides, as main.py takes them (repeat)")
    parser.add_argument("--out", required=True, help="folder for every run's folder, the table and the report")
    parser.add_argument("--hours", type=float, help="the training budget of every run (budget.hours)")
    parser.add_argument("--data", help="MDS root with train/ and validation/ (convert_c4.py)")
    parser.add_argument("--tokenizer", help="tokenizer folder (efficient-bert train-tokenizer)")
    parser.add_argument("--eval-mask-seed", type=int, default=2024, help="masking seed of the held-out set")
    parser.add_argument("--eval-mlm-probability", type=float, default=0.30)
    parser.add_argument("--eval-batches", type=int, default=-1, help="eval batches per evaluation (-1: all)")
    parser.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                        help="a key=value for every run (repeat)")
    parser.add_argument("--launcher", type=shlex.split, default=None,
                        help="command that starts main.py (default: 'composer -n 1')")
    args = parser.parse_args(argv)
    names = [r.name for r in args.run]
    if len(set(names)) != len(names):
        parser.error(f"run names must be unique: {names}")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    entry = [*(args.launcher or single_process_launcher()), os.path.relpath(ROOT / "main.py")]
    results = []
    for spec in args.run:
        results.append(run_config(spec, Path(args.out), entry, common_overrides(args), tag="quality"))
        write_outputs(results, args)  # after every run, so an interrupted sweep keeps its table
    print(table(results))
    return 0 if all(r.returncode == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
