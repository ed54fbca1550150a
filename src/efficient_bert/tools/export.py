"""``efficient-bert export``: a Composer checkpoint of ours as a Hugging Face folder, with its model card.

    efficient-bert export runs/my-run/ep0-ba1536-rank0.pt --out runs/my-run/hf-1536

The folder holds the weights, the config, the tokenizer and, for Mosaic BERT, its portable modeling code
(load it with ``trust_remote_code=True``; the ModernBERT architecture is transformers' own format). The
card's facts come from the run's folder beside the checkpoint (``run.json``, ``eval_history.json``,
``metrics.jsonl``) and the checkpoint itself (steps, tokens); the tokenizer is the run's, or ``--tokenizer``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any, Optional, Sequence


def run_facts(checkpoint: Path, state: dict[str, Any]):
    """The model card's facts: the run's configuration and command (``run.json``), its last evaluation,
    its budget and the checkpoint's steps and tokens."""
    from efficient_bert import model_card
    from efficient_bert.pretrain.build import training_facts
    from efficient_bert.run_files import (BUDGET_REFERENCE_HOURS, BUDGET_RST_HOURS, BUDGET_WALL_HOURS,
                                          EVAL_HISTORY_FILE, RUN_FILE, metric_rows)

    folder = checkpoint.parent
    config = json.loads((folder / RUN_FILE).read_text()) if (folder / RUN_FILE).is_file() else {}
    facts = training_facts(config, config.get("command", "(not recorded)")) if config else \
        model_card.TrainingFacts(command="(no run.json beside the checkpoint)")
    stamp = state.get("timestamp", {}).get("Timestamp", {})
    facts.steps, facts.tokens, facts.samples = (int(stamp.get(k, 0)) for k in ("batch", "token", "sample"))
    history = folder / EVAL_HISTORY_FILE
    if history.is_file():
        records = [r for r in json.loads(history.read_text()) if r.get("batch", 0) <= facts.steps]
        if records:
            facts.take_evaluation(records[-1])
    budget = config.get("budget") or {}
    if budget.get("hours"):
        key = {"reference": BUDGET_REFERENCE_HOURS, "rst": BUDGET_RST_HOURS}.get(budget.get("clock"), BUDGET_WALL_HOURS)
        charged = None
        for row in metric_rows(folder):
            if row.get("batch", 0) <= facts.steps and key in row:
                charged = row[key]
        facts.budget = {"hours": budget["hours"], "clock": budget.get("clock", "wall"), "charged_hours": charged}
    return facts


def export(checkpoint: str | Path, out: str | Path, tokenizer: Optional[str] = None, overwrite: bool = False) -> Path:
    import torch

    from efficient_bert import model_card
    from efficient_bert.data.tokenizer import load_tokenizer, vocabulary_digest
    from efficient_bert.errors import ArgumentError
    from efficient_bert.files import replace_folder
    from efficient_bert.model.checkpoint import load_pretrained
    from efficient_bert.run_files import RUN_FILE

    checkpoint, out = Path(checkpoint), Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ArgumentError("--out", f"{out} is not empty; choose another folder or pass --overwrite")
    if tokenizer is None:
        run = checkpoint.parent / RUN_FILE
        tokenizer = (json.loads(run.read_text()).get("tokenizer") or {}).get("path") if run.is_file() else None
        if tokenizer is None:
            raise ArgumentError("--tokenizer", f"no run.json beside {checkpoint} names the run's tokenizer; pass "
                                               "--tokenizer DIR")
    tok = load_tokenizer(tokenizer)
    model = load_pretrained(checkpoint, "masked_lm")
    trained_with = getattr(model.config, "tokenizer_vocabulary", None)
    if trained_with is not None and trained_with != vocabulary_digest(tok):
        raise ArgumentError("--tokenizer", f"{tokenizer} is not the tokenizer {checkpoint} was trained with (vocabulary "
                                           f"{vocabulary_digest(tok)}, the model's {trained_with}); pass the run's")
    state = torch.load(checkpoint, map_location="cpu", weights_only=False).get("state", {})
    partial = out.with_name(f".{out.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(str(partial))
    tok.save_pretrained(str(partial))
    model_card.write(partial, model_card.render(model, tok, run_facts(checkpoint, state)))
    replace_folder(partial, out)
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="efficient-bert export", description=__doc__.split("\n\n")[0],
                                epilog="e.g. efficient-bert export runs/x/ep0-ba1536-rank0.pt --out runs/x/hf-1536")
    p.add_argument("checkpoint", help="a Composer checkpoint (.pt) written by a run of ours")
    p.add_argument("--out", required=True, help="the HF folder to write")
    p.add_argument("--tokenizer", default=None, help="default: the tokenizer in the run's run.json")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    args = p.parse_args(argv)
    from efficient_bert.errors import ArgumentError

    try:
        out = export(args.checkpoint, args.out, args.tokenizer, args.overwrite)
    except ArgumentError as exc:
        print(f"error: {exc.argument}: {exc}", file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"[efficient-bert] HF export: {out}")
    return 0
