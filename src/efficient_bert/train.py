"""Pretraining entry point: ``composer main.py yamls/X.yaml [key=value ...]`` (or ``python main.py``)."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Optional, Sequence

from efficient_bert.registry import ConfigError


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="main.py", description="Pretrain a BERT-style encoder from a YAML config.",
        epilog="Overrides use dotted keys, e.g. optimizer.lr=1e-3 max_duration=200ba train_loader.num_workers=0")
    parser.add_argument("config", help="run YAML, e.g. yamls/demo.yaml")
    parser.add_argument("overrides", nargs="*", help="key=value overrides applied on top of the YAML")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    # Imported here so that `main.py --help` answers instantly.
    from composer.utils import dist

    from efficient_bert.builders import build_trainer
    from efficient_bert.config import load_config

    try:
        cfg = load_config(args.config, args.overrides)
        run = build_trainer(cfg)
    except (ConfigError, FileExistsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    run.fit()
    if dist.get_global_rank() == 0:
        print(f"[efficient-bert] {run.eval_history.summary()}")
        if run.trainer.saved_checkpoints:
            print(f"[efficient-bert] last Composer checkpoint: {run.trainer.saved_checkpoints[-1]}")
        if run.hf_export is not None and run.hf_export.exported is not None:
            print(f"[efficient-bert] HF export: {run.hf_export.exported}")
    run.trainer.close()
    return 0
