"""Removing padding once after the embeddings and restoring it where a kernel needs a padded view."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch
import torch.nn.functional as F


@dataclass
class Unpadded:
    """Where the real tokens of a (batch, seq) input live once flattened to (total_tokens, ...).

    A sequence is a row, or with packed rows (several documents per row) a document: attention stays
    within a sequence, and ``cu_seqlens``/``max_seqlen`` describe sequences."""

    indices: torch.Tensor  # (total_tokens,) positions in the flattened (batch * seq) input
    cu_seqlens: torch.Tensor  # (sequences + 1,) int32 cumulative sequence lengths
    max_seqlen: int
    batch: int
    seqlen: int
    # packed rows only: positions of the flat tokens in a (sequences, max_seqlen) grid
    sequence_indices: Optional[torch.Tensor] = None
    # packed rows only: each flat token's sequence (document), and the rows as cumulative lengths
    # and the longest, for attention that runs one tile per row and masks across documents
    documents: Optional[torch.Tensor] = None
    row_cu_seqlens: Optional[torch.Tensor] = None
    max_row_tokens: int = 0

    @property
    def sequences(self) -> int:
        return self.cu_seqlens.shape[0] - 1

    def attention_grid(self) -> tuple[torch.Tensor, int, int]:
        """(positions, rows, width) of the padded view that attention backends without varlen
        support build: one row per sequence."""
        if self.sequence_indices is None:
            return self.indices, self.batch, self.seqlen
        return self.sequence_indices, self.sequences, self.max_seqlen

    def positions(self) -> torch.Tensor:
        """(total_tokens,) each token's position within its sequence (its column in the padded input,
        or in its document for packed rows)."""
        grid, _, width = self.attention_grid()
        return grid % width


def locate(attention_mask: torch.Tensor, seq_lengths: Optional[Sequence[int]] = None,
           document_lengths: Optional[Sequence[Sequence[int]]] = None) -> Unpadded:
    """Where the real tokens of a (batch, seq) mask are.

    The token count sets every shape after this point, so the host must know it. Given only the
    mask on a GPU, reading it is a host sync that leaves the GPU idle while the host catches up;
    ``seq_lengths`` (the per-row counts, which the collator knows on the host) avoid it. They must
    match the mask: a wrong count would silently drop or repeat tokens, so it is checked whenever the
    check costs nothing (mask on the CPU).

    Packed rows (:class:`~efficient_bert.data.mlm_collator.MLMCollator` with ``pack_to``) number
    their documents in the mask (1, 2, ... in each row, 0 for padding) and come with
    ``document_lengths``, each row's document lengths in order; every document is then a sequence.
    """
    if document_lengths is not None:
        return _locate_documents(attention_mask, seq_lengths, document_lengths)
    batch, seqlen = attention_mask.shape
    lengths = attention_mask.sum(dim=1, dtype=torch.int32)
    cu_seqlens = F.pad(torch.cumsum(lengths, dim=0, dtype=torch.int32), (1, 0))
    flat = attention_mask.flatten()
    if seq_lengths is None:
        return Unpadded(torch.nonzero(flat).flatten(), cu_seqlens, int(lengths.max()), batch, seqlen)
    seq_lengths = [int(n) for n in seq_lengths]
    if len(seq_lengths) != batch or (attention_mask.device.type == "cpu" and lengths.tolist() != seq_lengths):
        raise ValueError(f"seq_lengths {seq_lengths[:8]}... do not match the attention mask's row sums "
                         f"{lengths.tolist()[:8]}...; pass the number of real tokens of each row")
    indices = torch.nonzero_static(flat, size=sum(seq_lengths)).flatten()
    return Unpadded(indices, cu_seqlens, max(seq_lengths), batch, seqlen)


def locate_tokens(input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor] = None,
                  seq_lengths: Optional[Sequence[int]] = None,
                  document_lengths: Optional[Sequence[Sequence[int]]] = None) -> Unpadded:
    """:func:`locate` for a model's inputs: without a mask, every token of every row is real."""
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
        seq_lengths = [input_ids.shape[1]] * input_ids.shape[0]
    return locate(attention_mask, seq_lengths, document_lengths)


