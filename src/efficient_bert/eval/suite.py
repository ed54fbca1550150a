"""Fine-tune a checkpoint on a set of GLUE/SuperGLUE tasks with several seeds and report the medians.

    efficient-bert finetune yamls/finetune/glue.yaml checkpoint=runs/demo-run/hf glue_dir=data/glue

Jobs are (task, seed) pairs. A task that starts from another (RTE, MRPC and STS-B from MNLI) waits
for that task's first seed, whose fine-tuned model is kept. With several GPUs the jobs run in
parallel, one process per GPU, each with its own progress bar; otherwise one after another.
Results: ``<results_dir>/<task>/seed-<s>/result.json`` per job, then ``results.json`` and
``results.md`` with the median over seeds per metric and the benchmark averages.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Optional, Sequence

from efficient_bert.config import check_keys, load_config
from efficient_bert.eval.job import MODEL_DIR, FinetuneJob
from efficient_bert.eval.readers import TaskDataError
from efficient_bert.eval.tasks import TASKS, DataSource, Recipe
from efficient_bert.registry import ConfigError, nearest

DEFAULT = "default"


@dataclass
class TaskOptions:
    """Per-task changes to the recipe (``tasks: {rte: {lr: 2e-5}}``); unset keys keep the recipe's."""

    epochs: Optional[float] = None
    lr: Optional[float] = None
    weight_decay: Optional[float] = None
    batch_size: Optional[int] = None
    max_seq_len: Optional[int] = None
    seeds: Optional[list[int]] = None
    warmup: Optional[float] = None
    start_from: Optional[str] = DEFAULT  # the recipe's; null: the pretrained checkpoint itself
    files: dict[str, str] = field(default_factory=dict)  # split -> file name, e.g. {dev: test.tsv}


@dataclass
class FinetuneConfig:
    run_name: str = "finetune"
    variables: dict[str, Any] = field(default_factory=dict)
    checkpoint: str = "???"  # HF export folder (ours or an HF BERT) or a Composer .pt checkpoint
    tokenizer: Optional[str] = None  # default: the checkpoint folder; required for a Composer .pt
    results_dir: str = "???"
    glue_dir: Optional[str] = None  # <glue_dir>/CoLA/train.tsv ... (the official layout)
    superglue_dir: Optional[str] = None  # <superglue_dir>/BoolQ/train.jsonl ...
    hf_cache: bool = False  # read tasks missing locally from the HF datasets cache (offline)
    skip_bad_rows: bool = False
    tasks: dict[str, Any] = field(default_factory=dict)  # task name -> TaskOptions ({} = the recipe)
    seeds: Optional[list[int]] = None  # replaces every task's seeds
    model: dict[str, Any] = field(default_factory=dict)  # model config changes, e.g. hidden_dropout_prob
    device: Optional[str] = None
    precision: Optional[str] = None
    parallel: Optional[bool] = None  # default: in parallel when several GPUs are visible
    gpus: Optional[list[int]] = None  # default: every visible GPU
    max_train_examples: Optional[int] = None  # caps for quick pipeline checks
    max_eval_examples: Optional[int] = None
    average_excludes: list[str] = field(default_factory=lambda: ["wnli"])  # as in BERT
    resume: bool = False  # keep the results of jobs already finished in results_dir
    overwrite: bool = False
    progress_bar: bool = True


def load_finetune_config(paths: Sequence[str], overrides: Sequence[str] = ()) -> FinetuneConfig:
    # a later YAML's or a whole `tasks={...}` override's task list replaces the earlier one;
    # `tasks.rte.lr=...` edits it
    cfg = load_config(list(paths), overrides, schema=FinetuneConfig, replaced_sections=("tasks",))
    if not cfg.tasks:
        raise ConfigError("tasks: is empty; list the tasks to run, e.g. tasks: {rte: {}, mrpc: {}}")
    for name, options in cfg.tasks.items():
        if name not in TASKS:
            raise ConfigError(f"unknown task '{name}'{nearest(name, TASKS)}; available: {', '.join(TASKS)}")
        check_keys(options or {}, TaskOptions, f"tasks.{name}")
        cfg.tasks[name] = TaskOptions(**(options or {}))
        start = cfg.tasks[name].start_from
        if start not in (None, DEFAULT) and start not in TASKS:
            raise ConfigError(f"tasks.{name}.start_from: unknown task '{start}'")
    for name in cfg.average_excludes:
        if name not in TASKS:
            raise ConfigError(f"average_excludes: unknown task '{name}'{nearest(name, TASKS)}")
    return cfg


