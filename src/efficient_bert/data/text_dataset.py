"""``StreamingTextDataset``: MDS shards (local, or remote with a local cache) as token-id samples."""

from __future__ import annotations

import atexit
import copy
import gc
import json
from pathlib import Path
from typing import Any, Optional

import numpy as np
from streaming import StreamingDataset
from streaming.base.dataset import _ShardState
from streaming.base.hashing import get_hash
from streaming.base.shared import SharedMemory

from efficient_bert.errors import ArgumentError

TEXT_COLUMN, TOKENS_COLUMN = "text", "tokens"


class CorruptShardError(RuntimeError):
    """A shard (or a sample in it) cannot be read as written; the message names it and the fix.

    Raised inside a DataLoader worker it reaches the trainer wrapped in the worker's traceback:
    :func:`corrupt_shard_message` takes the message back out."""


def corrupt_shard_message(exc: BaseException) -> str:
    """The message a :class:`CorruptShardError` was raised with (also after a DataLoader worker re-raised it)."""
    marker = f"{CorruptShardError.__name__}: "  # the worker's traceback names the class, maybe with its module
    lines = [line for line in str(exc).splitlines() if marker in line]
    return lines[-1].split(marker, 1)[1] if lines else str(exc)


def check_shard_tokenizer(folder: Path, tokenizer: Any) -> None:
    """Token rows must be read with the tokenizer that wrote them: ``conversion.json`` names it by its
    vocabulary digest (shards written before it was recorded, or mirrored without it, are not checked)."""
    from efficient_bert.data.convert import conversion_info
    from efficient_bert.data.tokenizer import vocabulary_digest

    info = conversion_info(folder)
    if info is None:
        return
    made_with = info.get("tokenizer_vocabulary")
    if made_with is not None and made_with != vocabulary_digest(tokenizer):
        raise ValueError(f"the shards under {folder} hold the ids of the tokenizer {info.get('tokenizer')} (vocabulary "
                         f"{made_with}), not of this run's (vocabulary {vocabulary_digest(tokenizer)}): point the "
                         f"tokenizer at {info.get('tokenizer')}, or convert the corpus again with this one")


