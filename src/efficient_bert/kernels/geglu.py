"""Fused (bias +) GELU + gate of a gated linear unit (Triton), forward and backward.

``geglu(h, bias)`` with ``h = x @ [W; V]`` of shape (..., 2 * inner) returns
``gelu(h[..., :inner] + b_W) * (h[..., inner:] + b_V)`` (exact erf GELU) in one pass, so neither
the GELU output nor the biased halves are written to memory. The backward recomputes them.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from efficient_bert.kernels.traceable import traceable

try:
    import triton
    import triton.language as tl
except ImportError:
    triton = None

BLOCK = 1024


def geglu_reference(h: Tensor, bias: Optional[Tensor] = None) -> Tensor:
    if bias is not None:
        h = h + bias
    gate, up = h.chunk(2, dim=-1)
    return F.gelu(gate, approximate="none") * up


if triton is not None:

    @triton.jit
    def _load_halves(H, Bias, row, col, inner, inside, HAS_BIAS: tl.constexpr):
        gate = tl.load(H + row * 2 * inner + col, mask=inside, other=0.0).to(tl.float32)
        up = tl.load(H + row * 2 * inner + inner + col, mask=inside, other=0.0).to(tl.float32)
        if HAS_BIAS:
            gate += tl.load(Bias + col, mask=inside, other=0.0).to(tl.float32)
            up += tl.load(Bias + inner + col, mask=inside, other=0.0).to(tl.float32)
        return gate, up

    @triton.jit
    def _forward_kernel(H, Bias, Out, numel, inner, HAS_BIAS: tl.constexpr, BLOCK: tl.constexpr):
        idx = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        inside = idx < numel
        row, col = idx // inner, idx % inner
        gate, up = _load_halves(H, Bias, row, col, inner, inside, HAS_BIAS)
        gelu = 0.5 * gate * (1.0 + tl.math.erf(gate * 0.7071067811865476))
        tl.store(Out + idx, (gelu * up).to(Out.dtype.element_ty), mask=inside)

    @triton.jit
    def _backward_kernel(DOut, H, Bias, DH, numel, inner, HAS_BIAS: tl.constexpr, BLOCK: tl.constexpr):
        idx = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        inside = idx < numel
        row, col = idx // inner, idx % inner
        gate, up = _load_halves(H, Bias, row, col, inner, inside, HAS_BIAS)
        dout = tl.load(DOut + idx, mask=inside, other=0.0).to(tl.float32)
        cdf = 0.5 * (1.0 + tl.math.erf(gate * 0.7071067811865476))
        pdf = tl.exp(-0.5 * gate * gate) * 0.3989422804014327  # 1 / sqrt(2 pi)
        dgate = dout * up * (cdf + gate * pdf)
        dup = dout * gate * cdf
        tl.store(DH + row * 2 * inner + col, dgate.to(DH.dtype.element_ty), mask=inside)
        tl.store(DH + row * 2 * inner + inner + col, dup.to(DH.dtype.element_ty), mask=inside)


@torch.library.triton_op("efficient_bert::geglu_forward", mutates_args={})
def _forward(h: Tensor, bias: Optional[Tensor]) -> Tensor:
    h = h.contiguous()
    inner = h.shape[-1] // 2
    out = h.new_empty(*h.shape[:-1], inner)
    numel = out.numel()
    traceable(_forward_kernel)[(triton.cdiv(numel, BLOCK),)](h, bias if bias is not None else h, out, numel, inner,
                                                  HAS_BIAS=bias is not None, BLOCK=BLOCK, num_warps=4)
    return out


@torch.library.triton_op("efficient_bert::geglu_backward", mutates_args={})
def _backward(dout: Tensor, h: Tensor, bias: Optional[Tensor]) -> Tensor:
    dout = dout.contiguous()
    dh = torch.empty_like(h)
    numel = dout.numel()
    traceable(_backward_kernel)[(triton.cdiv(numel, BLOCK),)](dout, h, bias if bias is not None else h, dh, numel,
                                                   h.shape[-1] // 2, HAS_BIAS=bias is not None, BLOCK=BLOCK,
                                                   num_warps=4)
    return dh


def _setup_context(ctx, inputs, output):
    h, bias = inputs
    ctx.save_for_backward(h, bias)


def _backward_rule(ctx, dout):
    h, bias = ctx.saved_tensors
    dh = _backward(dout, h.contiguous(), bias)
    dbias = dh.reshape(-1, dh.shape[-1]).float().sum(0).to(bias.dtype) if bias is not None else None
    return dh, dbias


_forward.register_autograd(_backward_rule, setup_context=_setup_context)


def geglu(h: Tensor, bias: Optional[Tensor] = None) -> Tensor:
    """``gelu(gate) * up`` of the two halves of ``h`` (plus ``bias``), fused."""
    return _forward(h, bias)

