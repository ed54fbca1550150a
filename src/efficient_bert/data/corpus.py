"""Reading raw text corpora: C4's native ``json.gz``, JSON lines (plain, gzip, zstd), plain text and
HF ``datasets`` (a local directory, or a hub name when the network allows).

Every reader yields documents as ``str``. Bad input (a line that is not JSON, a record without the
text field, a corrupt compressed stream) raises :class:`BadInputError` naming the file and line, or,
with ``skip_bad=True``, is skipped and counted in a :class:`BadInputStats`.
"""

from __future__ import annotations

import gzip
import io
import json
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Optional

JSON_SUFFIXES = (".json.gz", ".jsonl.gz", ".json.zst", ".jsonl.zst", ".jsonl", ".json")
TEXT_SUFFIXES = (".txt", ".txt.gz")
SUPPORTED_SUFFIXES = JSON_SUFFIXES + TEXT_SUFFIXES


class BadInputError(ValueError):
    """Input that cannot be read; the message names the file, the line and the way out."""


@dataclass
class BadInputStats:
    """Counts what ``skip_bad`` skipped, keeping the first few reasons for the report."""

    skipped: int = 0
    examples: list[str] = field(default_factory=list)

    def add(self, reason: str) -> None:
        self.skipped += 1
        if len(self.examples) < 5:
            self.examples.append(reason)

    def merge(self, other: "BadInputStats") -> None:
        self.skipped += other.skipped
        self.examples.extend(other.examples[: max(0, 5 - len(self.examples))])


def _suffix(path: Path) -> Optional[str]:
    name = path.name.lower()
    return next((s for s in SUPPORTED_SUFFIXES if name.endswith(s)), None)


def is_hf_dataset_dir(path: Path) -> bool:
    """True for a directory written by ``datasets``' ``save_to_disk``."""
    return path.is_dir() and any((path / f).is_file() for f in ("dataset_dict.json", "dataset_info.json", "state.json"))


def find_split_files(in_root: Path, split: str) -> list[Path]:
    """Supported files under ``in_root`` that belong to ``split``.

    A file belongs to a split when a directory on its path is named like the split
    (``train/part-0.jsonl``) or its name contains the split as a word (``c4-train.00000-of-01024.json.gz``,
    ``validation.txt``). Sorted, so shard order and sample ids are reproducible.
    """
    word = re.compile(rf"(^|[-_.]){re.escape(split)}([-_.]|$)")
    found = []
    for path in sorted(in_root.rglob("*")):
        if not path.is_file() or _suffix(path) is None:
            continue
        rel = path.relative_to(in_root)
        if split in rel.parts[:-1] or word.search(path.name):
            found.append(path)
    return found


def _open_binary(path: Path, suffix: str) -> io.BufferedIOBase:
    if suffix.endswith(".gz"):
        return gzip.open(path, "rb")
    if suffix.endswith(".zst"):
        import zstandard

        return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(open(path, "rb"), closefd=True))
    return open(path, "rb")


def _not_utf8(path: Path, lineno: int, exc: UnicodeDecodeError) -> str:
    return (f"{path}: line {lineno} is not UTF-8 (byte {exc.object[exc.start]:#04x} at column {exc.start + 1}); "
            "convert the file to UTF-8 first, e.g. `iconv -f latin1 -t utf-8 FILE > FILE.utf8` for Latin-1 text, "
            "or pass --skip_bad to skip such lines")


def _corrupt_errors() -> tuple[type[BaseException], ...]:
    import zstandard

    return (EOFError, zlib.error, gzip.BadGzipFile, zstandard.ZstdError)


