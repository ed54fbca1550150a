"""Pretraining entry point: ``composer main.py yamls/X.yaml [key=value ...]`` (or ``python main.py``)."""

from __future__ import annotations

import argparse
import logging
import shutil
import signal
import sys
from pathlib import Path
from typing import Optional, Sequence

from efficient_bert.checkpoint_folder import latest_complete, remove_incomplete
from efficient_bert.errors import ConfigError, disk_full


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


def disk_full_message(exc: OSError, save_folder: Optional[str]) -> str:
    """What filled, where, and what is kept, after a write failed on a full disk."""
    where = f" writing {exc.filename}" if exc.filename else ""
    if save_folder is None or not Path(save_folder).is_dir():
        return f"the disk is full (No space left on device){where}; free space and run again"
    free = shutil.disk_usage(save_folder).free
    removed = remove_incomplete(Path(save_folder))
    kept = latest_complete(Path(save_folder))
    return (f"the disk holding {save_folder} is full (No space left on device{where}; {free / 2**20:.0f} MiB free): "
            + (f"removed the cut-off checkpoint {', '.join(p.name for p in removed)}; " if removed else "")
            + (f"kept the run's records and its last complete checkpoint {kept.name}; free space and continue with "
               "autoresume=true" if kept else "kept the run's records; no checkpoint was complete; free space and "
               "run again"))


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for chatty in ("composer", "streaming"):  # their INFO lines repeat per dataset and rank; warnings stay
        logging.getLogger(chatty).setLevel(logging.WARNING)
    # Imported here so that `main.py --help` answers instantly.
    from composer.utils import dist

    from efficient_bert.pretrain.build import build_trainer
    from efficient_bert.pretrain.run import RunFinished
    from efficient_bert.callbacks import NonFiniteLossError, RunInterrupted
    from efficient_bert.pretrain.schema import load_config
    from efficient_bert.data.text_dataset import CorruptShardError, corrupt_shard_message

    try:
        cfg = load_config(args.config, args.overrides)
        run = build_trainer(cfg)
    except (ConfigError, FileExistsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except RunFinished as exc:
        print(f"[efficient-bert] {exc}", file=sys.stderr)
        return 0
    try:
        run.fit()
    except RunInterrupted as exc:  # a checkpoint was saved: say how to go on
        if dist.get_global_rank() == 0:
            print(f"[efficient-bert] {exc}", file=sys.stderr)
        run.close()
        return 128 + signal.Signals[exc.signal_name].value
    # bad data, a non-finite loss, or outputs that a run would overwrite
    except (CorruptShardError, FileExistsError, NonFiniteLossError) as exc:
        message = corrupt_shard_message(exc) if isinstance(exc, CorruptShardError) else str(exc)
        print(f"error: {message}", file=sys.stderr)
        run.close()
        return 2
    except Exception as exc:
        full = disk_full(exc)
        if full is None:
            raise
        print(f"error: {disk_full_message(full, cfg.save_folder)}", file=sys.stderr)
        try:
            run.close()
        except Exception:  # closing flushes records, which may meet the full disk again
            pass
        return 2
    if dist.get_global_rank() == 0:
        print(f"[efficient-bert] {run.eval_history.summary()}")
        if run.trainer.saved_checkpoints:
            print(f"[efficient-bert] last Composer checkpoint: {run.trainer.saved_checkpoints[-1]}")
        if run.hf_export is not None and run.hf_export.exported is not None:
            print(f"[efficient-bert] HF export: {run.hf_export.exported}")
    run.close()
    return 0

