"""ALiBi attention over packed sequences on FlashAttention-4 (the ``flash-attn-4`` package).

FlashAttention-4 is written in NVIDIA's CuTe DSL and compiled at first use, so it installs from
pure-Python wheels (no source build). Its varlen kernels take the packed tokens with ``cu_seqlens``;
ALiBi is a ``score_mod``, a CuTe function applied to each score after the softmax scale, with the
head's slope read from an auxiliary tensor, so any head count gets the exact slopes of
:func:`efficient_bert.model.mosaic_bert.alibi.alibi_slopes`. The bias does not depend on the score, so
the backward's ``score_mod_bwd`` passes the gradient through. No attention dropout.

The forward and the backward are ``torch.library`` custom ops with a shape-only fake, so compiled
layers keep each as one node, as they keep our Triton kernel. They call the package's
``_flash_attn_fwd``/``_flash_attn_bwd``: its public autograd function does not return the
log-sum-exp our backward op needs. Those names and the score-mod signature are the ones of the
pinned version (:data:`PINNED`); the package is in beta and has changed them before.

Runs on Hopper (sm90) and Blackwell (sm100/sm110): FlashAttention-4 has no score-mod kernels for
sm8x and no score-mod backward for sm120.
"""

from __future__ import annotations

import functools
import importlib.util

import torch
from torch import Tensor

from efficient_bert.kernels.attention_autograd import register_packed_attention_autograd

PINNED = "4.0.0b36"
SUPPORTED_MAJORS = (9, 10, 11)
HEAD_DIMS = range(8, 129, 8)  # what its kernels take on sm90 and sm100 alike


def flash_attention4_installed() -> bool:
    """Whether ``flash_attn.cute`` (FlashAttention-4) can be imported."""
    try:
        return importlib.util.find_spec("flash_attn.cute") is not None
    except ImportError:  # a broken flash_attn package: its parent fails to import
        return False


def flash_attention4_unsupported(device: torch.device) -> str | None:
    """Why FlashAttention-4 cannot run on ``device``; None when it can."""
    if not flash_attention4_installed():
        return f"needs the flash-attn-4 package (pip install flash-attn-4=={PINNED})"
    if device.type != "cuda":
        return "needs a CUDA device"
    major = torch.cuda.get_device_capability(device)[0]
    if major not in SUPPORTED_MAJORS:
        return f"needs a Hopper or Blackwell GPU (sm90/sm100/sm110), this one is sm{major}x"
    return None


@functools.cache
def _alibi_score_mods():
    """The forward and backward score mods, built once (importing the CuTe DSL takes seconds)."""
    import cutlass
    import cutlass.cute as cute
    from cutlass._mlir.dialects import math as mlir_math

    @cute.jit
    def alibi(score, batch_idx, head_idx, q_idx, kv_idx, seqlen_info, aux_tensors):
        # with auxiliary tensors the kernel applies the mod one score at a time
        slopes = aux_tensors[0]
        head = cute.make_rmem_tensor(1, cutlass.Int32)
        head.store(head_idx)
        slope = cute.make_rmem_tensor(1, cutlass.Float32)
        slope[0] = slopes[head[0]]
        offset = q_idx - kv_idx  # positions within the sequence: varlen indices are per sequence
        distance = cute.TensorSSA(mlir_math.absi(offset), offset.shape, offset.dtype).to(cutlass.Float32)
        return score - slope.load() * distance

    @cute.jit
    def alibi_backward(grad, score, batch_idx, head_idx, q_idx, kv_idx, seqlen_info, aux_tensors):
        return grad

    return alibi, alibi_backward


def _by_head(qkv: Tensor, heads: int) -> tuple[Tensor, Tensor, Tensor]:
    """Q, K and V of the packed projection output: strided (total, heads, dim) views, no copies."""
    return qkv.view(qkv.shape[0], 3, heads, -1).unbind(1)