def recipe_for(cfg: FinetuneConfig, name: str) -> Recipe:
    options, recipe = cfg.tasks[name], TASKS[name].recipe
    changes = {k: v for k, v in asdict(options).items()
               if k in Recipe.__dataclass_fields__ and k != "start_from" and v is not None}
    if cfg.seeds is not None:
        changes["seeds"] = cfg.seeds
    if "seeds" in changes:
        changes["seeds"] = tuple(changes["seeds"])
    if options.start_from != DEFAULT:
        changes["start_from"] = options.start_from
    return replace(recipe, **changes)


def source_of(cfg: FinetuneConfig) -> DataSource:
    return DataSource(cfg.glue_dir, cfg.superglue_dir, cfg.hf_cache, cfg.skip_bad_rows,
                      {n: dict(o.files) for n, o in cfg.tasks.items() if o.files})


def plan(cfg: FinetuneConfig) -> list[FinetuneJob]:
    """Every (task, seed) job, each start_from source before the tasks that need it."""
    recipes = {name: recipe_for(cfg, name) for name in cfg.tasks}
    for name, recipe in recipes.items():
        if recipe.start_from is not None and recipe.start_from not in recipes:
            raise ConfigError(f"{name} starts from the {recipe.start_from}-fine-tuned model, but {recipe.start_from} "
                              f"is not in tasks: add it, or set tasks.{name}.start_from: null to start from the "
                              "pretrained checkpoint")
    sources = {r.start_from for r in recipes.values() if r.start_from}
    order = sorted(recipes, key=lambda n: (n not in sources, list(recipes).index(n)))
    results = Path(cfg.results_dir)
    jobs = []
    for name in order:
        recipe = recipes[name]
        for i, seed in enumerate(recipe.seeds):
            start = recipe.start_from
            checkpoint = (str(results / start / f"seed-{recipes[start].seeds[0]}" / MODEL_DIR) if start
                          else cfg.checkpoint)
            jobs.append(FinetuneJob(
                task=name, seed=seed, checkpoint=checkpoint, out_dir=str(results / name / f"seed-{seed}"),
                tokenizer=cfg.tokenizer if not start else None, recipe=recipe, model_overrides=dict(cfg.model),
                save_model=name in sources and i == 0, device=cfg.device, precision=cfg.precision,
                max_train_examples=cfg.max_train_examples, max_eval_examples=cfg.max_eval_examples,
                progress_bar=cfg.progress_bar))
    return jobs


def check_inputs(cfg: FinetuneConfig, jobs: list[FinetuneJob]) -> None:
    """Fail before any training on missing data, a missing checkpoint or results that would be replaced."""
    source = source_of(cfg)
    for name in cfg.tasks:
        for split in ["train", *TASKS[name].eval_splits]:
            source.locate(TASKS[name], split)
    if not Path(cfg.checkpoint).exists():
        raise ConfigError(f"checkpoint not found: {cfg.checkpoint} (an HF export folder or a Composer .pt)")
    if Path(cfg.checkpoint).is_file() and cfg.tokenizer is None:
        raise ConfigError(f"checkpoint {cfg.checkpoint} is a Composer checkpoint, which carries no tokenizer: set "
                          "tokenizer=<the tokenizer folder used in pretraining>")
    # only finished results are protected: the leftovers of failed jobs never block their own rerun
    kept = [j for j in jobs if finished(j) is not None]
    if kept and not (cfg.resume or cfg.overwrite):
        raise ConfigError(f"results_dir {cfg.results_dir} holds {len(kept)} finished job(s) ({kept[0].task} seed "
                          f"{kept[0].seed}, ...); set resume=true to keep them, overwrite=true to redo them, or "
                          "choose another results_dir")


def model_dir(job: FinetuneJob) -> str:
    return str(Path(job.out_dir) / MODEL_DIR)


def finished(job: FinetuneJob) -> Optional[dict[str, Any]]:
    path = Path(job.out_dir) / "result.json"
    if not path.is_file() or (job.save_model and not (Path(model_dir(job)) / "config.json").is_file()):
        return None
    return json.loads(path.read_text())


def visible_gpus(cfg: FinetuneConfig) -> list[int]:
    if cfg.gpus is not None:
        return list(cfg.gpus)
    import torch

    return list(range(torch.cuda.device_count())) if cfg.device != "cpu" else []


