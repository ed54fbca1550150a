"""Which fine-tuning jobs a suite runs and how: the (task, seed) plan, the checks before any job starts,
and running the jobs one after another or in parallel, one process per GPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Optional

from efficient_bert.eval.finetune_config import FinetuneConfig, recipe_for, source_of
from efficient_bert.eval.job import MODEL_DIR, FinetuneJob
from efficient_bert.eval.readers import TaskDataError
from efficient_bert.eval.summary import job_line
from efficient_bert.eval.tasks import TASKS, DataSource
from efficient_bert.errors import ConfigError


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
                progress_bar=sys.stderr.isatty() if cfg.progress_bar is None else cfg.progress_bar))
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


def slots_of(gpus: list[int], jobs_per_gpu: int) -> list[int]:
    """The GPU of every job slot: each GPU ``jobs_per_gpu`` times (small fine-tuning jobs leave a GPU
    mostly idle, so several share one)."""
    if jobs_per_gpu < 1:
        raise ConfigError(f"jobs_per_gpu must be at least 1, got {jobs_per_gpu}")
    return [gpu for gpu in gpus for _ in range(jobs_per_gpu)]


def job_error(log: Path) -> Optional[str]:
    """The one-line error a failed job printed last (``error: ...``), if it printed one."""
    if not log.is_file():
        return None
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.startswith("error: ")]
    return lines[-1][len("error: "):] if lines else None


def record(results: dict[int, dict[str, Any]], i: int, result: dict[str, Any]) -> None:
    """Keep a job's result and say it in one line: a suite of many seeds is not minutes of silence."""
    results[i] = result
    print(f"[efficient-bert] {job_line(result)}", file=sys.stderr, flush=True)


def run_parallel(jobs: list[FinetuneJob], source: DataSource, slots: list[int]) -> dict[int, dict[str, Any]]:
    """One subprocess per job, one job per slot at a time (``slots`` holds each slot's GPU; a GPU may
    appear several times); a job starts when its source is done."""
    results: dict[int, dict[str, Any]] = {}
    pending = list(range(len(jobs)))
    running: dict[int, tuple[subprocess.Popen, int]] = {}  # slot -> (process, job index)
    model_of = {model_dir(j): i for i, j in enumerate(jobs) if j.save_model}
    needs = {i: model_of.get(j.checkpoint) for i, j in enumerate(jobs)}
    source_file = Path(jobs[0].out_dir).parents[1] / "source.json"
    source_file.write_text(json.dumps(asdict(source)))
    threads = str(max(1, (os.cpu_count() or 1) // len(slots)))  # the host's cores, shared among the slots
    while pending or running:
        for slot, (proc, i) in list(running.items()):
            if proc.poll() is not None:
                del running[slot]
                where = f"{jobs[i].out_dir}/log.txt" + (" and the terminal" if jobs[i].progress_bar else "")
                record(results, i, finished(jobs[i]) or {"task": jobs[i].task, "seed": jobs[i].seed,
                                                         "error": job_error(Path(jobs[i].out_dir) / "log.txt") or
                                                         f"exit code {proc.returncode}; see {where}"})
        for i in list(pending):
            dep = needs[i]
            if dep is not None and dep in results and "error" in results[dep]:
                pending.remove(i)
                record(results, i, {"task": jobs[i].task, "seed": jobs[i].seed,
                                    "error": f"its source {jobs[dep].task} failed"})
        for slot in [s for s in range(len(slots)) if s not in running]:
            ready = next((i for i in pending if needs[i] is None or needs[i] in results), None)
            if ready is None:
                break
            pending.remove(ready)
            job = replace(jobs[ready], progress_position=slot)
            out = Path(job.out_dir)
            out.mkdir(parents=True, exist_ok=True)
            (out / "job.json").write_text(json.dumps(job.to_json()))
            env = {**os.environ, "CUDA_VISIBLE_DEVICES": str(slots[slot]), "OMP_NUM_THREADS": threads}
            log = open(out / "log.txt", "w")
            proc = subprocess.Popen([sys.executable, "-m", "efficient_bert.eval.finetune", str(out / "job.json"),
                                     str(source_file)], env=env, stdout=log, stderr=subprocess.STDOUT
                                    if not job.progress_bar else None)
            running[slot] = (proc, ready)
        time.sleep(0.5)
    return results


def run_serial(jobs: list[FinetuneJob], source: DataSource) -> dict[int, dict[str, Any]]:
    from efficient_bert.eval.finetune import run_job  # torch and Composer: only once there is work

    results: dict[int, dict[str, Any]] = {}
    failed_models: set[str] = set()
    for i, job in enumerate(jobs):
        if job.checkpoint in failed_models:
            record(results, i, {"task": job.task, "seed": job.seed, "error": "its source task failed"})
            continue
        try:
            record(results, i, run_job(job, source))
        except (TaskDataError, ValueError, FileNotFoundError) as exc:
            if job.save_model:
                failed_models.add(model_dir(job))
            record(results, i, {"task": job.task, "seed": job.seed, "error": f"{type(exc).__name__}: {exc}"})
    return results