def attention_forward(qkv: Tensor, cu_seqlens: Tensor, slopes: Tensor, heads: int, max_seqlen: int
                      ) -> tuple[Tensor, Tensor]:
    """The forward kernel's output (total, heads * dim) and log-sum-exp (heads, total)."""
    from flash_attn.cute.interface import _flash_attn_fwd

    alibi, _ = _alibi_score_mods()
    q, k, v = _by_head(qkv, heads)
    out, lse, *_ = _flash_attn_fwd(q, k, v, cu_seqlens_q=cu_seqlens, cu_seqlens_k=cu_seqlens, max_seqlen_q=max_seqlen,
                                   max_seqlen_k=max_seqlen, score_mod=alibi, aux_tensors=[slopes], return_lse=True)
    return out.view(qkv.shape[0], -1), lse


def attention_backward(dout: Tensor, qkv: Tensor, out: Tensor, lse: Tensor, cu_seqlens: Tensor, slopes: Tensor,
                       heads: int, max_seqlen: int) -> Tensor:
    """The packed gradient of ``qkv``."""
    from flash_attn.cute.interface import _flash_attn_bwd

    alibi, alibi_backward = _alibi_score_mods()
    total = qkv.shape[0]
    dqkv = torch.empty_like(qkv)
    q, k, v = _by_head(qkv, heads)
    dq, dk, dv = _by_head(dqkv, heads)  # the kernels write straight into the packed gradient
    _flash_attn_bwd(q, k, v, out.view(total, heads, -1), dout.contiguous().view(total, heads, -1), lse,
                    cu_seqlens_q=cu_seqlens, cu_seqlens_k=cu_seqlens, max_seqlen_q=max_seqlen, max_seqlen_k=max_seqlen,
                    dq=dq, dk=dk, dv=dv, score_mod=alibi, score_mod_bwd=alibi_backward, aux_tensors=[slopes])
    return dqkv


@torch.library.custom_op("efficient_bert::flash_attention4_forward", mutates_args=())
def _forward(qkv: Tensor, cu_seqlens: Tensor, slopes: Tensor, heads: int, max_seqlen: int) -> tuple[Tensor, Tensor]:
    return attention_forward(qkv, cu_seqlens, slopes, heads, max_seqlen)


@_forward.register_fake
def _forward_fake(qkv: Tensor, cu_seqlens: Tensor, slopes: Tensor, heads: int, max_seqlen: int
                  ) -> tuple[Tensor, Tensor]:
    total = qkv.shape[0]
    return qkv.new_empty(total, qkv.shape[1] // 3), qkv.new_empty(heads, total, dtype=torch.float32)


@torch.library.custom_op("efficient_bert::flash_attention4_backward", mutates_args=())
def _backward(dout: Tensor, qkv: Tensor, out: Tensor, lse: Tensor, cu_seqlens: Tensor, slopes: Tensor, heads: int,
              max_seqlen: int) -> Tensor:
    return attention_backward(dout, qkv, out, lse, cu_seqlens, slopes, heads, max_seqlen)


@_backward.register_fake
def _backward_fake(dout: Tensor, qkv: Tensor, out: Tensor, lse: Tensor, cu_seqlens: Tensor, slopes: Tensor,
                   heads: int, max_seqlen: int) -> Tensor:
    return torch.empty_like(qkv)


register_packed_attention_autograd(_forward, _backward)


def flash_attention4(qkv: Tensor, heads: int, cu_seqlens: Tensor, slopes: Tensor, max_seqlen: int) -> Tensor:
    """Attention of packed ``qkv`` (total, 3 * heads * dim: Q, K, V, each head-major) within each
    sequence of ``cu_seqlens`` (int32), with the ALiBi slope of each head in ``slopes`` (float32);
    bf16 or fp16. Returns (total, heads * dim)."""
    return _forward(qkv.contiguous(), cu_seqlens, slopes, heads, max_seqlen)[0]
