"""Writes that leave the old content or the new one, never a mix: what a killed process or a full
disk may cut off mid-write is a temporary file beside the target, not the target."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def write_text_atomically(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, then rename it over ``path``."""
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial")
    try:
        with open(partial, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(path)


def replace_folder(new: Path, target: Path) -> None:
    """Put the folder ``new`` where ``target`` is; the old one is removed only once the new one is in place."""
    new, target = Path(new), Path(target)
    old = target.with_name(f".{target.name}.replaced")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    new.rename(target)
    shutil.rmtree(old, ignore_errors=True)
