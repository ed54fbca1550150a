"""Convert C4 (native ``json.gz``) or any text corpus into MDS shards for streaming pretraining.

Two output kinds per split:

* text rows (default): one ``text`` column (``str``), tokenized on the fly by the dataset, so the
  tokenizer can change without reconverting;
* concatenated token rows (``--tokenizer T --concat_tokens N``): documents are tokenized with their
  ``[CLS] ... [SEP]`` markers, concatenated, and cut into rows of exactly N ids (column ``tokens``,
  ``ndarray:int32``); the incomplete tail is dropped. No padding is ever trained on.

Rows are written in input order (files sorted by name), so a row's index, the sample id the data
layer gives to algorithms, is reproducible.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import shutil
import sys
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence

from efficient_bert.data.corpus import (BadInputError, BadInputStats, find_split_files, is_hf_dataset_dir,
                                        iter_file_documents, iter_hf_documents)
from efficient_bert.files import replace_folder

CONVERSION_INFO = "conversion.json"


def conversion_info(split_folder: str | Path) -> Optional[dict[str, Any]]:
    """What the conversion of a split recorded (documents, rows, tokens, sources, the tokenizer and its
    vocabulary digest); None for a split without it (written before it was recorded, or mirrored without it)."""
    path = Path(split_folder) / CONVERSION_INFO
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError as exc:
        raise ValueError(f"{path} is not JSON ({exc}); convert the split again, or delete the file") from None
# written into index.json for every shard: the dataset checks a raw shard against it before reading it
SHARD_HASHES = ["sha1"]


@dataclass
class SplitReport:
    split: str
    documents: int = 0
    rows: int = 0
    tokens: int = 0
    dropped_tail_tokens: int = 0
    skipped_bad: int = 0
    bad_examples: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    seconds: float = 0.0


def ordered_map(fn: Callable[[Any], Any], items: Iterable[Any], num_workers: int,
                initializer: Optional[Callable[..., None]] = None, initargs: tuple = ()) -> Iterator[Any]:
    """``map`` over a process pool that yields results in input order with bounded look-ahead.

    Unlike ``Pool.imap``, at most ``2 * num_workers`` items are in flight, so a fast reader cannot
    buffer a whole corpus in memory ahead of a slower writer.
    """
    if num_workers <= 1:
        if initializer is not None:
            initializer(*initargs)
        yield from map(fn, items)
        return
    ctx = mp.get_context("spawn")  # fork is unsafe with tokenizer threads
    with ctx.Pool(num_workers, initializer=initializer, initargs=initargs) as pool:
        pending: deque = deque()
        for item in items:
            pending.append(pool.apply_async(fn, (item,)))
            if len(pending) >= 2 * num_workers:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()


# --- workers (module level so that spawned processes can import them) ---------------------------

_WORKER_TOKENIZER = None


def _init_tokenizer(path: str) -> None:
    global _WORKER_TOKENIZER
    from efficient_bert.data.tokenizer import load_tokenizer

    _WORKER_TOKENIZER = load_tokenizer(path)


def _tokenize_chunk(texts: list[str]) -> list[list[int]]:
    return _WORKER_TOKENIZER(texts, add_special_tokens=True, truncation=False, verbose=False)["input_ids"]


def _read_file(args: tuple[str, str, bool]) -> tuple[list[str], BadInputStats]:
    path, text_key, skip_bad = args
    stats = BadInputStats()
    return list(iter_file_documents(Path(path), text_key, stats if skip_bad else None)), stats


# --- conversion -----------------------------------------------------------------------------------


def _chunks(items: Iterable[str], size: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _limit(items: Iterable[str], max_docs: Optional[int]) -> Iterator[str]:
    for i, item in enumerate(items):
        if max_docs is not None and i >= max_docs:
            return
        yield item


def _no_files(split: str, in_root: Optional[str]) -> BadInputError:
    return BadInputError(f"no input files for split '{split}' under {in_root} (looked for names containing "
                         f"'{split}' with a supported suffix, or a '{split}/' directory)")


def split_documents(split: str, in_root: Optional[str], files: Optional[Sequence[str]], text_key: str,
                    skip_bad: bool, num_workers: int, report: SplitReport) -> Iterator[str]:
    """The documents of one split, from files or an HF dataset."""
    stats = BadInputStats()
    if in_root is not None and (is_hf_dataset_dir(Path(in_root)) or not Path(in_root).exists()):
        report.sources = [f"hf:{in_root}"]
        yield from iter_hf_documents(in_root, split, text_key)
        return
    paths = [Path(f) for f in files] if files else find_split_files(Path(in_root), split)
    if not paths:
        raise _no_files(split, in_root)
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise BadInputError(f"input file(s) not found: {', '.join(missing)}")
    report.sources = [str(p) for p in paths]
    try:
        if num_workers > 1 and len(paths) > 1:
            for docs, file_stats in ordered_map(_read_file, [(str(p), text_key, skip_bad) for p in paths], num_workers):
                stats.merge(file_stats)
                yield from docs
        else:
            for path in paths:
                yield from iter_file_documents(path, text_key, stats if skip_bad else None)
    finally:
        report.skipped_bad, report.bad_examples = stats.skipped, stats.examples


def _progress(total: Optional[int], desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=" docs", unit_scale=True, dynamic_ncols=True, file=sys.stderr,
                disable=None)


def write_split(docs: Iterable[str], out_dir: Path, report: SplitReport, *, tokenizer: Optional[str] = None,
                concat_tokens: Optional[int] = None, max_docs: Optional[int] = None, num_workers: int = 1,
                compression: str = "zstd", size_limit: str = "64mb") -> SplitReport:
    """Write one split's MDS shards into ``out_dir`` (which must not exist yet)."""
    import numpy as np
    from streaming import MDSWriter

    start = time.time()
    docs = _limit(docs, max_docs)
    bar = _progress(max_docs, report.split)
    if concat_tokens is None:
        with MDSWriter(out=str(out_dir), columns={"text": "str"}, compression=compression, size_limit=size_limit,
                       hashes=SHARD_HASHES) as writer:
            for text in docs:
                writer.write({"text": text})
                report.documents += 1
                report.rows += 1
                bar.update(1)
    else:
        buffer: list[int] = []
        with MDSWriter(out=str(out_dir), columns={"tokens": "ndarray:int32"}, compression=compression,
                       size_limit=size_limit, hashes=SHARD_HASHES) as writer:
            for ids_chunk in ordered_map(_tokenize_chunk, _chunks(docs, 256), num_workers,
                                         initializer=_init_tokenizer, initargs=(tokenizer,)):
                for ids in ids_chunk:
                    buffer.extend(ids)
                    report.documents += 1
                    report.tokens += len(ids)
                full = len(buffer) // concat_tokens * concat_tokens
                for offset in range(0, full, concat_tokens):
                    writer.write({"tokens": np.asarray(buffer[offset:offset + concat_tokens], dtype=np.int32)})
                    report.rows += 1
                del buffer[:full]
                bar.update(len(ids_chunk))
        report.dropped_tail_tokens = len(buffer)
    bar.close()
    report.seconds = time.time() - start
    return report


