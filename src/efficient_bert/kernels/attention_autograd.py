"""The autograd rule of the packed-attention ops: our Triton kernel's and FlashAttention-4's."""

from __future__ import annotations

from typing import Any

from torch import Tensor


def register_packed_attention_autograd(forward: Any, backward: Any) -> None:
    """Make custom op ``forward(qkv, *args) -> (out, lse)`` differentiable in ``qkv`` through op
    ``backward(dout, qkv, out, lse, *args) -> dqkv``; ``args`` are the op's other inputs (offsets,
    slopes, ints, optional tensors), none of them differentiable."""

    def setup_context(ctx, inputs, output):
        qkv, *args = inputs
        out, lse = output
        ctx.is_tensor = [isinstance(a, Tensor) for a in args]
        ctx.constants = [None if t else a for a, t in zip(args, ctx.is_tensor)]
        ctx.save_for_backward(qkv, out, lse, *(a for a in args if isinstance(a, Tensor)))

    def backward_rule(ctx, dout, _dlse):
        qkv, out, lse, *tensors = ctx.saved_tensors
        saved = iter(tensors)
        args = [next(saved) if t else a for a, t in zip(ctx.constants, ctx.is_tensor)]
        return backward(dout, qkv, out, lse, *args), *[None] * len(args)

    forward.register_autograd(backward_rule, setup_context=setup_context)
