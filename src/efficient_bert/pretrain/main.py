"""Pretraining entry point: ``composer main.py yamls/X.yaml [key=value ...]`` (or ``python main.py``)."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Optional, Sequence

from efficient_bert.errors import ConfigError


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="main.py", description="Pretrain a BERT-style encoder from a YAML config.",
        epilog="Overrides use dotted keys, e.g. optimizer.lr=1e-3 max_duration=200ba train_loader.num_workers=0")
    parser.add_argument("args", nargs="+", metavar="YAML_OR_OVERRIDE",
                        help="run YAMLs merged in order (e.g. yamls/pretrain/mosaic-bert-base.yaml "
                             "yamls/methods/layer-drop.yaml), then key=value overrides")
    args = parser.parse_args(argv)
    args.config = [a for a in args.args if "=" not in a]
    args.overrides = [a for a in args.args if "=" in a]
    if not args.config:
        parser.error("give at least one run YAML")
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for chatty in ("composer", "streaming"):  # their INFO lines repeat per dataset and rank; warnings stay
        logging.getLogger(chatty).setLevel(logging.WARNING)
    # Imported here so that `main.py --help` answers instantly.
    from composer.utils import dist

    from efficient_bert.pretrain.build import build_trainer
    from efficient_bert.callbacks import NonFiniteLossError
    from efficient_bert.pretrain.schema import load_config
    from efficient_bert.data.text_dataset import CorruptShardError, corrupt_shard_message

    try:
        cfg = load_config(args.config, args.overrides)
        run = build_trainer(cfg)
    except (ConfigError, FileExistsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        run.fit()
    # bad data, a non-finite loss, or outputs that a run would overwrite
    except (CorruptShardError, FileExistsError, NonFiniteLossError) as exc:
        message = corrupt_shard_message(exc) if isinstance(exc, CorruptShardError) else str(exc)
        print(f"error: {message}", file=sys.stderr)
        run.close()
        return 2
    if dist.get_global_rank() == 0:
        print(f"[efficient-bert] {run.eval_history.summary()}")
        if run.trainer.saved_checkpoints:
            print(f"[efficient-bert] last Composer checkpoint: {run.trainer.saved_checkpoints[-1]}")
        if run.hf_export is not None and run.hf_export.exported is not None:
            print(f"[efficient-bert] HF export: {run.hf_export.exported}")
    run.close()
    return 0

