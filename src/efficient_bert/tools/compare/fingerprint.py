"""What decides a comparison row's result, gathered into one JSON-able dict and hashed.

A row's *inputs* are: its training config resolved from every YAML and override (with the keys that
only say where files go or what is printed left out, and paths replaced by what they point to), the
cost table its clock charges from, the data (the hash of every shard of each split it reads), the
tokenizer (its vocabulary), the irreducible-loss recipe for RHO-loss, and the GLUE recipe with the
hashes of the task files. The fingerprint is a hash of the inputs; a record whose fingerprint
differs from the one a command would produce is stale, and :func:`differences` says where.

The code is recorded beside the inputs (a hash of the library's sources, and the commit when
known), not hashed into the fingerprint: a table is built over many sessions of GPU time, and a
fingerprint that changed with every commit would throw every earlier row away. ``compare`` shows
rows that other code trained, and ``--strict-code`` refuses them instead.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any, Optional, Sequence

# training config keys that say where things go or what is shown, not what is trained
NOT_DECIDING = ("run_name", "variables", "save_folder", "save_interval", "save_num_checkpoints_to_keep",
                "save_overwrite", "autoresume", "load_path", "progress_bar", "log_to_console",
                "console_log_interval", "loggers", "callbacks", "dist_timeout")
LOADER_NOT_DECIDING = ("num_workers", "pin_memory", "prefetch_factor", "persistent_workers", "timeout")
DATASET_PATHS = ("local", "remote", "predownload", "cache_limit")


def digest(value: Any) -> str:
    """A short sha256 of ``value``'s canonical JSON."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def file_digest(path: str | Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()[:16]


def training_config(yamls: Sequence[str], overrides: Sequence[str]) -> dict[str, Any]:
    """What main.py's arguments set, resolved, as it decides the result. The schema's defaults are left
    out: they belong to the code, which is recorded beside the inputs."""
    from efficient_bert.pretrain.schema import user_settings

    config = user_settings(yamls, overrides)
    for key in NOT_DECIDING:
        config.pop(key, None)
    for loader in ("train_loader", "eval_loader"):
        if config.get(loader):
            for key in LOADER_NOT_DECIDING:
                config[loader].pop(key, None)
            for key in DATASET_PATHS:
                config[loader].get("dataset", {}).pop(key, None)
    config.pop("tokenizer", None)  # the tokenizer's vocabulary stands for its path
    budget = config.get("budget") or {}
    if budget.get("cost_table"):
        budget["cost_table"] = cost_table_inputs(budget["cost_table"], optimizer_class(config.get("optimizer")))
    rho = (config.get("algorithms") or {}).get("rho_loss")
    if isinstance(rho, dict):
        rho.pop("il_losses", None)  # the irreducible-loss recipe stands for its file
    return config


def optimizer_class(section: Optional[dict[str, Any]]) -> str:
    """The class an ``optimizer`` section builds (what the cost table prices its steps by)."""
    import dataclasses

    import torch

    from efficient_bert.pretrain.schema import TrainConfig

    if section is None:
        section = next(f for f in dataclasses.fields(TrainConfig) if f.name == "optimizer").default_factory()

    from efficient_bert.pretrain.build import build_named
    from efficient_bert.pretrain.components import OPTIMIZERS

    return type(build_named(OPTIMIZERS, section, "optimizer", params=[torch.nn.Parameter(torch.zeros(1))])).__name__


def cost_table_inputs(path: str | Path, optimizer: str) -> dict[str, Any]:
    """What the reference clock charges a run of ``optimizer`` from a cost table: the pass prices and
    that optimizer's step surcharge (the prices of other optimizers do not enter)."""
    from efficient_bert.budget.cost_table import CostTable

    table = CostTable.load(path)
    charged = {"model": table.model, "seq_len": table.seq_len, "rows": table.rows, "train": table.train,
               "forward": table.forward, "step_surcharge": table.step_surcharge(optimizer)}
    return {"digest": digest(charged), "optimizer": optimizer}


