"""Fused dropout + residual-add + LayerNorm in low precision (Triton), forward and backward.

``add_layer_norm(x, weight, bias, eps, residual, dropout_p)`` is
``layer_norm(dropout(x) + residual)`` in one pass: statistics in float32, output in ``x.dtype``
(bf16 under autocast, where PyTorch's LayerNorm would return float32 and double the traffic of
the residual stream). The dropout mask is never stored: it is regenerated from a seed and the row
in the backward (p is rounded to a multiple of 2^-16), which recomputes the normalized input from the saved sum and the
per-row mean and 1/std.

``add_layer_norm_and_sum`` also returns the sum, for pre-LN layers, whose residual stream is the sum
and whose next branch reads its norm: the backward adds the sum's own gradient in the same pass.
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
except ImportError:  # CPU-only installs: the PyTorch reference is used
    triton = None


def add_layer_norm_reference(x: Tensor, weight: Tensor, bias: Tensor, eps: float,
                             residual: Optional[Tensor] = None, dropout_p: float = 0.0) -> Tensor:
    return add_layer_norm_and_sum_reference(x, weight, bias, eps, residual, dropout_p)[0]


def add_layer_norm_and_sum_reference(x: Tensor, weight: Tensor, bias: Tensor, eps: float,
                                     residual: Optional[Tensor] = None, dropout_p: float = 0.0) -> tuple[Tensor, Tensor]:
    x = F.dropout(x, dropout_p) if dropout_p > 0 else x
    s = x if residual is None else (x.float() + residual.float()).to(x.dtype)
    return F.layer_norm(s.float(), s.shape[-1:], weight.float(), bias.float(), eps).to(x.dtype), s


if triton is not None:

    @triton.jit
    def _keep_mask(Seed, row, threshold, BLOCK: tl.constexpr):
        """Dropout's keep decisions for one row: 8 per Philox call, each from 16 random bits
        (keep iff u >= threshold = round(p * 2^16)), the same in the forward and the backward."""
        offsets = (row * (BLOCK // 8) + tl.arange(0, BLOCK // 8)).to(tl.int32)
        r0, r1, r2, r3 = tl.randint4x(tl.load(Seed), offsets)
        a = tl.join(tl.join(r0 & 0xFFFF, r0 >> 16), tl.join(r1 & 0xFFFF, r1 >> 16))
        b = tl.join(tl.join(r2 & 0xFFFF, r2 >> 16), tl.join(r3 & 0xFFFF, r3 >> 16))
        return tl.reshape(tl.join(a, b), (BLOCK,)) >= threshold

    @triton.jit
    def _forward_kernel(X, R, S, Y, W, B, Mean, Rstd, Seed, n, eps, p, threshold, HAS_RESIDUAL: tl.constexpr,
                        HAS_DROPOUT: tl.constexpr, BLOCK: tl.constexpr):
        row = tl.program_id(0).to(tl.int64)
        cols = tl.arange(0, BLOCK)
        inside = cols < n
        # float arguments arrive as fp64 when Inductor launches the kernel: keep the math in fp32
        eps = tl.cast(eps, tl.float32)
        x = tl.load(X + row * n + cols, mask=inside, other=0.0).to(tl.float32)
        if HAS_DROPOUT:
            x = tl.where(_keep_mask(Seed, row, threshold, BLOCK), x * tl.cast(1.0 / (1.0 - p), tl.float32), 0.0)
        if HAS_RESIDUAL:
            x += tl.load(R + row * n + cols, mask=inside, other=0.0).to(tl.float32)
            # round the sum as an unfused add would, and keep it for the backward
            x = x.to(S.dtype.element_ty)
            tl.store(S + row * n + cols, x, mask=inside)
            x = x.to(tl.float32)
        mean = tl.sum(x, axis=0) / n
        centered = tl.where(inside, x - mean, 0.0)
        rstd = 1.0 / tl.sqrt(tl.sum(centered * centered, axis=0) / n + eps)
        w = tl.load(W + cols, mask=inside, other=0.0).to(tl.float32)
        b = tl.load(B + cols, mask=inside, other=0.0).to(tl.float32)
        tl.store(Y + row * n + cols, (centered * rstd * w + b).to(Y.dtype.element_ty), mask=inside)
        tl.store(Mean + row, mean)
        tl.store(Rstd + row, rstd)

    @triton.jit
    def _backward_kernel(DY, DS, S, W, Mean, Rstd, Seed, DX, DXB, DW, DB, rows, n, rows_per_program, p, threshold,
                         HAS_DS: tl.constexpr, HAS_DROPOUT: tl.constexpr, BLOCK: tl.constexpr):
        pid = tl.program_id(0)
        cols = tl.arange(0, BLOCK)
        inside = cols < n
        scale = tl.cast(1.0 / (1.0 - p), tl.float32)  # fp32, as in the forward
        w = tl.load(W + cols, mask=inside, other=0.0).to(tl.float32)
        dw = tl.zeros((BLOCK,), dtype=tl.float32)
        db = tl.zeros((BLOCK,), dtype=tl.float32)
        first = pid * rows_per_program
        last = tl.minimum(first + rows_per_program, rows)
        for row in range(first, last):
            offset = tl.cast(row, tl.int64) * n + cols
            s = tl.load(S + offset, mask=inside, other=0.0).to(tl.float32)
            dy = tl.load(DY + offset, mask=inside, other=0.0).to(tl.float32)
            mean = tl.load(Mean + row)
            rstd = tl.load(Rstd + row)
            xhat = tl.where(inside, (s - mean) * rstd, 0.0)
            wdy = w * dy
            c1 = tl.sum(xhat * wdy, axis=0) / n
            c2 = tl.sum(wdy, axis=0) / n
            dx = (wdy - (xhat * c1 + c2)) * rstd
            if HAS_DS:  # the sum's own gradient (pre-LN: the residual stream's)
                dx += tl.load(DS + offset, mask=inside, other=0.0).to(tl.float32)
            tl.store(DX + offset, dx.to(DX.dtype.element_ty), mask=inside)
            if HAS_DROPOUT:  # the dropped branch's gradient: the same mask, regenerated
                keep = _keep_mask(Seed, row, threshold, BLOCK)
                tl.store(DXB + offset, tl.where(keep, dx * scale, 0.0).to(DXB.dtype.element_ty), mask=inside)
            dw += dy * xhat
            db += dy
        tl.store(DW + pid * n + cols, dw, mask=inside)
        tl.store(DB + pid * n + cols, db, mask=inside)


def _threshold(dropout_p: float) -> int:
    return round(dropout_p * 2 ** 16)


def _launch_config(n: int) -> tuple[int, int]:
    block = triton.next_power_of_2(int(n))  # int(): the hidden size is a constant even when traced
    return block, min(max(block // 256, 1), 16)


def _launch_forward(x: Tensor, residual: Optional[Tensor], weight: Tensor, bias: Tensor, eps: float, dropout_p: float,
                    seed: Optional[Tensor]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    x = x.contiguous()
    n = x.shape[-1]
    rows = x.numel() // n
    y = torch.empty_like(x)
    s = torch.empty_like(x) if residual is not None else x.new_empty(0)
    mean = torch.empty(rows, device=x.device, dtype=torch.float32)
    rstd = torch.empty_like(mean)
    block, warps = _launch_config(n)
    r = residual.contiguous() if residual is not None else x
    traceable(_forward_kernel)[(rows,)](x, r, s, y, weight, bias, mean, rstd, seed if seed is not None else mean, n, eps,
                             dropout_p, _threshold(dropout_p), HAS_RESIDUAL=residual is not None, HAS_DROPOUT=dropout_p > 0, BLOCK=block,
                             num_warps=warps)
    return y, s, mean, rstd


@torch.library.triton_op("efficient_bert::add_layer_norm_forward", mutates_args={})
def _forward(x: Tensor, residual: Optional[Tensor], weight: Tensor, bias: Tensor, eps: float, dropout_p: float,
             seed: Optional[Tensor]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    return _launch_forward(x, residual, weight, bias, eps, dropout_p, seed)


# the same kernel; a separate op, whose backward takes the gradient of the sum it returns
@torch.library.triton_op("efficient_bert::add_layer_norm_and_sum_forward", mutates_args={})
def _forward_and_sum(x: Tensor, residual: Tensor, weight: Tensor, bias: Tensor, eps: float, dropout_p: float,
                     seed: Optional[Tensor]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    return _launch_forward(x, residual, weight, bias, eps, dropout_p, seed)


@torch.library.triton_op("efficient_bert::add_layer_norm_backward", mutates_args={})
def _backward(dy: Tensor, ds: Optional[Tensor], s: Tensor, weight: Tensor, mean: Tensor, rstd: Tensor,
              dropout_p: float, seed: Optional[Tensor]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    dy = dy.contiguous()
    n = s.shape[-1]
    rows = s.numel() // n
    # a fixed number of programs, each summing weight gradients over its rows (none for the last
    # ones when rows are few); fixed, so the row count stays symbolic under torch.compile
    # 8 per SM: at base size on an H100, 76 us per call against 96 us with 4 per SM (bench/kernel_times.py)
    programs = 8 * (torch.cuda.get_device_properties(s.device).multi_processor_count if s.is_cuda else 4)
    per_program = -(-rows // programs)
    dx = torch.empty_like(s)
    dx_branch = torch.empty_like(s) if dropout_p > 0 else s.new_empty(0)
    dw = torch.empty(programs, n, device=s.device, dtype=torch.float32)
    db = torch.empty_like(dw)
    block, warps = _launch_config(n)
    traceable(_backward_kernel)[(programs,)](dy, ds.contiguous() if ds is not None else dy, s, weight, mean, rstd,
                                  seed if seed is not None else mean, dx, dx_branch, dw, db, rows, n, per_program,
                                  dropout_p, _threshold(dropout_p), HAS_DS=ds is not None, HAS_DROPOUT=dropout_p > 0,
                                  BLOCK=block, num_warps=warps)
    return dx, dx_branch, dw.sum(0).to(weight.dtype), db.sum(0).to(weight.dtype)


def _setup_context(ctx, inputs, output):
    x, residual, weight, _, _, dropout_p, seed = inputs
    _, s, mean, rstd = output
    ctx.has_residual = residual is not None
    ctx.dropout_p = dropout_p
    ctx.save_for_backward(s if ctx.has_residual else x, weight, mean, rstd, seed)


def _backward_rule(ctx, dy, _ds, _dmean, _drstd):
    return _backward_with(ctx, dy, None)


def _backward_and_sum_rule(ctx, dy, ds, _dmean, _drstd):
    return _backward_with(ctx, dy, ds)


def _backward_with(ctx, dy, ds):
    s, weight, mean, rstd, seed = ctx.saved_tensors
    dx, dx_branch, dw, db = _backward(dy, ds, s.contiguous(), weight, mean, rstd, ctx.dropout_p, seed)
    d_input = dx_branch if ctx.dropout_p > 0 else dx
    return d_input, (dx if ctx.has_residual else None), dw, db, None, None, None


_forward.register_autograd(_backward_rule, setup_context=_setup_context)
_forward_and_sum.register_autograd(_backward_and_sum_rule, setup_context=_setup_context)


def add_layer_norm(x: Tensor, weight: Tensor, bias: Optional[Tensor], eps: float, residual: Optional[Tensor] = None,
                   dropout_p: float = 0.0) -> Tensor:
    """``layer_norm(dropout(x) + residual)`` over the last dimension, fused, output in ``x.dtype``.

    Dropout needs a residual (the post-LN pattern ``norm(residual + dropout(branch))``).
    """
    if dropout_p > 0 and residual is None:
        raise ValueError("add_layer_norm: dropout is fused only together with a residual")
    return _forward(x, residual, weight, _bias(weight, bias), eps, dropout_p, _seed(x, dropout_p))[0]


def add_layer_norm_and_sum(x: Tensor, weight: Tensor, bias: Optional[Tensor], eps: float, residual: Tensor,
                           dropout_p: float = 0.0) -> tuple[Tensor, Tensor]:
    """``(layer_norm(s), s)`` with ``s = dropout(x) + residual``, fused; both in ``x.dtype``.

    The pre-LN pattern: ``s`` is the next residual stream, its norm the next branch's input."""
    y, s, _, _ = _forward_and_sum(x, residual, weight, _bias(weight, bias), eps, dropout_p, _seed(x, dropout_p))
    return y, s


def _bias(weight: Tensor, bias: Optional[Tensor]) -> Tensor:
    # a norm without a bias (ModernBERT's) runs as one with a zero bias; its gradient goes nowhere
    return torch.zeros_like(weight) if bias is None else bias


def _seed(x: Tensor, dropout_p: float) -> Optional[Tensor]:
    # the seed stays on the device (no host sync, traceable by torch.compile)
    return torch.randint(0, 2 ** 31 - 1, (1,), device=x.device) if dropout_p > 0 else None
