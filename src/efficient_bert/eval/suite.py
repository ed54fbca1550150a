"""Fine-tune a checkpoint on a set of GLUE/SuperGLUE tasks with several seeds and report the medians.

    efficient-bert finetune yamls/finetune/glue.yaml checkpoint=runs/demo-run/hf glue_dir=data/glue

Jobs are (task, seed) pairs. A task that starts from another (RTE, MRPC and STS-B from MNLI) waits
for that task's first seed, whose fine-tuned model is kept. With several GPUs, or ``jobs_per_gpu``
above 1, the jobs run in parallel, one process per slot (each GPU ``jobs_per_gpu`` times), each with
its own progress bar; otherwise one after another.
Results: ``<results_dir>/<task>/seed-<s>/result.json`` per job, then ``results.json`` and
``results.md`` with the median over seeds per metric and the benchmark averages. When the checkpoint is
an export of ours, its model card (``README.md``) gets the same table and the command.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

from efficient_bert import model_card
from efficient_bert.eval.finetune_config import FinetuneConfig, load_finetune_config, source_of
from efficient_bert.eval.readers import TaskDataError
from efficient_bert.eval.scheduling import (check_inputs, finished, plan, run_parallel, run_serial, slots_of,
                                           visible_gpus)
from efficient_bert.eval.summary import summarize, to_markdown
from efficient_bert.errors import ConfigError


def run_suite(cfg: FinetuneConfig, command: Optional[str] = None) -> dict[str, Any]:
    """Every job of ``cfg``; ``command`` (the one that ran it) goes into the checkpoint's model card."""
    jobs = plan(cfg)
    check_inputs(cfg, jobs)
    results_dir = Path(cfg.results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    done = {i: r for i, j in enumerate(jobs) if cfg.resume and (r := finished(j)) is not None}
    todo = [j for i, j in enumerate(jobs) if i not in done]
    gpus = visible_gpus(cfg)
    slots = slots_of(gpus, cfg.jobs_per_gpu)
    parallel = cfg.parallel if cfg.parallel is not None else len(slots) > 1
    where = f"{len(slots)} at a time on GPUs {','.join(map(str, gpus))}" if parallel and slots else "one at a time"
    print(f"[efficient-bert] {len(jobs)} fine-tuning jobs ({len(done)} already done), {where if todo else ''}",
          file=sys.stderr)
    source = source_of(cfg)
    if todo:
        ran = run_parallel(todo, source, slots) if parallel and slots else run_serial(todo, source)
        fresh = iter(ran[k] for k in sorted(ran))
        results = [done[i] if i in done else next(fresh) for i in range(len(jobs))]
    else:
        results = [done[i] for i in range(len(jobs))]
    summary = summarize(results, cfg.average_excludes)
    summary["checkpoint"] = cfg.checkpoint
    (results_dir / "results.json").write_text(json.dumps(summary, indent=2))
    markdown = to_markdown(summary, f"{cfg.run_name}: {cfg.checkpoint}")
    (results_dir / "results.md").write_text(markdown)
    card = Path(cfg.checkpoint)
    if command and card.is_dir() and model_card.add_results(card, markdown, command):
        print(f"[efficient-bert] results added to the model card {card / model_card.CARD}", file=sys.stderr)
    return summary


def main(argv: Optional[Sequence[str]] = None) -> int:
    import argparse
    import logging

    parser = argparse.ArgumentParser(prog="efficient-bert finetune",
                                     description="Fine-tune and evaluate a checkpoint on GLUE/SuperGLUE tasks.",
                                     epilog="e.g. efficient-bert finetune yamls/finetune/glue.yaml "
                                            "checkpoint=runs/x/hf glue_dir=data/glue results_dir=runs/x/glue")
    parser.add_argument("args", nargs="+", metavar="YAML_OR_OVERRIDE")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    try:
        cfg = load_finetune_config([a for a in args.args if "=" not in a], [a for a in args.args if "=" in a])
        summary = run_suite(cfg, shlex.join(["efficient-bert", "finetune", *args.args]))
    except (ConfigError, TaskDataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print((Path(cfg.results_dir) / "results.md").read_text())
    failed = [e for t in summary["tasks"].values() for e in t["errors"]]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