def labelled_tokens(labels: torch.Tensor, info: Unpadded, masked_counts: Optional[Sequence[int]] = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(positions, labels)`` of the labelled tokens (label != -100) among the unpadded ones, for a head that
    runs only there. ``masked_counts`` (labelled tokens per row), when the caller knows them on the host,
    spare the host the wait for the selection's size; without them that wait comes here, before the
    encoder is queued."""
    flat_labels = labels.flatten()[info.indices]
    labelled = flat_labels != -100
    if masked_counts is None:
        masked = torch.nonzero(labelled).flatten()
    else:
        total = sum(int(n) for n in masked_counts)
        if labelled.device.type == "cpu" and int(labelled.sum()) != total:
            raise ValueError(f"masked_counts sum to {total} but labels have {int(labelled.sum())} "
                             "labelled tokens; pass the number of labels != -100 of each row")
        masked = torch.nonzero_static(labelled, size=total).flatten()
    return masked, flat_labels.index_select(0, masked)


def _locate_documents(attention_mask: torch.Tensor, seq_lengths: Optional[Sequence[int]],
                      document_lengths: Sequence[Sequence[int]]) -> Unpadded:
    """:func:`locate` for packed rows: document lengths come from the mask on the device (no host
    read), their number and the longest from the host lists."""
    batch, seqlen = attention_mask.shape
    per_row = [[int(n) for n in row] for row in document_lengths]
    rows = [sum(row) for row in per_row]
    if len(per_row) != batch or (seq_lengths is not None and [int(n) for n in seq_lengths] != rows):
        raise ValueError("document_lengths must hold one list per row, summing to that row's seq_lengths")
    most = max((len(row) for row in per_row), default=0)
    if attention_mask.device.type == "cpu":
        counts = [[int((r == d + 1).sum()) for d in range(len(row))] for r, row in zip(attention_mask, per_row)]
        if counts != per_row or int((attention_mask > most).sum()):
            raise ValueError(f"document_lengths {per_row[:2]}... do not match the documents numbered in the "
                             f"attention mask {counts[:2]}...")
    total, documents = sum(rows), sum(len(row) for row in per_row)
    flat = attention_mask.flatten()
    indices = torch.nonzero_static(flat, size=total).flatten()
    # (row, document) slots in row-major order; the non-empty ones are the documents, in order
    row_of = torch.arange(batch * seqlen, device=flat.device) // seqlen
    slot = (row_of * most + flat - 1)[indices]
    slots = torch.zeros(batch * most, dtype=torch.long, device=flat.device).index_add_(0, slot, torch.ones_like(slot))
    lengths = slots[torch.nonzero_static(slots, size=documents).flatten()].to(torch.int32)
    cu_seqlens = F.pad(torch.cumsum(lengths, dim=0, dtype=torch.int32), (1, 0))
    max_seqlen = max((max(row) for row in per_row if row), default=0)
    sequence = torch.repeat_interleave(torch.arange(documents, device=flat.device), lengths, output_size=total)
    position = torch.arange(total, device=flat.device) - cu_seqlens[sequence]
    row_cu_seqlens = F.pad(torch.cumsum((attention_mask > 0).sum(dim=1, dtype=torch.int32), dim=0, dtype=torch.int32),
                           (1, 0))
    return Unpadded(indices, cu_seqlens, max_seqlen, batch, seqlen, sequence * max_seqlen + position, sequence,
                    row_cu_seqlens, max(rows, default=0))


def scatter(unpadded: torch.Tensor, positions: torch.Tensor, rows: int, width: int) -> torch.Tensor:
    """(total_tokens, ...) -> (rows, width, ...) with the tokens at ``positions``; padding is zero."""
    out = unpadded.new_zeros(rows * width, *unpadded.shape[1:])
    out[positions] = unpadded
    return out.view(rows, width, *unpadded.shape[1:])


def pad(unpadded: torch.Tensor, info: Unpadded) -> torch.Tensor:
    """(total_tokens, ...) -> (batch, seq, ...) at the positions of :func:`locate`; padding is zero."""
    return scatter(unpadded, info.indices, info.batch, info.seqlen)
