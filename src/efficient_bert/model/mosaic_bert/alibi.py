"""ALiBi attention biases (Press et al. 2022, "Train Short, Test Long")."""

from __future__ import annotations

import functools

import torch

from efficient_bert.model.mosaic_bert.portable.modeling_mosaic_bert import alibi_slopes


@functools.lru_cache(maxsize=16)
def alibi_slopes_on(num_heads: int, device: torch.device) -> torch.Tensor:
    """:func:`alibi_slopes` kept on ``device`` (read-only): a fresh host-to-GPU copy in every forward
    would make the host wait for all queued GPU work."""
    return alibi_slopes(num_heads).to(device)

