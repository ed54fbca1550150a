"""ALiBi attention over packed (unpadded) sequences of at most 128 tokens (Triton), optionally within a
sliding window.

BERT pretraining sequences are short, so one program holds a whole (sequence, head) tile: Q, K and
V come straight from the packed ``qkv`` buffer at the sequence's ``cu_seqlens`` offset, the
symmetric ALiBi bias and the length mask are computed in registers, and nothing is padded. The
backward recomputes the probabilities from the saved log-sum-exp and writes dQ, dK and dV into one
packed gradient. No attention dropout (the Mosaic BERT recipe trains with none).

Rows packed with several documents (sequence packing) run one tile per (row, head) with ``documents``,
each token's document, masking attention across documents: as many tiles as full rows, where one
tile per document would launch one per document, each as wide as the longest.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

from efficient_bert.kernels.attention_autograd import register_packed_attention_autograd
from efficient_bert.kernels.traceable import traceable

try:
    import triton
    import triton.language as tl
except ImportError:
    triton = None

MAX_SEQLEN = 128
# Shared memory per block that a 128-token tile's backward takes (the forward takes less), by the dtype of
# q/k/v: the most Triton 3.8 allocates from sm80 to sm100 (tests/test_kernel_compilation.py compiles them).
# Half precision fits every GPU from sm80 on (99 KiB and more); fp32 fits only Hopper's and B200's 227 KiB.
SHARED_MEMORY_BYTES = {torch.bfloat16: 98_312, torch.float16: 98_312, torch.float32: 229_384}


def short_attention_reference(qkv: Tensor, heads: int, cu_seqlens: Tensor, slopes: Tensor,
                              window: Optional[int] = None) -> Tensor:
    """Per-sequence float32 softmax attention with the ALiBi bias, each token seeing the tokens at most
    ``window`` positions away (all without one); (total, heads * dim). Sequences are documents: for
    packed rows pass the documents' ``cu_seqlens``."""
    total = qkv.shape[0]
    dim = qkv.shape[1] // (3 * heads)
    out = qkv.new_empty(total, heads * dim)
    bounds = cu_seqlens.tolist()
    for start, end in zip(bounds[:-1], bounds[1:]):
        q, k, v = qkv[start:end].float().view(-1, 3, heads, dim).permute(1, 2, 0, 3)  # (heads, n, dim) each
        pos = torch.arange(end - start, device=qkv.device)
        distance = (pos[None, :] - pos[:, None]).abs()
        bias = -slopes[:, None, None] * distance
        if window is not None:
            bias = bias.masked_fill(distance > window, float("-inf"))
        probs = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(dim) + bias, dim=-1)
        out[start:end] = (probs @ v).transpose(0, 1).reshape(end - start, heads * dim).to(qkv.dtype)
    return out


