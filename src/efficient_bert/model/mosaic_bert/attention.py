"""Attention backends over unpadded tokens with a symmetric ALiBi bias.

Every backend takes ``qkv`` of shape (total_tokens, 3, heads, head_dim) and returns
(total_tokens, heads * head_dim). ``eager`` is the reference math; ``sdpa`` runs PyTorch's fused
scaled-dot-product attention on a padded view with an additive ALiBi + key-padding bias.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from efficient_bert.model.mosaic_bert.alibi import alibi_bias
from efficient_bert.model.mosaic_bert.padding import Unpadded, pad

BACKENDS = ("auto", "sdpa", "eager")


def _padded_bias(info: Unpadded, num_heads: int, device, dtype) -> torch.Tensor:
    """(batch, heads, seq, seq): ALiBi plus -inf on padded keys."""
    bias = alibi_bias(num_heads, info.seqlen, device=device, dtype=torch.float32)
    mask = torch.zeros(info.batch * info.seqlen, device=device, dtype=torch.bool)
    mask[info.indices] = True
    keys = torch.zeros(info.batch, 1, 1, info.seqlen, device=device, dtype=torch.float32)
    keys.masked_fill_(~mask.view(info.batch, 1, 1, info.seqlen), float("-inf"))
    return (bias[None] + keys).to(dtype)


def _split(qkv: torch.Tensor, info: Unpadded) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    padded = pad(qkv, info)  # (batch, seq, 3, heads, dim)
    q, k, v = padded.permute(2, 0, 3, 1, 4).unbind(0)  # each (batch, heads, seq, dim)
    return q, k, v


def _merge(out: torch.Tensor, info: Unpadded) -> torch.Tensor:
    batch, heads, seq, dim = out.shape
    return out.transpose(1, 2).reshape(batch * seq, heads * dim)[info.indices]


def eager_attention(qkv: torch.Tensor, info: Unpadded, dropout_p: float = 0.0) -> torch.Tensor:
    q, k, v = _split(qkv, info)
    scores = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5
    scores = scores + _padded_bias(info, q.shape[1], q.device, scores.dtype)
    probs = F.dropout(torch.softmax(scores.float(), dim=-1).to(q.dtype), p=dropout_p)
    return _merge(probs @ v, info)


def sdpa_attention(qkv: torch.Tensor, info: Unpadded, dropout_p: float = 0.0) -> torch.Tensor:
    q, k, v = _split(qkv, info)
    bias = _padded_bias(info, q.shape[1], q.device, q.dtype)
    return _merge(F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout_p), info)


def resolve_backend(name: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f"unknown attention backend '{name}'; choose one of {', '.join(BACKENDS)}")
    return "sdpa" if name == "auto" else name


ATTENTION = {"eager": eager_attention, "sdpa": sdpa_attention}
