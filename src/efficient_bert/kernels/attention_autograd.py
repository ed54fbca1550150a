"""The autograd rule of the packed-attention ops: our Triton kernel's and FlashAttention-4's."""

from __future__ import annotations

from typing import Any


def register_packed_attention_autograd(forward: Any, backward: Any) -> None:
    """Make custom op ``forward(qkv, cu_seqlens, slopes, heads, setting) -> (out, lse)`` differentiable in
    ``qkv`` through op ``backward(dout, qkv, out, lse, cu_seqlens, slopes, heads, setting) -> dqkv``;
    ``setting`` is the op's one int option (a tile size, a length bound)."""

    def setup_context(ctx, inputs, output):
        qkv, cu_seqlens, slopes, heads, setting = inputs
        out, lse = output
        ctx.heads, ctx.setting = heads, setting
        ctx.save_for_backward(qkv, out, lse, cu_seqlens, slopes)

    def backward_rule(ctx, dout, _dlse):
        qkv, out, lse, cu_seqlens, slopes = ctx.saved_tensors
        return backward(dout, qkv, out, lse, cu_seqlens, slopes, ctx.heads, ctx.setting), None, None, None, None

    forward.register_autograd(backward_rule, setup_context=setup_context)