def _numbered_lines(path: Path, suffix: str, stats: Optional[BadInputStats]) -> Iterator[tuple[int, str]]:
    """(line number, line) pairs, each line decoded on its own so that an error names its line; a
    corrupt stream ends the file with an error or a counted skip."""
    lineno = 0
    try:
        with _open_binary(path, suffix) as handle:
            for lineno, raw in enumerate(handle, start=1):
                try:
                    yield lineno, raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    if stats is None:
                        raise BadInputError(_not_utf8(path, lineno, exc)) from exc
                    stats.add(_not_utf8(path, lineno, exc))
    except _corrupt_errors() as exc:
        reason = (f"{path}: corrupt or truncated data after line {lineno} ({type(exc).__name__}: {exc}); "
                  "re-download the file, or pass --skip_bad to keep what was read before the damage")
        if stats is None:
            raise BadInputError(reason) from exc
        stats.add(reason)


def iter_json_documents(path: Path, text_key: str = "text",
                        stats: Optional[BadInputStats] = None) -> Iterator[str]:
    """Documents of a JSON-lines file (C4's native format is gzipped JSON lines with a ``text`` field)."""
    suffix = _suffix(path) or ".jsonl"
    for lineno, line in _numbered_lines(path, suffix, stats):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            problem = f"not valid JSON ({exc.msg} line {exc.lineno} column {exc.colno})"
        else:
            if isinstance(record, dict) and isinstance(record.get(text_key), str):
                yield record[text_key]
                continue
            keys = sorted(record) if isinstance(record, dict) else type(record).__name__
            problem = f"no string field '{text_key}' (found: {keys})"
        reason = f"{path}:{lineno}: {problem}"
        if stats is None:
            raise BadInputError(f"{reason}; fix the line, choose the field with --text_key, "
                                "or pass --skip_bad to skip and count such lines")
        stats.add(reason)


def iter_text_documents(path: Path, stats: Optional[BadInputStats] = None) -> Iterator[str]:
    """Documents of a plain-text file: blocks of lines separated by one or more blank lines."""
    block: list[str] = []
    for _, line in _numbered_lines(path, _suffix(path) or ".txt", stats):
        if line.strip():
            block.append(line.strip())
        elif block:
            yield "\n".join(block)
            block = []
    if block:
        yield "\n".join(block)


def iter_file_documents(path: Path, text_key: str = "text",
                        stats: Optional[BadInputStats] = None) -> Iterator[str]:
    suffix = _suffix(path)
    if suffix is None:
        raise BadInputError(f"{path}: unsupported file type; supported: {', '.join(SUPPORTED_SUFFIXES)}")
    if suffix in TEXT_SUFFIXES:
        return iter_text_documents(path, stats)
    return iter_json_documents(path, text_key, stats)


def iter_hf_documents(source: str, split: str, text_key: str = "text") -> Iterator[str]:
    """Documents of an HF dataset: a ``save_to_disk`` directory, a local data directory, or a hub name."""
    try:
        import datasets
    except ImportError as exc:  # pragma: no cover - datasets is a declared dependency
        raise BadInputError("reading HF datasets needs the `datasets` package: pip install datasets") from exc
    path = Path(source)
    if is_hf_dataset_dir(path):
        loaded = datasets.load_from_disk(str(path))
        if isinstance(loaded, datasets.DatasetDict):
            if split not in loaded:
                raise BadInputError(f"{path}: no split '{split}' (splits: {', '.join(loaded)})")
            loaded = loaded[split]
    else:
        try:
            loaded = datasets.load_dataset(source, split=split, streaming=not path.exists())
        except (ConnectionError, OSError) as exc:
            where = "" if path.exists() else " (there is no local directory of that name either)"
            raise BadInputError(f"could not load dataset '{source}' split '{split}'{where}: {exc}. A hub name "
                                "needs network access; otherwise pass an existing local directory") from exc
        except ValueError as exc:
            raise BadInputError(f"dataset '{source}' has no split '{split}': {exc}") from exc
    columns = loaded.column_names or []
    if text_key not in columns:
        raise BadInputError(f"dataset '{source}' split '{split}' has no column '{text_key}' "
                            f"(columns: {', '.join(columns)}); choose one with --text_key")
    for record in loaded:
        yield record[text_key]


def iter_documents(files: Iterable[Path], text_key: str = "text",
                   stats: Optional[BadInputStats] = None) -> Iterator[str]:
    for path in files:
        yield from iter_file_documents(path, text_key, stats)