if triton is not None:

    # Store addresses are computed in the kernels: Inductor's mutation analysis treats every argument
    # of a helper whose result feeds a store address as written, and would copy Q/K/V per call
    # (tests/test_kernel_compilation.py runs that analysis).
    @triton.jit
    def _scores(q, k, rows, allowed, slope, scale, window):
        """Scaled, ALiBi-biased scores of one tile in log2 units; -inf where ``allowed`` is false or the
        key is more than ``window`` positions away."""
        gap = tl.abs(rows[:, None] - rows[None, :])
        log2e = 1.4426950408889634
        # Inductor passes Python floats as fp64
        s = (tl.dot(q, tl.trans(k)) * tl.cast(scale, tl.float32) - slope * gap.to(tl.float32)) * log2e
        return tl.where(allowed & (gap <= window), s, float("-inf"))

    @triton.jit
    def _attends(Doc, token, rows, valid, DOCUMENTS: tl.constexpr):
        """(BLOCK, BLOCK): whether each query attends to each key: the row's valid keys, with
        ``DOCUMENTS`` only those of the query's document (a padded query, never stored, sees all)."""
        if DOCUMENTS:
            doc = tl.load(Doc + token, mask=valid, other=-1)
            allowed = valid[None, :] & ((doc[:, None] == doc[None, :]) | ~valid[:, None])
        else:
            allowed = valid[None, :] & (rows[:, None] >= 0)  # full-tile shape, as in the branch above
        return allowed

    @triton.jit
    def _forward_kernel(QKV, CU, Doc, Slopes, Out, LSE, total, heads, dim, window, scale,
                        DOCUMENTS: tl.constexpr, BLOCK: tl.constexpr, BLOCK_D: tl.constexpr):
        b = tl.program_id(0)
        h = tl.program_id(1)
        start = tl.load(CU + b)
        rows = tl.arange(0, BLOCK)
        cols = tl.arange(0, BLOCK_D)
        valid = rows < tl.load(CU + b + 1) - start
        token = (start + rows).to(tl.int64)
        offs = token[:, None] * (3 * heads * dim) + h * dim + cols[None, :]
        mask = valid[:, None] & (cols[None, :] < dim)
        q = tl.load(QKV + offs, mask=mask, other=0.0)
        k = tl.load(QKV + offs + heads * dim, mask=mask, other=0.0)
        v = tl.load(QKV + offs + 2 * heads * dim, mask=mask, other=0.0)
        s = _scores(q, k, rows, _attends(Doc, token, rows, valid, DOCUMENTS), tl.load(Slopes + h), scale, window)
        m = tl.max(s, axis=1)
        p = tl.exp2(s - m[:, None])
        l = tl.sum(p, axis=1)
        o = tl.dot(p.to(v.dtype), v) / l[:, None]
        out_offs = token[:, None] * (heads * dim) + h * dim + cols[None, :]
        tl.store(Out + out_offs, o.to(Out.dtype.element_ty), mask=mask)
        tl.store(LSE + h * total + token, m + tl.log2(l), mask=valid)

    @triton.jit
    def _backward_kernel(QKV, CU, Doc, Slopes, Out, DOut, LSE, DQKV, total, heads, dim, window, scale,
                         DOCUMENTS: tl.constexpr, BLOCK: tl.constexpr, BLOCK_D: tl.constexpr):
        b = tl.program_id(0)
        h = tl.program_id(1)
        start = tl.load(CU + b)
        rows = tl.arange(0, BLOCK)
        cols = tl.arange(0, BLOCK_D)
        valid = rows < tl.load(CU + b + 1) - start
        token = (start + rows).to(tl.int64)
        offs = token[:, None] * (3 * heads * dim) + h * dim + cols[None, :]
        mask = valid[:, None] & (cols[None, :] < dim)
        q = tl.load(QKV + offs, mask=mask, other=0.0)
        k = tl.load(QKV + offs + heads * dim, mask=mask, other=0.0)
        v = tl.load(QKV + offs + 2 * heads * dim, mask=mask, other=0.0)
        s = _scores(q, k, rows, _attends(Doc, token, rows, valid, DOCUMENTS), tl.load(Slopes + h), scale, window)
        out_offs = token[:, None] * (heads * dim) + h * dim + cols[None, :]
        o = tl.load(Out + out_offs, mask=mask, other=0.0).to(tl.float32)
        do = tl.load(DOut + out_offs, mask=mask, other=0.0)
        lse = tl.load(LSE + h * total + token, mask=valid, other=0.0)
        p = tl.where(valid[:, None], tl.exp2(s - lse[:, None]), 0.0)
        delta = tl.sum(o * do.to(tl.float32), axis=1)
        dv = tl.dot(tl.trans(p.to(do.dtype)), do)
        dp = tl.dot(do, tl.trans(v))
        ds = (p * (dp - delta[:, None]) * tl.cast(scale, tl.float32)).to(q.dtype)
        dq = tl.dot(ds, k)
        dk = tl.dot(tl.trans(ds), q)
        tl.store(DQKV + offs, dq.to(DQKV.dtype.element_ty), mask=mask)
        tl.store(DQKV + offs + heads * dim, dk.to(DQKV.dtype.element_ty), mask=mask)
        tl.store(DQKV + offs + 2 * heads * dim, dv.to(DQKV.dtype.element_ty), mask=mask)