def run_parallel(jobs: list[FinetuneJob], source: DataSource, gpus: list[int]) -> dict[int, dict[str, Any]]:
    """One subprocess per job, one job per GPU at a time; a job starts when its source is done."""
    results: dict[int, dict[str, Any]] = {}
    pending = list(range(len(jobs)))
    running: dict[int, tuple[subprocess.Popen, int]] = {}  # gpu -> (process, job index)
    model_of = {model_dir(j): i for i, j in enumerate(jobs) if j.save_model}
    needs = {i: model_of.get(j.checkpoint) for i, j in enumerate(jobs)}
    source_file = Path(jobs[0].out_dir).parents[1] / "source.json"
    source_file.write_text(json.dumps(asdict(source)))
    while pending or running:
        for gpu, (proc, i) in list(running.items()):
            if proc.poll() is not None:
                del running[gpu]
                where = f"{jobs[i].out_dir}/log.txt" + (" and the terminal" if jobs[i].progress_bar else "")
                results[i] = finished(jobs[i]) or {"task": jobs[i].task, "seed": jobs[i].seed,
                                                   "error": f"exit code {proc.returncode}; see {where}"}
        for i in list(pending):
            dep = needs[i]
            if dep is not None and dep in results and "error" in results[dep]:
                pending.remove(i)
                results[i] = {"task": jobs[i].task, "seed": jobs[i].seed,
                              "error": f"its source {jobs[dep].task} failed"}
        free = [g for g in gpus if g not in running]
        for gpu in free:
            ready = next((i for i in pending if needs[i] is None or needs[i] in results), None)
            if ready is None:
                break
            pending.remove(ready)
            job = replace(jobs[ready], progress_position=gpus.index(gpu))
            out = Path(job.out_dir)
            out.mkdir(parents=True, exist_ok=True)
            (out / "job.json").write_text(json.dumps(job.to_json()))
            env = {**os.environ, "CUDA_VISIBLE_DEVICES": str(gpu)}
            log = open(out / "log.txt", "w")
            proc = subprocess.Popen([sys.executable, "-m", "efficient_bert.eval.finetune", str(out / "job.json"),
                                     str(source_file)], env=env, stdout=log, stderr=subprocess.STDOUT
                                    if not job.progress_bar else None)
            running[gpu] = (proc, ready)
        time.sleep(0.5)
    return results


def run_serial(jobs: list[FinetuneJob], source: DataSource) -> dict[int, dict[str, Any]]:
    from efficient_bert.eval.finetune import run_job  # torch and Composer: only once there is work

    results: dict[int, dict[str, Any]] = {}
    failed_models: set[str] = set()
    for i, job in enumerate(jobs):
        if job.checkpoint in failed_models:
            results[i] = {"task": job.task, "seed": job.seed, "error": "its source task failed"}
            continue
        try:
            results[i] = run_job(job, source)
        except (TaskDataError, ValueError, FileNotFoundError) as exc:
            if job.save_model:
                failed_models.add(model_dir(job))
            results[i] = {"task": job.task, "seed": job.seed, "error": f"{type(exc).__name__}: {exc}"}
    return results


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


def run_suite(cfg: FinetuneConfig) -> dict[str, Any]:
    jobs = plan(cfg)
    check_inputs(cfg, jobs)
    results_dir = Path(cfg.results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    done = {i: r for i, j in enumerate(jobs) if cfg.resume and (r := finished(j)) is not None}
    todo = [j for i, j in enumerate(jobs) if i not in done]
    gpus = visible_gpus(cfg)
    parallel = cfg.parallel if cfg.parallel is not None else len(gpus) > 1
    print(f"[efficient-bert] {len(jobs)} fine-tuning jobs ({len(done)} already done), "
          f"{'in parallel on GPUs ' + ','.join(map(str, gpus)) if parallel and todo else 'one at a time'}",
          file=sys.stderr)
    source = source_of(cfg)
    if todo:
        ran = run_parallel(todo, source, gpus) if parallel else run_serial(todo, source)
        fresh = iter(ran[k] for k in sorted(ran))
        results = [done[i] if i in done else next(fresh) for i in range(len(jobs))]
    else:
        results = [done[i] for i in range(len(jobs))]
    summary = summarize(results, cfg.average_excludes)
    summary["checkpoint"] = cfg.checkpoint
    (results_dir / "results.json").write_text(json.dumps(summary, indent=2))
    (results_dir / "results.md").write_text(to_markdown(summary, f"{cfg.run_name}: {cfg.checkpoint}"))
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
        summary = run_suite(cfg)
    except (ConfigError, TaskDataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print((Path(cfg.results_dir) / "results.md").read_text())
    failed = [e for t in summary["tasks"].values() for e in t["errors"]]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
