"""``StreamingTextDataset``: MDS shards (local, or remote with a local cache) as token-id samples."""

from __future__ import annotations

import atexit
import gc
from pathlib import Path
from typing import Any, Optional

import numpy as np
from streaming import StreamingDataset
from streaming.base.shared import SharedMemory

from efficient_bert.registry import ConfigError

TEXT_COLUMN, TOKENS_COLUMN = "text", "tokens"


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
            raise ConfigError(f"max_seq_len must be at least 8, got {max_seq_len}")
        index = Path(local, split or "", "index.json")
        if remote is None and not index.is_file():
            raise ConfigError(f"no MDS index at {index}: convert a corpus first, e.g. "
                              f"`python convert_c4.py --in_root CORPUS --out_root {local} --splits {split or 'train'}`, "
                              "or set `remote` to stream it from object storage")
        super().__init__(local=local, remote=remote, split=split, shuffle=shuffle, **kwargs)
        self.tokenizer = tokenizer
        self.max_seq_len = max_seq_len
        columns = set(self.shards[0].column_names) if self.shards else set()
        if TOKENS_COLUMN in columns:
            self.column = TOKENS_COLUMN
        elif TEXT_COLUMN in columns:
            self.column = TEXT_COLUMN
        else:
            self.close()
            raise ConfigError(f"shards under {Path(local, split or '')} have columns {sorted(columns)}; expected "
                              f"'{TEXT_COLUMN}' (convert_c4.py) or '{TOKENS_COLUMN}' (convert_c4.py --concat_tokens)")

    def tokenize(self, text: str) -> np.ndarray:
        ids = self.tokenizer(text, truncation=True, max_length=self.max_seq_len, add_special_tokens=True,
                             verbose=False)["input_ids"]
        return np.asarray(ids, dtype=np.int64)

    def get_item(self, sample_id: int, retry: int = 7) -> dict[str, Any]:
        try:
            sample = super().get_item(sample_id, retry)
        except FileNotFoundError:
            raise
        except Exception as exc:  # decompression/decoding failures of a damaged shard
            shard_id, _ = self.spanner[sample_id]
            shard = self.shards[shard_id]
            files = ", ".join(info.basename for pair in shard.file_pairs for info in pair if info is not None)
            raise RuntimeError(
                f"could not read sample {sample_id} from shard {shard_id} ({files}) under {Path(shard.dirname, shard.split)}: "
                f"{type(exc).__name__}: {exc}. The shard is corrupt or incomplete: "
                "re-run convert_c4.py with --overwrite, or delete the local cache so it is downloaded again") from exc
        if self.column == TOKENS_COLUMN:
            ids = np.asarray(sample[TOKENS_COLUMN][: self.max_seq_len], dtype=np.int64)
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
