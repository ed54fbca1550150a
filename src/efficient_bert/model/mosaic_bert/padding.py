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


def unpad(hidden: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, Unpadded]:
    """(batch, seq, ...) -> (total_tokens, ...) keeping only positions where the mask is 1."""
    batch, seqlen = attention_mask.shape
    lengths = attention_mask.sum(dim=1, dtype=torch.int32)
    indices = torch.nonzero(attention_mask.flatten(), as_tuple=False).flatten()
    cu_seqlens = F.pad(torch.cumsum(lengths, dim=0, dtype=torch.int32), (1, 0))
    info = Unpadded(indices, cu_seqlens, int(lengths.max()), batch, seqlen)
    return hidden.reshape(batch * seqlen, *hidden.shape[2:])[indices], info


def pad(unpadded: torch.Tensor, info: Unpadded) -> torch.Tensor:
    """Inverse of :func:`unpad`; padding positions are zero."""
    out = unpadded.new_zeros(info.batch * info.seqlen, *unpadded.shape[1:])
    out[info.indices] = unpadded
    return out.view(info.batch, info.seqlen, *unpadded.shape[1:])
