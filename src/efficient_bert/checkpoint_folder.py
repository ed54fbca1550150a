"""A run's local checkpoint folder as Composer's autoresume reads it, made whole after a cut-off save.

Composer writes ``ep<E>-ba<B>-rank<R>.pt`` in place and then points ``latest-rank<R>.pt`` at it. A
process killed during that write, or a disk that fills, leaves an incomplete file, and the next
autoresume refuses it as "a future checkpoint" until it is deleted by hand. A checkpoint is a zip
archive (``torch.save``) whose directory is written last, so an incomplete one is recognised without
loading it: :func:`recover_checkpoints` sets each aside (moved, not deleted) and points
``latest-rank<R>.pt`` at the newest complete checkpoint of its rank.
"""

from __future__ import annotations

import os
import re
import zipfile
from pathlib import Path
from typing import Optional

CHECKPOINT_NAME = re.compile(r"^ep(\d+)-ba(\d+)-rank(\d+)\.pt$")  # Composer's default save_filename
INCOMPLETE_FOLDER = "incomplete"


def latest_link(folder: Path, rank: int) -> Path:
    return Path(folder) / f"latest-rank{rank}.pt"  # Composer's default save_latest_filename


def is_complete(path: Path) -> bool:
    """Whether a checkpoint file was written to its end (its zip directory is there)."""
    try:
        return zipfile.is_zipfile(path)
    except OSError:
        return False


def checkpoints(folder: Path) -> list[tuple[int, int, Path]]:
    """``(rank, batch, path)`` of the checkpoint files in ``folder``, oldest first per rank."""
    found = []
    for path in Path(folder).iterdir() if Path(folder).is_dir() else ():
        match = CHECKPOINT_NAME.match(path.name)
        if match and path.is_file():
            found.append((int(match.group(3)), int(match.group(2)), path))
    return sorted(found)


def set_aside(path: Path) -> Path:
    """Move ``path`` into the folder's ``incomplete/``, under a new name if one is there already."""
    target_dir = path.parent / INCOMPLETE_FOLDER
    target_dir.mkdir(exist_ok=True)
    target = target_dir / path.name
    n = 1
    while target.exists():
        target, n = target_dir / f"{path.name}.{n}", n + 1
    path.rename(target)
    return target


def recover_checkpoints(folder: Path) -> list[str]:
    """Set aside the incomplete checkpoints in ``folder`` and point each rank's ``latest-rank<R>.pt`` at
    its newest complete one; return what was done, a line each (nothing for a whole folder)."""
    folder = Path(folder)
    done = []
    for rank, batch, path in checkpoints(folder):
        if not is_complete(path):
            try:
                size = path.stat().st_size
                moved = set_aside(path)
            except FileNotFoundError:  # another process of the run moved it first
                continue
            done.append(f"set aside {path.name} ({size} bytes), a checkpoint whose save was cut off, as {moved}")
    newest: dict[int, tuple[int, Path]] = {}
    for rank, batch, path in checkpoints(folder):
        newest[rank] = (batch, path)
    ranks = set(newest) | {int(m.group(1)) for p in folder.glob("latest-rank*.pt")
                           if (m := re.match(r"^latest-rank(\d+)\.pt$", p.name))}
    for rank in sorted(ranks):
        link = latest_link(folder, rank)
        target = link.resolve() if link.is_symlink() else None
        if rank not in newest:
            if link.is_symlink():
                link.unlink()
                done.append(f"removed {link.name}: no complete checkpoint of rank {rank} is left")
            continue
        batch, path = newest[rank]
        if target == path.resolve():
            continue
        if link.is_symlink() or link.exists():
            link.unlink()
        os.symlink(path.name, link)
        done.append(f"{link.name} now points at {path.name}, the newest complete checkpoint (batch {batch})")
    return done


def remove_incomplete(folder: Path) -> list[Path]:
    """Delete the incomplete checkpoints in ``folder`` (after a full disk: they only hold its space)."""
    removed = []
    for _, _, path in checkpoints(folder):
        if not is_complete(path):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def latest_complete(folder: Path, rank: int = 0) -> Optional[Path]:
    found = [path for r, _, path in checkpoints(folder) if r == rank and is_complete(path)]
    return found[-1] if found else None
