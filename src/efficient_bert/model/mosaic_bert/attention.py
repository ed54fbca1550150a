"""Attention backends over unpadded tokens with a symmetric ALiBi bias, optionally within a sliding window.

Every backend takes ``qkv`` of shape (total_tokens, 3 * heads * head_dim), the QKV projection's
output (Q, K, V, each head-major), and returns (total_tokens, heads * head_dim). What a backend
needs beyond the tokens (a padded bias, a block mask) is built once per forward by
:func:`prepare_attention` and shared by all layers of one kind. Zero slopes leave the bias out (models with
rotary positions), and a ``window`` limits each token to the keys at most that many positions away
(ModernBERT's local attention layers); every backend but FlashAttention-4 takes one.

- ``eager``: reference math on a padded view.
- ``sdpa``: PyTorch's fused scaled-dot-product attention on a padded view with an additive ALiBi +
  key-padding bias.
- ``flex``: FlexAttention over the packed tokens, no padding at all: ALiBi and the document mask
  are a ``score_mod`` and the block mask only visits the 128x128 tiles that touch one document.
- ``triton``: our Triton kernel for sequences of at most 128 tokens: one tile per (sequence, head)
  read straight from the packed tokens (``efficient_bert.kernels.short_attention``).
- ``flash_attn``: FlashAttention's varlen kernels over the packed tokens (optional packages):
  FlashAttention-4 (``flash-attn-4``, ALiBi as a score mod: ``efficient_bert.kernels.flash_attention4``)
  where it is installed, else flash-attn 2 with ``alibi_slopes``.

A config's ``attention`` name becomes the backend a batch runs in three steps: what the name means on
a device (:func:`backend_for_device`), that backend with its fallbacks for the batches it cannot
take, once per device and mode (:func:`plan_backends`, a :class:`BackendPlan`), and the backend of
one batch (:meth:`BackendPlan.backend_for_batch`).
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from typing import Any, Optional

import torch
import torch.nn.functional as F

from efficient_bert.kernels import short_attention, triton_usable
from efficient_bert.kernels.flash_attention4 import HEAD_DIMS as FLASH_ATTENTION4_HEAD_DIMS, flash_attention4, \
    flash_attention4_installed, flash_attention4_unsupported
from efficient_bert.kernels.short_attention import MAX_SEQLEN as TRITON_MAX_SEQLEN, \
    SHARED_MEMORY_BYTES as TRITON_SHARED_MEMORY_BYTES
from efficient_bert.model.mosaic_bert.alibi import alibi_slopes_on
from efficient_bert.model.mosaic_bert.padding import Unpadded, scatter
from efficient_bert.model.mosaic_bert.portable.modeling_mosaic_bert import slope_bias

BACKENDS = ("auto", "flash_attn", "triton", "flex", "sdpa", "eager")
NO_DROPOUT = ("flex", "triton")
FLEX_BLOCK = 128


@dataclass
class AttentionInputs:
    """Per-forward state shared by every layer."""

    backend: str
    info: Unpadded
    slopes: torch.Tensor  # (heads,) float32
    window: Optional[int] = None  # keys at most this many positions away; None: all
    bias: Optional[torch.Tensor] = None  # eager/sdpa: (batch, heads, seq, seq)
    doc_ids: Optional[torch.Tensor] = None  # flex: (padded_tokens,) document of each packed token
    block_mask: Any = None  # flex: BlockMask
    flash_version: Optional[int] = None  # flash_attn: 4 (FlashAttention-4) or 2


@functools.cache
def flash_attn_version() -> Optional[int]:
    """Which FlashAttention the ``flash_attn`` backend runs: 4 where flash-attn-4 is installed, 2 for
    flash-attn 2 alone, None without either."""
    if flash_attention4_installed():
        return 4
    return 2 if importlib.util.find_spec("flash_attn") is not None else None


def backend_for_device(name: str, device: Optional[torch.device] = None, dropout_p: float = 0.0) -> str:
    """The backend to run; ``auto`` takes the fastest one that supports the device.

    On CUDA, fastest first (``bench/throughput.py``, docs/benchmarks.md): flash-attn 2 if
    installed (not timed here), our Triton kernel (sequences of at most 128 tokens:
    :func:`plan_backends` picks the backend of longer batches), FlexAttention, SDPA; the Triton
    kernel and FlexAttention have no attention dropout. FlashAttention-4 is not a first choice: at
    128 tokens our Triton kernel is faster. On CPU: SDPA. Without a device (config checks) only the
    name and the dropout setting are checked.
    """
    if name not in BACKENDS:
        raise ValueError(f"unknown attention backend '{name}'; choose one of {', '.join(BACKENDS)}")
    # only these two look for a flash-attn package: the first look imports it
    version = flash_attn_version() if name in ("flash_attn", "auto") else None
    if (name in NO_DROPOUT or (name == "flash_attn" and version == 4)) and dropout_p > 0:
        raise ValueError(f"attention '{name}' has no attention dropout; set attention_probs_dropout_prob: 0.0 "
                         f"or choose attention: sdpa")
    if name == "flash_attn" and version is None:
        raise ValueError("attention 'flash_attn' needs flash-attn-4 or flash-attn 2 (pip install flash-attn-4); "
                         "choose attention: auto to fall back to our Triton kernel, FlexAttention or SDPA")
    fa4_on_device = name == "flash_attn" and version == 4 and device is not None
    problem = flash_attention4_unsupported(device) if fa4_on_device else None
    if problem:
        raise ValueError(f"attention 'flash_attn' (FlashAttention-4) {problem}; choose attention: auto")
    if name == "triton" and device is not None and not triton_usable(device):
        raise ValueError("attention 'triton' needs the triton package and a CUDA device; choose attention: auto")
    if name != "auto":
        return name
    if device is None or device.type != "cuda":
        return "sdpa"
    if version == 2:
        return "flash_attn"
    if dropout_p > 0:
        return "sdpa"
    return "triton" if triton_usable(device) else "flex"


HALF = (torch.bfloat16, torch.float16)


@dataclass(frozen=True)
class BackendPlan:
    """The attention backend for one device and dropout setting, resolved once (:func:`plan_backends`).

    ``long`` runs a batch that ``main`` cannot take: only our Triton kernel has limits, sequences of at
    most 128 tokens and tiles that fit ``shared_memory``, the device's bytes per block (None: no limit),
    which rules out fp32 on GPUs before Hopper. None when the backend was named explicitly, which makes
    such a batch an error. ``long_half`` takes the place of ``long`` when q/k/v are bf16 or fp16
    (FlashAttention-4, which runs nothing else). These per-batch fallbacks are the only choice left to
    run time.
    """

    main: str
    long: Optional[str]
    long_half: Optional[str] = None
    shared_memory: Optional[int] = None

    def backend_for_batch(self, max_seqlen: int, dtype: Optional[torch.dtype] = None) -> str:
        if self.main != "triton":
            return self.main
        too_long = max_seqlen > TRITON_MAX_SEQLEN
        needs = TRITON_SHARED_MEMORY_BYTES.get(dtype, 0)
        too_big = self.shared_memory is not None and needs > self.shared_memory
        if not too_long and not too_big:
            return self.main
        if self.long is None and too_long:
            raise ValueError(f"attention 'triton' handles sequences of at most {TRITON_MAX_SEQLEN} tokens, this "
                             f"batch has {max_seqlen}; choose attention: auto (it falls back to FlexAttention)")
        if self.long is None:
            raise ValueError(f"attention 'triton' in {dtype} needs {needs // 1024} KiB of shared memory per block, "
                             f"this GPU has {self.shared_memory // 1024} KiB; train in bf16 (precision: amp_bf16) "
                             f"or choose attention: auto (it falls back to FlexAttention)")
        return self.long_half if self.long_half is not None and dtype in HALF else self.long


def plan_backends(name: str, device: torch.device, dropout_p: float = 0.0, head_dim: int = 64,
                  windowed: bool = False) -> BackendPlan:
    """:func:`backend_for_device` for ``device``, with the fallback for batches it cannot take.

    Under ``auto`` a batch too long for our Triton kernel runs FlashAttention-4 where it runs on the
    device, takes ``head_dim`` and q/k/v are half precision (faster than FlexAttention and SDPA at 512
    tokens, docs/benchmarks.md), else FlexAttention. A batch whose tiles do not fit the device's shared
    memory (fp32 on GPUs before Hopper) runs FlexAttention. A ``windowed`` model (local attention layers)
    never falls back to FlashAttention-4, which takes no window here.
    """
    main = backend_for_device(name, device, dropout_p)
    if main != "triton":
        return BackendPlan(main, main)
    shared_memory = torch.cuda.get_device_properties(device).shared_memory_per_block_optin \
        if device.type == "cuda" else None  # the interpreter's CPU tensors have no limit
    if name != "auto":
        return BackendPlan(main, None, shared_memory=shared_memory)
    fa4 = (not windowed and flash_attn_version() == 4 and head_dim in FLASH_ATTENTION4_HEAD_DIMS
           and flash_attention4_unsupported(device) is None)
    return BackendPlan(main, "flex", "flash_attn" if fa4 else None, shared_memory)


def _padded_bias(info: Unpadded, slopes: torch.Tensor, dtype: torch.dtype, window: Optional[int] = None
                 ) -> torch.Tensor:
    """(sequences, heads, seq, seq): ALiBi plus -inf on padded keys and beyond the window, over the
    attention grid."""
    device = slopes.device
    positions, rows, width = info.attention_grid()
    bias = slope_bias(slopes, width)
    if window is not None:
        pos = torch.arange(width, device=device)
        bias = bias.masked_fill((pos[None, :] - pos[:, None]).abs() > window, float("-inf"))
    # index_fill_ takes the value as a kernel argument; `real[positions] = True` copies it to the GPU and waits
    real = torch.zeros(rows * width, device=device, dtype=torch.bool).index_fill_(0, positions, True)
    keys = torch.zeros(rows, 1, 1, width, device=device)
    keys.masked_fill_(~real.view(rows, 1, 1, width), float("-inf"))
    return (bias[None] + keys).to(dtype)


@functools.lru_cache(maxsize=16)
def _zero_slopes(num_heads: int, device: torch.device) -> torch.Tensor:
    return torch.zeros(num_heads, device=device)


def _flex_block_mask(info: Unpadded, total: int, device: torch.device):
    """Document ids of the packed tokens (padded to a multiple of the tile) and a BlockMask whose
    q-tile i visits only the kv tiles spanned by the documents that tile i touches."""
    from torch.nn.attention.flex_attention import BlockMask

    blocks = -(-total // FLEX_BLOCK)
    padded = blocks * FLEX_BLOCK
    lengths = info.cu_seqlens[1:] - info.cu_seqlens[:-1]
    docs = torch.arange(info.sequences + 1, device=device)
    # the tail padding is one extra pseudo-document, so its rows attend only among themselves
    lengths = torch.cat([lengths, lengths.new_tensor([padded - total])])
    doc_ids = torch.repeat_interleave(docs, lengths, output_size=padded)
    bounds = torch.cat([info.cu_seqlens, info.cu_seqlens.new_tensor([padded])]).long()
    tile_first = torch.arange(blocks, device=device) * FLEX_BLOCK
    first_doc, last_doc = doc_ids[tile_first], doc_ids[tile_first + FLEX_BLOCK - 1]
    kv_first = bounds[first_doc] // FLEX_BLOCK
    kv_last = (bounds[last_doc + 1] - 1) // FLEX_BLOCK
    counts = (kv_last - kv_first + 1).int()
    indices = (kv_first[:, None] + torch.arange(blocks, device=device)[None]).clamp_(max=blocks - 1).int()
    mask = BlockMask.from_kv_blocks(counts[None, None], indices[None, None], BLOCK_SIZE=FLEX_BLOCK,
                                    seq_lengths=(padded, padded))
    return doc_ids, mask


def prepare_attention(backend: str, info: Unpadded, num_heads: int, device: torch.device,
                      dtype: torch.dtype, alibi: bool = True, window: Optional[int] = None) -> AttentionInputs:
    """Build once per forward what ``backend`` needs; ``dtype`` is the dtype q/k/v will have. Without
    ``alibi`` the slopes are zero; ``window`` makes the attention local."""
    slopes = alibi_slopes_on(num_heads, torch.device(device)) if alibi else _zero_slopes(num_heads, torch.device(device))
    inputs = AttentionInputs(backend, info, slopes, window)
    if backend in ("eager", "sdpa"):
        inputs.bias = _padded_bias(info, slopes, dtype if backend == "sdpa" else torch.float32, window)
    elif backend == "flex":
        inputs.doc_ids, inputs.block_mask = _flex_block_mask(info, int(info.indices.shape[0]), device)
    elif backend == "flash_attn":
        inputs.flash_version = flash_attn_version()
    return inputs


def _by_head(qkv: torch.Tensor, heads: int) -> torch.Tensor:
    return qkv.view(qkv.shape[0], 3, heads, -1)


def _split(qkv: torch.Tensor, heads: int, info: Unpadded) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    padded = scatter(_by_head(qkv, heads), *info.attention_grid())  # (sequences, seq, 3, heads, dim)
    q, k, v = padded.permute(2, 0, 3, 1, 4).unbind(0)  # each (sequences, heads, seq, dim)
    return q, k, v


def _merge(out: torch.Tensor, info: Unpadded) -> torch.Tensor:
    batch, heads, seq, dim = out.shape
    return out.transpose(1, 2).reshape(batch * seq, heads * dim)[info.attention_grid()[0]]


def eager_attention(qkv: torch.Tensor, heads: int, inputs: AttentionInputs, dropout_p: float = 0.0) -> torch.Tensor:
    q, k, v = _split(qkv, heads, inputs.info)
    scores = (q.float() @ k.float().transpose(-1, -2)) / q.shape[-1] ** 0.5 + inputs.bias
    probs = F.dropout(torch.softmax(scores, dim=-1), p=dropout_p).to(q.dtype)
    return _merge(probs @ v, inputs.info)


def sdpa_attention(qkv: torch.Tensor, heads: int, inputs: AttentionInputs, dropout_p: float = 0.0) -> torch.Tensor:
    q, k, v = _split(qkv, heads, inputs.info)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=inputs.bias.to(q.dtype), dropout_p=dropout_p)
    return _merge(out, inputs.info)


@functools.cache
def _flex_kernel(device_type: str):
    from torch.nn.attention.flex_attention import flex_attention

    # FlexAttention is fast only compiled; on the CPU its eager reference is enough for tests
    return torch.compile(flex_attention) if device_type == "cuda" else flex_attention


def flex_attention(qkv: torch.Tensor, heads: int, inputs: AttentionInputs, dropout_p: float = 0.0) -> torch.Tensor:
    qkv = _by_head(qkv, heads)
    total, _, _, dim = qkv.shape
    padded = inputs.doc_ids.shape[0]
    q, k, v = F.pad(qkv, (0, 0, 0, 0, 0, 0, 0, padded - total)).permute(1, 2, 0, 3)[:, None].unbind(0)
    doc, slopes, window = inputs.doc_ids, inputs.slopes, inputs.window

    def alibi_within_document(score, b, h, q_idx, kv_idx):
        # packed positions differ by the in-document distance, so ALiBi needs no position ids
        distance = (q_idx - kv_idx).abs()
        allowed = doc[q_idx] == doc[kv_idx]
        if window is not None:  # a Python int: the compiled kernel has it as a constant
            allowed = allowed & (distance <= window)
        return torch.where(allowed, score - slopes[h] * distance, float("-inf"))

    out = _flex_kernel(qkv.device.type)(q, k, v, score_mod=alibi_within_document, block_mask=inputs.block_mask)
    return out[0].transpose(0, 1)[:total].reshape(total, heads * dim)


def triton_attention(qkv: torch.Tensor, heads: int, inputs: AttentionInputs, dropout_p: float = 0.0) -> torch.Tensor:
    info = inputs.info
    if info.row_cu_seqlens is not None and info.max_row_tokens <= TRITON_MAX_SEQLEN:
        # packed rows: a tile per row, masked by document, rather than a tile per document
        return short_attention(qkv, heads, info.row_cu_seqlens, inputs.slopes, info.max_row_tokens, info.documents,
                               inputs.window)
    return short_attention(qkv, heads, info.cu_seqlens, inputs.slopes, info.max_seqlen, window=inputs.window)


def flash_attention(qkv: torch.Tensor, heads: int, inputs: AttentionInputs, dropout_p: float = 0.0) -> torch.Tensor:
    info = inputs.info
    if inputs.flash_version == 4:
        if inputs.window is not None:
            raise ValueError("attention 'flash_attn' (FlashAttention-4) has no sliding window here; choose attention: auto")
        return flash_attention4(qkv, heads, info.cu_seqlens, inputs.slopes, info.max_seqlen)
    from flash_attn import flash_attn_varlen_qkvpacked_func

    window = (-1, -1) if inputs.window is None else (inputs.window, inputs.window)
    out = flash_attn_varlen_qkvpacked_func(_by_head(qkv, heads), info.cu_seqlens, info.max_seqlen, dropout_p,
                                           alibi_slopes=inputs.slopes, window_size=window)
    return out.reshape(qkv.shape[0], -1)


ATTENTION = {"eager": eager_attention, "sdpa": sdpa_attention, "flex": flex_attention,
             "triton": triton_attention, "flash_attn": flash_attention}


def attend(qkv: torch.Tensor, heads: int, inputs: AttentionInputs, dropout_p: float = 0.0) -> torch.Tensor:
    """Run ``inputs.backend``, which :func:`backend_for_device` chose for this dropout setting.

    ``heads`` comes from the layer, not from ``inputs``: a module's int attribute stays a constant
    under ``torch.compile(dynamic=True)``, where an int or a size read from the inputs would be
    symbolic, and a symbolic head count slows every step."""
    return ATTENTION[inputs.backend](qkv, heads, inputs, dropout_p)