HOLDOUT_SPLIT = "holdout"


def held_out(index: int, fraction: float) -> bool:
    """Whether document ``index`` belongs to the held-out ``fraction``: a multiplicative hash of the
    index, so the same documents on every conversion of the same input."""
    return ((index * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF) / 2 ** 64 < fraction


def _part(docs: Iterable[str], fraction: float, holdout: bool) -> Iterator[str]:
    return (doc for i, doc in enumerate(docs) if held_out(i, fraction) == holdout)


def convert(splits: Sequence[str], out_root: str, *, in_root: Optional[str] = None,
            files: Optional[Sequence[str]] = None, tokenizer: Optional[str] = None,
            concat_tokens: Optional[int] = None, max_docs: Optional[int] = None, num_workers: int = 1,
            overwrite: bool = False, skip_bad: bool = False, text_key: str = "text",
            compression: str = "zstd", size_limit: str = "64mb", holdout_fraction: float = 0.0) -> list[SplitReport]:
    """Convert each split to ``out_root/<split>/``; returns one report per split.

    With ``holdout_fraction``, that fraction of the ``train`` split's documents goes to
    ``out_root/holdout/`` instead (data for RHO-loss's irreducible-loss model, never trained on
    by the main run)."""
    if not 0.0 <= holdout_fraction < 1.0:
        raise ValueError(f"--holdout_fraction must be in [0, 1), got {holdout_fraction}")
    if holdout_fraction and "train" not in splits:
        raise ValueError("--holdout_fraction splits the train split: include train in --splits")
    if (in_root is None) == (files is None):
        raise ValueError("give exactly one of in_root or files")
    if files is not None and len(splits) != 1:
        raise ValueError("--files are written to one split: pass exactly one --splits name")
    if (tokenizer is None) != (concat_tokens is None):
        raise ValueError("--tokenizer and --concat_tokens go together")
    if concat_tokens is not None and concat_tokens < 8:
        raise ValueError(f"--concat_tokens must be at least 8, got {concat_tokens}")
    vocabulary = None
    if concat_tokens is not None:
        from efficient_bert.data.tokenizer import load_tokenizer, vocabulary_digest

        loaded = load_tokenizer(tokenizer)  # fail before any output is written
        if len(loaded) >= 2**31:
            raise ValueError("vocabulary too large for int32 token rows")
        vocabulary = vocabulary_digest(loaded)
    local_files = in_root is not None and Path(in_root).is_dir() and not is_hf_dataset_dir(Path(in_root))
    if local_files:  # a mistyped split is refused before anything is converted
        empty = [s for s in splits if not find_split_files(Path(in_root), s)]
        if empty:
            raise _no_files(empty[0], in_root)
    out = Path(out_root)
    outputs = [(split, split, None) for split in splits]  # (output split, input split, holdout part)
    if holdout_fraction:
        outputs = [o for s in splits for o in ([(s, s, False), (HOLDOUT_SPLIT, s, True)] if s == "train" else [(s, s, None)])]
    targets = [out / name for name, _, _ in outputs]
    busy = [str(t) for t in targets if t.exists() and any(t.iterdir())]
    if busy and not overwrite:
        raise FileExistsError(f"output already exists and is not empty: {', '.join(busy)}; "
                              "choose another --out_root or pass --overwrite to replace it")
    reports = []
    for (split, source, holdout), target in zip(outputs, targets):
        # written beside the target and moved into place only when complete: a failed or killed
        # conversion leaves the earlier split as it was, and nothing that blocks the next attempt
        partial = target.with_name(f".{target.name}.partial")
        shutil.rmtree(partial, ignore_errors=True)
        report = SplitReport(split)
        try:
            docs = split_documents(source, in_root, files, text_key, skip_bad, num_workers, report)
            if holdout is not None:
                docs = _part(docs, holdout_fraction, holdout)
            write_split(docs, partial, report, tokenizer=tokenizer, concat_tokens=concat_tokens, max_docs=max_docs,
                        num_workers=num_workers, compression=compression, size_limit=size_limit)
            if report.rows == 0:  # nothing to train on: fail here, not at the first step of a run
                short = f" (fewer than the {concat_tokens} tokens of one row)" if concat_tokens and report.documents else ""
                raise BadInputError(f"split '{split}' has no rows: {report.documents} documents{short} in "
                                    f"{', '.join(report.sources) or in_root}; check the files, --text_key or --splits")
            info = {**asdict(report), "tokenizer": tokenizer, "tokenizer_vocabulary": vocabulary,
                    "concat_tokens": concat_tokens, "text_key": text_key,
                    "holdout_fraction": holdout_fraction if holdout is not None else None}
            (partial / CONVERSION_INFO).write_text(json.dumps(info, indent=2) + "\n")
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        replace_folder(partial, target)
        reports.append(report)
    return reports


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="convert_c4.py",
        description="Convert C4's json.gz (or .jsonl[.gz|.zst], .txt, an HF dataset) to MDS shards.")
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--in_root", help="corpus directory (files matched to splits by name), a local HF dataset "
                                       "directory, or an HF hub dataset name (needs network)")
    src.add_argument("--files", nargs="+", help="explicit input files, written to the single split in --splits")
    parser.add_argument("--out_root", required=True, help="output root; each split goes to OUT_ROOT/<split>/")
    parser.add_argument("--splits", nargs="+", default=["train", "validation"])
    parser.add_argument("--max_docs", type=int, default=None, help="stop each split after this many documents")
    parser.add_argument("--tokenizer", default=None, help="local tokenizer directory (with --concat_tokens)")
    parser.add_argument("--concat_tokens", type=int, default=None,
                        help="write pre-tokenized rows of exactly N tokens (documents concatenated)")
    parser.add_argument("--num_workers", type=int, default=1, help="processes for reading/tokenizing")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output splits")
    parser.add_argument("--skip_bad", action="store_true",
                        help="skip (and count) bad lines and corrupt compressed data instead of failing")
    parser.add_argument("--text_key", default="text", help="JSON field / dataset column holding the text")
    parser.add_argument("--holdout_fraction", type=float, default=0.0,
                        help="move this fraction of train documents to a 'holdout' split (RHO-loss's IL model)")
    parser.add_argument("--compression", default="zstd")
    parser.add_argument("--size_limit", default="64mb", help="target shard size before compression")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> list[SplitReport]:
    args = build_parser().parse_args(argv)
    try:
        reports = convert(args.splits, args.out_root, in_root=args.in_root, files=args.files,
                          tokenizer=args.tokenizer, concat_tokens=args.concat_tokens, max_docs=args.max_docs,
                          num_workers=args.num_workers, overwrite=args.overwrite, skip_bad=args.skip_bad,
                          text_key=args.text_key, compression=args.compression, size_limit=args.size_limit,
                          holdout_fraction=args.holdout_fraction)
    except (BadInputError, FileExistsError, ValueError) as exc:
        raise SystemExit(f"error: {exc}") from None
    for r in reports:
        rate = r.documents / r.seconds if r.seconds else float("inf")
        extra = f", {r.tokens} tokens (tail of {r.dropped_tail_tokens} dropped)" if args.concat_tokens else ""
        print(f"{r.split}: {r.documents} documents -> {r.rows} rows{extra} in {r.seconds:.1f}s "
              f"({rate:.0f} docs/s) -> {Path(args.out_root) / r.split}")
        if r.skipped_bad:
            print(f"{r.split}: skipped {r.skipped_bad} bad input(s), e.g. {r.bad_examples[0]}")
    return reports
