"""Triton kernels for the Mosaic BERT hot path, each with a PyTorch reference of the same math, and
ALiBi attention on FlashAttention-4's kernels (``flash_attention4``, optional package).

The ops are registered with ``torch.library`` with an autograd rule, so they work in eager mode,
under autograd and inside ``torch.compile`` regions (see ``traceable.py`` for how). Triton runs on CUDA devices only;
:func:`triton_usable` says whether tensors on a device can take the Triton path.
"""

from __future__ import annotations

import functools
import importlib.util
import os

import torch


@functools.cache
def triton_available() -> bool:
    return importlib.util.find_spec("triton") is not None


def triton_usable(device: torch.device) -> bool:
    # TRITON_INTERPRET=1 runs the kernels on CPU tensors (slowly), which lets them be debugged anywhere
    return triton_available() and (device.type == "cuda" or os.environ.get("TRITON_INTERPRET") == "1")


from efficient_bert.kernels.cross_entropy import cross_entropy, cross_entropy_reference  # noqa: E402
from efficient_bert.kernels.geglu import geglu, geglu_reference  # noqa: E402
from efficient_bert.kernels.layer_norm import (add_layer_norm, add_layer_norm_and_sum,  # noqa: E402
                                               add_layer_norm_and_sum_reference, add_layer_norm_reference)
from efficient_bert.kernels.short_attention import short_attention, short_attention_reference  # noqa: E402

__all__ = ["add_layer_norm", "add_layer_norm_and_sum", "add_layer_norm_and_sum_reference", "add_layer_norm_reference",
           "cross_entropy", "cross_entropy_reference", "geglu", "geglu_reference", "short_attention",
           "short_attention_reference", "triton_available", "triton_usable"]
