"""Removing padding once after the embeddings and restoring it where a kernel needs a padded view."""

from __future__ import annotations

from dataclasses import dataclass

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


def locate(attention_mask: torch.Tensor) -> Unpadded:
    """Where the real tokens of a (batch, seq) mask are (a host sync: the count sets every shape after)."""
    batch, seqlen = attention_mask.shape
    lengths = attention_mask.sum(dim=1, dtype=torch.int32)
    indices = torch.nonzero(attention_mask.flatten(), as_tuple=False).flatten()
    cu_seqlens = F.pad(torch.cumsum(lengths, dim=0, dtype=torch.int32), (1, 0))
    return Unpadded(indices, cu_seqlens, int(lengths.max()), batch, seqlen)


def pad(unpadded: torch.Tensor, info: Unpadded) -> torch.Tensor:
    """(total_tokens, ...) -> (batch, seq, ...) at the positions of :func:`locate`; padding is zero."""
    out = unpadded.new_zeros(info.batch * info.seqlen, *unpadded.shape[1:])
    out[info.indices] = unpadded
    return out.view(info.batch, info.seqlen, *unpadded.shape[1:])