def split_digest(root: str | Path, split: str) -> dict[str, Any]:
    """The shards of one MDS split: their count, rows, and a hash of every shard's sha1 from ``index.json``
    (the file's own hash when a shard has none). The sha1 is of a shard's content before compression:
    two builds of the compressor write different bytes for the same rows."""
    folder = Path(root) / split
    index_path = folder / "index.json"
    if not index_path.is_file():
        raise FileNotFoundError(f"{folder} has no index.json: convert the corpus with convert_c4.py first")
    shards = json.loads(index_path.read_text())["shards"]
    hashes = []
    for shard in shards:
        raw = shard["raw_data"]
        sha1 = (raw.get("hashes") or {}).get("sha1")
        if sha1 is None:
            stored = shard.get("zip_data") or raw
            sha1 = file_digest(folder / stored["basename"])
        hashes.append([raw["basename"], sha1])
    return {"shards": len(shards), "rows": sum(int(s.get("samples", 0)) for s in shards), "digest": digest(hashes)}


def data_inputs(root: str | Path, splits: Sequence[str]) -> dict[str, Any]:
    return {split: split_digest(root, split) for split in splits}


def tokenizer_inputs(path: str | Path) -> dict[str, Any]:
    from efficient_bert.data.tokenizer import load_tokenizer, vocabulary_digest

    tokenizer = load_tokenizer(path)
    return {"vocabulary": vocabulary_digest(tokenizer), "size": len(tokenizer)}


def glue_inputs(glue_yaml: str, overrides: Sequence[str], glue_dir: str) -> dict[str, Any]:
    """The fine-tuning recipe of every task (as ``efficient-bert finetune`` resolves it) and the
    hashes of the files each task reads."""
    from dataclasses import asdict

    from efficient_bert.eval.finetune_config import load_finetune_config, recipe_for, source_of
    from efficient_bert.eval.tasks import TASKS

    cfg = load_finetune_config([glue_yaml], [*overrides, "checkpoint=unused", "results_dir=unused", f"glue_dir={glue_dir}"])
    source = source_of(cfg)
    tasks = {}
    for name in cfg.tasks:
        files = {}
        for split in ["train", *TASKS[name].eval_splits]:
            kind, where = source.locate(TASKS[name], split)
            files[split] = file_digest(where) if kind == "file" else f"{kind}:{where}"
        tasks[name] = {"recipe": asdict(recipe_for(cfg, name)), "files": files}
    return {"tasks": tasks, "model": dict(cfg.model), "max_train_examples": cfg.max_train_examples,
            "max_eval_examples": cfg.max_eval_examples, "precision": cfg.precision}


def source_digest() -> str:
    """A hash of the library's Python sources and shipped YAMLs, wherever they are installed."""
    package = Path(__file__).resolve().parents[1]
    entries = [[str(f.relative_to(package.parent)), file_digest(f)] for f in sorted(package.rglob("*.py"))]
    yamls = package.parents[1] / "yamls"
    if yamls.is_dir():
        entries += [[str(f.relative_to(yamls.parent)), file_digest(f)]
                    for f in sorted(yamls.rglob("*")) if f.suffix in (".yaml", ".json")]
    return digest(entries)


def code_version(commit: Optional[str] = None) -> dict[str, Any]:
    """The code that ran: the sources' hash and, when known, the git commit (``commit`` when the
    checkout has no git history, as on a machine that got a copy of the tree)."""
    from efficient_bert import __version__

    version: dict[str, Any] = {"sources": source_digest(), "package": __version__, "commit": commit}
    if commit is None:
        root = Path(__file__).resolve().parents[3]
        try:
            head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                                  text=True, timeout=10)
            dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "src", "yamls"],
                                   capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return version
        if head.returncode == 0:
            version["commit"] = head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    return version


def differences(old: Any, new: Any, path: str = "") -> list[str]:
    """Where two inputs dicts differ, one ``key: old -> new`` line per leaf."""
    if isinstance(old, dict) and isinstance(new, dict):
        lines = []
        for key in sorted(set(old) | set(new), key=str):
            where = f"{path}.{key}" if path else str(key)
            if key not in old:
                lines.append(f"{where}: (absent) -> {json.dumps(new[key], default=str)[:80]}")
            elif key not in new:
                lines.append(f"{where}: {json.dumps(old[key], default=str)[:80]} -> (absent)")
            else:
                lines += differences(old[key], new[key], where)
        return lines
    if old != new:
        return [f"{path}: {json.dumps(old, default=str)[:80]} -> {json.dumps(new, default=str)[:80]}"]
    return []
