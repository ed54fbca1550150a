"""ALiBi attention over packed (unpadded) sequences of at most 128 tokens (Triton).

BERT pretraining sequences are short, so one program holds a whole (sequence, head) tile: Q, K and
V come straight from the packed ``qkv`` buffer at the sequence's ``cu_seqlens`` offset, the
symmetric ALiBi bias and the length mask are computed in registers, and nothing is padded. The
backward recomputes the probabilities from the saved log-sum-exp and writes dQ, dK and dV into one
packed gradient. No attention dropout (the Mosaic BERT recipe trains with none).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

try:
    import triton
    import triton.language as tl
except ImportError:
    triton = None

MAX_SEQLEN = 128


def short_attention_reference(qkv: Tensor, cu_seqlens: Tensor, slopes: Tensor) -> Tensor:
    """Per-sequence float32 softmax attention with the ALiBi bias; (total, heads * dim)."""
    total, _, heads, dim = qkv.shape
    out = qkv.new_empty(total, heads * dim)
    bounds = cu_seqlens.tolist()
    for start, end in zip(bounds[:-1], bounds[1:]):
        q, k, v = qkv[start:end].float().permute(1, 2, 0, 3)  # (heads, n, dim) each
        pos = torch.arange(end - start, device=qkv.device)
        bias = -slopes[:, None, None] * (pos[None, :] - pos[:, None]).abs()
        probs = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(dim) + bias, dim=-1)
        out[start:end] = (probs @ v).transpose(0, 1).reshape(end - start, heads * dim).to(qkv.dtype)
    return out


if triton is not None:

    @triton.jit
    def _tile(QKV, CU, Slopes, heads, dim, scale, BLOCK: tl.constexpr, BLOCK_D: tl.constexpr):
        """Offsets, masks and the scaled, biased scores (log2 units) of this program's tile."""
        b = tl.program_id(0)
        h = tl.program_id(1)
        start = tl.load(CU + b)
        n = tl.load(CU + b + 1) - start
        rows = tl.arange(0, BLOCK)
        cols = tl.arange(0, BLOCK_D)
        valid = rows < n
        token = (start + rows).to(tl.int64)
        offs = token[:, None] * (3 * heads * dim) + h * dim + cols[None, :]
        mask = valid[:, None] & (cols[None, :] < dim)
        q = tl.load(QKV + offs, mask=mask, other=0.0)
        k = tl.load(QKV + offs + heads * dim, mask=mask, other=0.0)
        slope = tl.load(Slopes + h)
        distance = tl.abs(rows[:, None] - rows[None, :]).to(tl.float32)
        log2e = 1.4426950408889634
        s = (tl.dot(q, tl.trans(k)) * scale - slope * distance) * log2e
        s = tl.where(valid[None, :], s, float("-inf"))
        return h, token, valid, offs, mask, q, k, s

    @triton.jit
    def _forward_kernel(QKV, CU, Slopes, Out, LSE, total, heads, dim, scale,
                        BLOCK: tl.constexpr, BLOCK_D: tl.constexpr):
        h, token, valid, offs, mask, q, k, s = _tile(QKV, CU, Slopes, heads, dim, scale, BLOCK, BLOCK_D)
        v = tl.load(QKV + offs + 2 * heads * dim, mask=mask, other=0.0)
        m = tl.max(s, axis=1)
        p = tl.exp2(s - m[:, None])
        l = tl.sum(p, axis=1)
        o = tl.dot(p.to(v.dtype), v) / l[:, None]
        out_offs = token[:, None] * (heads * dim) + h * dim + tl.arange(0, BLOCK_D)[None, :]
        tl.store(Out + out_offs, o.to(Out.dtype.element_ty), mask=mask)
        tl.store(LSE + h * total + token, m + tl.log2(l), mask=valid)

    @triton.jit
    def _backward_kernel(QKV, CU, Slopes, Out, DOut, LSE, DQKV, total, heads, dim, scale,
                         BLOCK: tl.constexpr, BLOCK_D: tl.constexpr):
        h, token, valid, offs, mask, q, k, s = _tile(QKV, CU, Slopes, heads, dim, scale, BLOCK, BLOCK_D)
        v = tl.load(QKV + offs + 2 * heads * dim, mask=mask, other=0.0)
        out_offs = token[:, None] * (heads * dim) + h * dim + tl.arange(0, BLOCK_D)[None, :]
        o = tl.load(Out + out_offs, mask=mask, other=0.0).to(tl.float32)
        do = tl.load(DOut + out_offs, mask=mask, other=0.0)
        lse = tl.load(LSE + h * total + token, mask=valid, other=0.0)
        p = tl.where(valid[:, None], tl.exp2(s - lse[:, None]), 0.0)
        delta = tl.sum(o * do.to(tl.float32), axis=1)
        dv = tl.dot(tl.trans(p.to(do.dtype)), do)
        dp = tl.dot(do, tl.trans(v))
        ds = (p * (dp - delta[:, None]) * scale).to(q.dtype)
        dq = tl.dot(ds, k)
        dk = tl.dot(tl.trans(ds), q)
        tl.store(DQKV + offs, dq.to(DQKV.dtype.element_ty), mask=mask)
        tl.store(DQKV + offs + heads * dim, dk.to(DQKV.dtype.element_ty), mask=mask)
        tl.store(DQKV + offs + 2 * heads * dim, dv.to(DQKV.dtype.element_ty), mask=mask)