def truncating_encoder(tokenizer: Any, max_seq_len: int) -> Optional[Any]:
    """A copy of a fast tokenizer's Rust tokenizer that truncates to ``max_seq_len`` and adds the
    special tokens: the ids of ``tokenizer(text, truncation=True, max_length=max_seq_len)`` without
    the Python layer around it (1.6x faster per enwiki sentence on CPU). None for slow tokenizers."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    encoder = copy.deepcopy(backend)
    encoder.enable_truncation(max_seq_len)
    encoder.no_padding()
    return encoder


class StreamingTextDataset(StreamingDataset):
    """Samples ``{"input_ids": np.int64 array, "sample_id": int}`` from shards written by convert_c4.py.

    Text rows are tokenized on the fly (with ``[CLS]``/``[SEP]``) and truncated to ``max_seq_len``;
    pre-tokenized rows (``--concat_tokens``) are truncated to ``max_seq_len``.

    ``sample_id`` is the sample's global index in the dataset, the same on every rank, epoch and
    resumption for the same shards: algorithms that keep per-sample state (RHO-loss's irreducible
    losses) key on it.

    Remaining keyword arguments go to :class:`streaming.StreamingDataset` (``predownload``,
    ``cache_limit``, ``num_canonical_nodes``, ``shuffle_seed``, ``batch_size``, ...).
    """

    def __init__(self, tokenizer: Any, max_seq_len: int, local: str, remote: Optional[str] = None,
                 split: Optional[str] = None, shuffle: bool = False, **kwargs: Any):
        if max_seq_len < 8:
            raise ArgumentError("max_seq_len", f"must be at least 8, got {max_seq_len}")
        index = Path(local, split or "", "index.json")
        if remote is None and not index.is_file():
            raise FileNotFoundError(f"no MDS index at {index}: convert a corpus first, e.g. "
                              f"`python convert_c4.py --in_root CORPUS --out_root {local} --splits {split or 'train'}`, "
                              "or set `remote` to stream it from object storage")
        if index.is_file() and not json.loads(index.read_text()).get("shards"):
            raise ValueError(f"{index} lists no shards: the split is empty; convert a corpus with rows into it")
        super().__init__(local=local, remote=remote, split=split, shuffle=shuffle, **kwargs)
        self.tokenizer = tokenizer
        self.vocab_size = len(tokenizer)
        self.max_seq_len = max_seq_len
        self._encoder = truncating_encoder(tokenizer, max_seq_len)
        columns = set(self.shards[0].column_names) if self.shards else set()
        if TOKENS_COLUMN in columns:
            self.column = TOKENS_COLUMN
            try:
                check_shard_tokenizer(Path(local, split or ""), tokenizer)
            except ValueError:
                self.close()
                raise
        elif TEXT_COLUMN in columns:
            self.column = TEXT_COLUMN
        else:
            self.close()
            raise ValueError(f"shards under {Path(local, split or '')} have columns {sorted(columns)}; expected "
                              f"'{TEXT_COLUMN}' (convert_c4.py) or '{TOKENS_COLUMN}' (convert_c4.py --concat_tokens)")

    def tokenize(self, text: str) -> np.ndarray:
        if self._encoder is None:
            ids = self.tokenizer(text, truncation=True, max_length=self.max_seq_len, add_special_tokens=True,
                                 verbose=False)["input_ids"]
        else:
            ids = self._encoder.encode(text).ids
        return np.asarray(ids, dtype=np.int64)

    def shard_error(self, shard_id: int, what: str, fix: Optional[str] = None) -> CorruptShardError:
        shard = self.shards[shard_id]
        files = ", ".join(info.basename for pair in shard.file_pairs for info in pair if info is not None)
        fix = fix or ("is corrupt or incomplete; re-run convert_c4.py with --overwrite, or delete the local cache so "
                      "it is downloaded again")
        return CorruptShardError(f"{what}: shard {shard_id} ({files}) under {Path(shard.dirname, shard.split)} {fix}")

    def prepare_shard(self, shard_id: int, blocking: bool = True) -> None:
        """Streaming's download/decompression of a shard; a failure is a :class:`CorruptShardError`.

        Streaming leaves a shard whose preparation raised in its PREPARING state, where every reader
        waiting for it waits forever, and its iterator then ends the epoch early without an error (a
        run on a truncated ``.zstd`` hung). Here the shard's state is restored, so that the next reader
        tries again and fails the same way, and the error is kept for :meth:`__iter__` to raise. The
        background threads (``blocking=False``) only stop the iteration: raised there, the error
        would be logged as a second traceback by the thread pool."""
        try:
            super().prepare_shard(shard_id, blocking)
        except Exception as exc:
            remote = self.streams[self.stream_per_shard[shard_id]].remote
            self._shard_states[shard_id] = _ShardState.REMOTE if remote else _ShardState.LOCAL
            self._failure = self.shard_error(
                shard_id, f"decompressing or downloading a shard failed ({type(exc).__name__}: {exc})")
            self._failure.__cause__ = exc
            if blocking:
                raise self._failure
            self._event.set()  # streaming's signal to its threads and iterator to stop

    def _resume_incr_epoch(self) -> tuple[int, int]:
        self._epoch, sample_in_epoch = super()._resume_incr_epoch()  # the epoch a resumption continues too
        return self._epoch, sample_in_epoch

    def __iter__(self):
        """Streaming's iteration; each sample also gets its ``epoch`` (the collator masks by it)."""
        failure = getattr(self, "_failure", None)
        if failure is not None:
            raise failure
        for sample in super().__iter__():
            sample["epoch"] = self._epoch
            yield sample
        failure = getattr(self, "_failure", None)  # set by a background thread: the epoch was cut short
        if failure is not None:
            raise failure

    def check_raw_shard(self, shard_id: int) -> None:
        """Compare a raw shard file with the hash its index recorded, once per shard and process.

        A raw (decompressed) copy is read as it is, whatever became of its ``.zstd``; only this check
        tells an intact copy from a damaged one. Shards written without hashes are not checked."""
        checked = self.__dict__.setdefault("_checked_shards", set())
        if shard_id in checked:
            return
        shard = self.shards[shard_id]
        raw_info, _ = shard.file_pairs[0]
        expected = (raw_info.hashes or {}).get("sha1")
        path = Path(shard.dirname, shard.split, raw_info.basename)
        if not path.is_file():  # not decompressed yet: checked once it is
            return
        if expected:
            found = get_hash("sha1", path.read_bytes())
            if found != expected:
                raise self.shard_error(shard_id, f"{raw_info.basename} does not match the sha1 its index.json "
                                                 f"records ({found[:12]}... instead of {expected[:12]}...)")
        checked.add(shard_id)

    def get_item(self, sample_id: int, retry: int = 7) -> dict[str, Any]:
        shard_id, _ = self.spanner[sample_id]
        try:
            sample = super().get_item(sample_id, retry)
        except (FileNotFoundError, CorruptShardError):
            raise
        except Exception as exc:  # decompression/decoding failures of a damaged shard
            self.check_raw_shard(shard_id)  # a damaged raw copy says so first
            raise self.shard_error(shard_id, f"could not read sample {sample_id} ({type(exc).__name__}: {exc})") from exc
        self.check_raw_shard(shard_id)  # before the first sample of a shard is used (once per process)
        if self.column == TOKENS_COLUMN:
            ids = np.asarray(sample[TOKENS_COLUMN][: self.max_seq_len], dtype=np.int64)
            if len(ids) and not (0 <= ids.min() and ids.max() < self.vocab_size):
                raise self.shard_error(shard_id, f"sample {sample_id} holds token ids from {ids.min()} to {ids.max()}, "
                                                 f"outside the tokenizer's vocabulary of {self.vocab_size}",
                                       "was written with another tokenizer: point the run at that one, or convert "
                                       "the corpus again with this one")
        else:
            ids = self.tokenize(sample[TEXT_COLUMN])
        return {"input_ids": ids, "sample_id": int(sample_id)}

    def __enter__(self) -> "StreamingTextDataset":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Release this dataset's shared memory now (see :func:`release_shared_memory`)."""
        release_shared_memory(self)


def release_shared_memory(dataset: StreamingDataset) -> None:
    """Release a streaming dataset's shared memory now instead of at interpreter exit.

    Streaming keeps every block it opens (and its file descriptor) alive through an ``atexit`` hook,
    and each new dataset opens the blocks of the live ones while it looks for a free name prefix: a
    process that builds many datasets (a sweep, a notebook, a test session) runs out of file
    descriptors without this. Call it once the loaders that read the dataset are done.
    """
    prefix = f"{dataset._shm_prefix_int:06}_"  # streaming names every block of a dataset this way
    # the dataset's own blocks and the handles other datasets opened on them, which only their
    # atexit hooks still reference
    blocks = [obj for obj in gc.get_objects() if type(obj) is SharedMemory  # type(): no __class__ lookups
              and getattr(obj, "shm", None) is not None and obj.shm.name.startswith(prefix)]
    for shm in blocks:
        atexit.unregister(shm.cleanup)
        shm.cleanup()