def _block(max_seqlen: int) -> int:
    """The tile's side: the smallest power of two from 16 that holds the longest sequence.

    Chosen by comparisons, so that under ``torch.compile`` a symbolic ``max_seqlen`` becomes a guard
    and the tile a constant (a symbolic tile size fails in Inductor, pytorch/pytorch#181735)."""
    for block in (16, 32, 64, MAX_SEQLEN):
        if max_seqlen <= block:
            return block
    raise ValueError(f"short_attention handles sequences of at most {MAX_SEQLEN} tokens, got {max_seqlen}")


def _launch_args(dim: int, block: int, backward: bool) -> dict:
    # measured on an H100 at 128-token tiles (bench/kernel_times.py): 4 warps for the forward (84 us per
    # base layer against 111 us with 8), 8 for the backward and its five products (204 us against 258 us)
    warps = 8 if backward and block > 64 else 4
    # int(): the head size is a constant even when traced
    return dict(scale=1 / math.sqrt(int(dim)), BLOCK=block, BLOCK_D=max(16, triton.next_power_of_2(int(dim))),
                num_warps=warps)


@torch.library.triton_op("efficient_bert::short_attention_forward", mutates_args={})
def _forward(qkv: Tensor, cu_seqlens: Tensor, slopes: Tensor, heads: int, block: int,
             documents: Optional[Tensor], window: int) -> tuple[Tensor, Tensor]:
    total, dim = qkv.shape[0], qkv.shape[1] // (3 * heads)
    out = qkv.new_empty(total, heads * dim)
    lse = torch.empty(heads, total, device=qkv.device, dtype=torch.float32)
    doc = documents if documents is not None else cu_seqlens  # not read without documents
    traceable(_forward_kernel)[(cu_seqlens.shape[0] - 1, heads)](qkv, cu_seqlens, doc, slopes, out, lse, total, heads,
                                                             dim, window, DOCUMENTS=documents is not None,
                                                             **_launch_args(dim, block, backward=False))
    return out, lse


@torch.library.triton_op("efficient_bert::short_attention_backward", mutates_args={})
def _backward(dout: Tensor, qkv: Tensor, out: Tensor, lse: Tensor, cu_seqlens: Tensor, slopes: Tensor,
              heads: int, block: int, documents: Optional[Tensor], window: int) -> Tensor:
    total, dim = qkv.shape[0], qkv.shape[1] // (3 * heads)
    dqkv = torch.empty_like(qkv)
    doc = documents if documents is not None else cu_seqlens
    traceable(_backward_kernel)[(cu_seqlens.shape[0] - 1, heads)](qkv, cu_seqlens, doc, slopes, out, dout.contiguous(),
                                                              lse, dqkv, total, heads, dim, window,
                                                              DOCUMENTS=documents is not None,
                                                              **_launch_args(dim, block, backward=True))
    return dqkv


register_packed_attention_autograd(_forward, _backward)


def short_attention(qkv: Tensor, heads: int, cu_seqlens: Tensor, slopes: Tensor, max_seqlen: int,
                    documents: Optional[Tensor] = None, window: Optional[int] = None) -> Tensor:
    """Attention of packed ``qkv`` within each sequence of ``cu_seqlens``, with the ALiBi slope of
    each of the ``heads`` in ``slopes``; every sequence at most 128 tokens.

    With ``documents`` (total,), each token's document number, the sequences of ``cu_seqlens`` are
    rows and attention stays within a document inside each row; ALiBi distances are the same as
    within the document alone. With ``window``, a token sees only the tokens at most that many positions
    away (ModernBERT's local attention); zero ``slopes`` leave out the ALiBi bias (rotary positions).

    ``qkv`` is (total, 3 * heads * dim), the QKV projection's output as it is: Q, K, V, each
    head-major. Taking it unreshaped keeps the gradient's buffer in its final shape; a compiled,
    dynamic-shape backward that reshaped our freshly written gradient failed in Inductor under FSDP
    (pytorch/pytorch#189271). Returns (total, heads * dim)."""
    return _forward(qkv.contiguous(), cu_seqlens, slopes, heads, _block(max_seqlen), documents,
                    MAX_SEQLEN if window is None else int(window))[0]