def _block(max_seqlen: int, dim: int) -> tuple[int, int]:
    if max_seqlen > MAX_SEQLEN:
        raise ValueError(f"short_attention handles sequences of at most {MAX_SEQLEN} tokens, got {max_seqlen}")
    return max(16, triton.next_power_of_2(max_seqlen)), max(16, triton.next_power_of_2(dim))


@torch.library.custom_op("efficient_bert::short_attention_forward", mutates_args=())
def _forward(qkv: Tensor, cu_seqlens: Tensor, slopes: Tensor, max_seqlen: int) -> tuple[Tensor, Tensor]:
    total, _, heads, dim = qkv.shape
    out = qkv.new_empty(total, heads * dim)
    lse = torch.empty(heads, total, device=qkv.device, dtype=torch.float32)
    block, block_d = _block(max_seqlen, dim)
    _forward_kernel[(cu_seqlens.shape[0] - 1, heads)](qkv, cu_seqlens, slopes, out, lse, total, heads, dim,
                                                     1 / math.sqrt(dim), BLOCK=block, BLOCK_D=block_d,
                                                     num_warps=4 if block <= 64 else 8)
    return out, lse


@_forward.register_fake
def _(qkv, cu_seqlens, slopes, max_seqlen):
    total, _, heads, dim = qkv.shape
    return qkv.new_empty(total, heads * dim), qkv.new_empty(heads, total, dtype=torch.float32)


@torch.library.custom_op("efficient_bert::short_attention_backward", mutates_args=())
def _backward(dout: Tensor, qkv: Tensor, out: Tensor, lse: Tensor, cu_seqlens: Tensor, slopes: Tensor,
              max_seqlen: int) -> Tensor:
    total, _, heads, dim = qkv.shape
    dqkv = torch.empty_like(qkv)
    block, block_d = _block(max_seqlen, dim)
    _backward_kernel[(cu_seqlens.shape[0] - 1, heads)](qkv, cu_seqlens, slopes, out, dout.contiguous(), lse, dqkv,
                                                      total, heads, dim, 1 / math.sqrt(dim), BLOCK=block,
                                                      BLOCK_D=block_d, num_warps=4 if block <= 64 else 8)
    return dqkv


@_backward.register_fake
def _(dout, qkv, out, lse, cu_seqlens, slopes, max_seqlen):
    return torch.empty_like(qkv)


def _setup_context(ctx, inputs, output):
    qkv, cu_seqlens, slopes, max_seqlen = inputs
    out, lse = output
    ctx.max_seqlen = max_seqlen
    ctx.save_for_backward(qkv, out, lse, cu_seqlens, slopes)


def _backward_rule(ctx, dout, _dlse):
    qkv, out, lse, cu_seqlens, slopes = ctx.saved_tensors
    return _backward(dout, qkv, out, lse, cu_seqlens, slopes, ctx.max_seqlen), None, None, None


_forward.register_autograd(_backward_rule, setup_context=_setup_context)


def short_attention(qkv: Tensor, cu_seqlens: Tensor, slopes: Tensor, max_seqlen: int) -> Tensor:
    """Attention of packed ``qkv`` (total, 3, heads, dim) within each sequence of ``cu_seqlens``,
    with ALiBi ``slopes``; every sequence at most 128 tokens. Returns (total, heads * dim)."""
    return _forward(qkv.contiguous(), cu_seqlens, slopes, max_seqlen)[0]
