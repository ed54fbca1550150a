"""Batching with dynamic MLM masking: a fresh mask for every sample in every epoch, drawn by counter."""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import numpy as np
import torch


def batch_rows(batch: Mapping[str, Any]) -> int:
    """The number of rows of a collated MLM batch."""
    return int(batch["input_ids"].shape[0])


def host_counts(attention_mask: torch.Tensor, labels: torch.Tensor) -> dict[str, list[int]]:
    """Per-row real and labelled token counts as Python lists (``seq_lengths``, ``masked_counts``),
    computed on the host where the batch is made, so unpadded models never read them from the GPU."""
    return {"seq_lengths": attention_mask.sum(dim=1).tolist(), "masked_counts": (labels != -100).sum(dim=1).tolist()}


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix(z: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer on a uint64 array (arithmetic wraps): one well-mixed word per input word."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def counter_uniforms(seed: int, epochs: np.ndarray, sample_ids: np.ndarray, width: int, streams: int) -> np.ndarray:
    """Uniforms in [0, 1) of shape (streams, rows, width): a hash of (seed, epoch, sample_id, position, stream)."""
    with np.errstate(over="ignore"):
        key = _mix((np.full(len(sample_ids), seed, dtype=np.uint64) + np.uint64(1)) * _GOLDEN)
        key = _mix(key ^ (epochs.astype(np.uint64) + np.uint64(1)) * _GOLDEN)
        key = _mix(key ^ (sample_ids.astype(np.uint64) + np.uint64(1)) * _GOLDEN)
        counter = np.arange(width * streams, dtype=np.uint64).reshape(streams, 1, width) + np.uint64(1)
        bits = _mix(key[None, :, None] ^ counter * _GOLDEN)
    return (bits >> np.uint64(11)).astype(np.float64) * 2.0 ** -53


class MLMCollator:
    """Pad samples into a batch and mask them for masked-language modelling (Devlin et al. 2019).

    Each non-special, non-pad token is selected independently with probability ``mlm_probability``
    (default 0.30, the Mosaic BERT rate). Of the selected tokens, 80% become ``[MASK]``, 10% a random
    regular token and 10% stay unchanged; ``labels`` hold the original id at selected positions and
    -100 elsewhere. Batches are padded to the longest sample, rounded up to ``pad_to_multiple_of``.

    Besides the tensors, a batch carries ``seq_lengths`` and ``masked_counts``: Python lists of each
    row's real and labelled token counts. Unpadded models size their buffers from them instead of
    reading the GPU (a host sync); Composer splits lists per microbatch like tensors. Code that keeps
    a subset of rows must subset these lists too.

    Masks are drawn by counter, not from an RNG stream: every draw for a token is a hash of
    ``(seed, epoch, sample_id, position)``. A sample's mask therefore depends on nothing else: not
    the batch it lands in, the worker that loads it, the process's RNG state or a resumption from a
    checkpoint. It changes from epoch to epoch (dynamic masking, Liu et al. 2019), taking the epoch
    from each sample's ``epoch`` entry (:class:`StreamingTextDataset` sets it); with
    ``vary_by_epoch=False`` a sample keeps one mask for good, as an evaluation set should. A sample
    without a ``sample_id`` is keyed by its row in the batch.
    """

    def __init__(self, tokenizer: Any, mlm_probability: float = 0.30, pad_to_multiple_of: int = 8, seed: int = 0,
                 vary_by_epoch: bool = True, pack_to: Optional[int] = None):
        if not 0.0 < mlm_probability < 1.0:
            raise ValueError(f"mlm_probability must be in (0, 1), got {mlm_probability}")
        if pack_to is not None and pack_to < 1:
            raise ValueError(f"pack_to is a row length in tokens, got {pack_to}")
        self.pack_to = pack_to
        if seed < 0:
            raise ValueError(f"the masking seed must be a non-negative integer, got {seed}")
        self.mlm_probability = mlm_probability
        self.pad_to_multiple_of = pad_to_multiple_of
        self.seed = int(seed)
        self.vary_by_epoch = vary_by_epoch
        self.pad_id = int(tokenizer.pad_token_id)
        self.mask_id = int(tokenizer.mask_token_id)
        special = set(int(i) for i in tokenizer.all_special_ids)
        vocab = len(tokenizer)
        self.special_ids = torch.tensor(sorted(special), dtype=torch.long)
        self.regular_ids = torch.tensor([i for i in range(vocab) if i not in special], dtype=torch.long)

    def width(self, longest: int) -> int:
        """A batch's row width: ``longest`` rounded up to ``pad_to_multiple_of``."""
        m = self.pad_to_multiple_of
        return -(-longest // m) * m if m > 1 else longest

    def pad(self, sequences: Sequence[Any]) -> torch.Tensor:
        width = self.width(max(len(s) for s in sequences))
        batch = torch.full((len(sequences), width), self.pad_id, dtype=torch.long)
        for row, seq in enumerate(sequences):
            batch[row, : len(seq)] = torch.as_tensor(np.asarray(seq), dtype=torch.long)
        return batch

    def mask(self, input_ids: torch.Tensor, sample_ids: Sequence[int], epochs: Optional[Sequence[int]] = None
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (masked input_ids, labels) for an already padded batch whose rows are ``sample_ids``."""
        rows, width = input_ids.shape
        epochs = np.zeros(rows, dtype=np.int64) if epochs is None or not self.vary_by_epoch else np.asarray(epochs)
        select, roll, pick = torch.from_numpy(counter_uniforms(self.seed, epochs, np.asarray(sample_ids), width, 3))
        maskable = ~torch.isin(input_ids, self.special_ids)  # pad is special too
        selected = (select < self.mlm_probability) & maskable
        labels = torch.where(selected, input_ids, torch.full_like(input_ids, -100))
        to_mask = selected & (roll < 0.8)
        to_random = selected & (roll >= 0.8) & (roll < 0.9)
        masked = input_ids.clone()
        masked[to_mask] = self.mask_id
        picks = (pick[to_random] * len(self.regular_ids)).long()
        masked[to_random] = self.regular_ids[picks]
        return masked, labels

    def __call__(self, examples: Sequence[dict[str, Any]]) -> dict[str, Any]:
        input_ids = self.pad([ex["input_ids"] for ex in examples])
        attention_mask = (input_ids != self.pad_id).long()
        sample_ids = [int(ex.get("sample_id", row)) for row, ex in enumerate(examples)]
        masked, labels = self.mask(input_ids, sample_ids, [int(ex.get("epoch", 0)) for ex in examples])
        if self.pack_to is not None:
            return self.packed(masked, labels, attention_mask.sum(dim=1).tolist())
        batch = {
            "input_ids": masked,
            "attention_mask": attention_mask,
            "token_type_ids": torch.zeros_like(input_ids),
            "labels": labels,
            **host_counts(attention_mask, labels),
        }
        if "sample_id" in examples[0]:
            batch["sample_id"] = torch.tensor(sample_ids, dtype=torch.long)
        return batch

    def packed(self, input_ids: torch.Tensor, labels: torch.Tensor, lengths: Sequence[int]) -> dict[str, Any]:
        """Masked documents (one per row of ``input_ids``) packed into rows of at most ``pack_to``
        tokens, first-fit by decreasing length. The mask numbers each row's documents 1, 2, ...
        (0: padding) and ``document_lengths`` lists them per row, so that an unpadded model keeps
        attention within each document; the per-row counts are the rows' sums."""
        order = sorted(range(len(lengths)), key=lambda i: -lengths[i])  # stable: ties keep the batch order
        free = np.full(len(lengths), self.pack_to, dtype=np.int64)  # room left in each row opened so far
        rows_open = 0
        placed: list[list[int]] = []  # the documents of each row
        for doc in order:
            fits = free[:rows_open] >= lengths[doc]
            row = int(fits.argmax()) if rows_open and fits.any() else rows_open
            if row == rows_open:
                rows_open += 1
                placed.append([])
            placed[row].append(doc)
            free[row] -= lengths[doc]
        width = self.width(self.pack_to - int(free[:rows_open].min()))
        # one scatter per tensor: every document's tokens, in row order, to their flat positions
        per_row = [len(row_docs) for row_docs in placed]
        docs = [doc for row_docs in placed for doc in row_docs]
        sizes = np.array([lengths[d] for d in docs], dtype=np.int64)
        row_of = np.repeat(np.arange(len(placed)), per_row)
        row_first = np.r_[0, np.cumsum(per_row)[:-1]][row_of]  # index in docs of its row's first document
        offset = np.cumsum(sizes) - sizes  # each document's start in the concatenation
        start = row_of * width + offset - offset[row_first]  # and in the flat output
        target = torch.from_numpy(np.repeat(start - offset, sizes) + np.arange(int(sizes.sum())))
        number = torch.from_numpy(np.repeat(np.arange(len(docs)) - row_first + 1, sizes))
        index = torch.tensor(docs, dtype=torch.long)
        keep = torch.arange(input_ids.shape[1]) < torch.from_numpy(sizes)[:, None]
        out_ids = torch.full((len(placed), width), self.pad_id, dtype=torch.long)
        out_labels = torch.full_like(out_ids, -100)
        numbers = torch.zeros_like(out_ids)
        out_ids.view(-1)[target] = input_ids[index][keep]
        out_labels.view(-1)[target] = labels[index][keep]
        numbers.view(-1)[target] = number
        counts = host_counts(numbers != 0, out_labels)
        return {"input_ids": out_ids, "attention_mask": numbers, "token_type_ids": torch.zeros_like(out_ids),
                "labels": out_labels, **counts, "document_lengths": [[lengths[d] for d in row_docs] for row_docs in placed]}
