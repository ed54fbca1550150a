"""Removing padding once after the embeddings and restoring it where a kernel needs a padded view."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch
import torch.nn.functional as F


@dataclass
class Unpadded:
    """Where the real tokens of a (batch, seq) input live once flattened to (total_tokens, ...)."""

    indices: torch.Tensor  # (total_tokens,) positions in the flattened (batch * seq) input
    cu_seqlens: torch.Tensor  # (batch + 1,) int32 cumulative sequence lengths
    max_seqlen: int
    batch: int
    seqlen: int


def locate(attention_mask: torch.Tensor, seq_lengths: Optional[Sequence[int]] = None) -> Unpadded:
    """Where the real tokens of a (batch, seq) mask are.

    The token count sets every shape after this point, so the host must know it. Given only the
    mask on a GPU, reading it is a host sync that leaves the GPU idle while the host catches up;
    ``seq_lengths`` (the per-row counts, which the collator knows on the host) avoid it. They must
    match the mask: a wrong count would silently drop or repeat tokens, so it is checked whenever the
    check costs nothing (mask on the CPU).
    """
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


def pad(unpadded: torch.Tensor, info: Unpadded) -> torch.Tensor:
    """(total_tokens, ...) -> (batch, seq, ...) at the positions of :func:`locate`; padding is zero."""
    out = unpadded.new_zeros(info.batch * info.seqlen, *unpadded.shape[1:])
    out[info.indices] = unpadded
    return out.view(info.batch, info.seqlen, *unpadded.shape[1:])
