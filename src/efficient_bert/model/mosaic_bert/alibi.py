"""ALiBi attention biases (Press et al. 2022, "Train Short, Test Long")."""

from __future__ import annotations

import functools
import math

import torch


def alibi_slopes(num_heads: int) -> torch.Tensor:
    """Per-head slopes: the geometric sequence 2^(-8/n), 2^(-16/n), ... for n heads.

    When n is not a power of two, the paper's rule: take the slopes of the closest power of two
    below n, then the odd-indexed slopes of twice that power for the remaining heads.
    """
    def power_of_two(n: int) -> list[float]:
        start = 2 ** (-8 / n)
        return [start ** (i + 1) for i in range(n)]

    if math.log2(num_heads).is_integer():
        slopes = power_of_two(num_heads)
    else:
        lower = 2 ** math.floor(math.log2(num_heads))
        slopes = power_of_two(lower) + power_of_two(2 * lower)[0::2][: num_heads - lower]
    return torch.tensor(slopes, dtype=torch.float32)


@functools.lru_cache(maxsize=16)
def alibi_slopes_on(num_heads: int, device: torch.device) -> torch.Tensor:
    """:func:`alibi_slopes` kept on ``device`` (read-only): a fresh host-to-GPU copy in every forward
    would make the host wait for all queued GPU work."""
    return alibi_slopes(num_heads).to(device)


def alibi_bias(num_heads: int, seq_len: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """(heads, seq, seq) additive bias -slope * |i - j|: symmetric, for a bidirectional encoder."""
    pos = torch.arange(seq_len, device=device)
    distance = (pos[None, :] - pos[:, None]).abs().to(dtype)
    slopes = alibi_slopes_on(num_heads, torch.device(device or "cpu"))
    return -slopes.to(dtype)[:, None, None] * distance
