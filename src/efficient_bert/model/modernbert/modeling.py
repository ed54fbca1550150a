"""The ModernBERT architecture (Warner et al. 2024) on our fast path: unpadded tokens, our attention
backends and fused kernels.

Rotary position embeddings instead of ALiBi, global attention every ``global_attn_every_n_layers``-th
layer and local attention (each token sees the ``local_attention // 2`` tokens on either side) in the
others, GeGLU, pre-LN with no norm before the first layer's attention, no biases but the decoder's. The
config is transformers' own ``ModernBertConfig`` and the modules carry the parameter names of
transformers' ``ModernBertForMaskedLM``, so ``save_pretrained`` writes a folder that transformers loads
natively (no custom code), and its logits equal ours.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from transformers import ModernBertConfig, PreTrainedModel
from transformers.activations import ACT2FN
from transformers.modeling_outputs import BaseModelOutput, MaskedLMOutput

from efficient_bert.kernels import cross_entropy, geglu, geglu_reference
from efficient_bert.model.mosaic_bert.attention import AttentionInputs, attend, prepare_attention
from efficient_bert.model.mosaic_bert.modeling import (Backends, SparseMaskedLMOutput, add_norm, compute_dtype,
                                                       layer_norm, resolved_backends)
from efficient_bert.model.mosaic_bert.padding import Unpadded, labelled_tokens, locate_tokens, pad

GLOBAL, LOCAL = "full_attention", "sliding_attention"  # transformers' names of the two layer types


def layer_types(config: ModernBertConfig) -> list[str]:
    """Each layer's attention: ``config.layer_types``, or from ``global_attn_every_n_layers`` where a
    transformers version has no such field."""
    types = getattr(config, "layer_types", None)
    if types:
        return list(types)
    every = getattr(config, "global_attn_every_n_layers", 3)
    return [GLOBAL if i % every == 0 else LOCAL for i in range(config.num_hidden_layers)]


def rope_theta(config: ModernBertConfig, kind: str) -> float:
    params = getattr(config, "rope_parameters", None) or {}
    if kind in params and "rope_theta" in params[kind]:
        return float(params[kind]["rope_theta"])
    return float(getattr(config, "global_rope_theta" if kind == GLOBAL else "local_rope_theta",
                         160_000.0 if kind == GLOBAL else 10_000.0))


def rotary_tables(positions: torch.Tensor, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(tokens, head_dim) cos and sin of each token's position, float32 (the half-rotation layout)."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=positions.device, dtype=torch.float32) / head_dim))
    freqs = positions.float()[:, None] * inv_freq[None, :]
    angles = torch.cat((freqs, freqs), dim=-1)
    return angles.cos(), angles.sin()


def rotate(qkv: torch.Tensor, heads: int, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """The packed (tokens, 3 * heads * dim) QKV with Q and K rotated to their positions (in float32, as
    transformers does), V as it is."""
    tokens = qkv.shape[0]
    q, k, v = qkv.view(tokens, 3, heads, -1).unbind(1)
    cos, sin = cos[:, None, :], sin[:, None, :]

    def turn(x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        half = x.shape[-1] // 2
        return (x * cos + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin).to(qkv.dtype)

    return torch.stack((turn(q), turn(k), v), dim=1).view(tokens, -1)


def output_projection(linear: nn.Linear) -> nn.Linear:
    """Marks a layer that transformers' ModernBERT initializes with the depth-scaled deviation."""
    linear.init_role = "out"
    return linear


class ModernBertEmbeddings(nn.Module):
    def __init__(self, config: ModernBertConfig):
        super().__init__()
        self.tok_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.norm_eps, bias=config.norm_bias)
        self.drop = nn.Dropout(config.embedding_dropout)


class ModernBertAttention(nn.Module):
    def __init__(self, config: ModernBertConfig):
        super().__init__()
        h = config.hidden_size
        self.Wqkv = nn.Linear(h, 3 * h, bias=config.attention_bias)
        self.Wo = output_projection(nn.Linear(h, h, bias=config.attention_bias))


class ModernBertMLP(nn.Module):
    def __init__(self, config: ModernBertConfig):
        super().__init__()
        self.Wi = nn.Linear(config.hidden_size, 2 * config.intermediate_size, bias=config.mlp_bias)
        self.Wo = output_projection(nn.Linear(config.intermediate_size, config.hidden_size, bias=config.mlp_bias))


class ModernBertLayer(nn.Module):
    def __init__(self, config: ModernBertConfig, index: int):
        super().__init__()
        h = config.hidden_size
        self.heads = config.num_attention_heads
        self.kind = layer_types(config)[index]
        self.attention_dropout, self.mlp_dropout = config.attention_dropout, config.mlp_dropout
        # the embeddings' norm is the first layer's pre-attention norm
        self.attn_norm = nn.Identity() if index == 0 else nn.LayerNorm(h, eps=config.norm_eps, bias=config.norm_bias)
        self.attn = ModernBertAttention(config)
        self.mlp_norm = nn.LayerNorm(h, eps=config.norm_eps, bias=config.norm_bias)
        self.mlp = ModernBertMLP(config)
        if config.hidden_activation not in ("gelu", "gelu_python"):
            raise ValueError(f"hidden_activation '{config.hidden_activation}': our GeGLU is exact GELU ('gelu')")

    def forward(self, x: torch.Tensor, inputs: dict[str, AttentionInputs],
                rotary: dict[str, tuple[torch.Tensor, torch.Tensor]], fused: bool = False) -> torch.Tensor:
        h = x if isinstance(self.attn_norm, nn.Identity) else layer_norm(self.attn_norm, x, None, fused)
        qkv = rotate(self.attn.Wqkv(h), self.heads, *rotary[self.kind])
        p = self.attention_dropout if self.training else 0.0
        out = F.dropout(self.attn.Wo(attend(qkv, self.heads, inputs[self.kind], p)), p)
        h, x = add_norm(self.mlp_norm, out, x, fused)
        glu = geglu if fused else geglu_reference
        return x + self.mlp.Wo(F.dropout(glu(self.mlp.Wi(h)), self.mlp_dropout if self.training else 0.0))


class FastModernBertPreTrainedModel(PreTrainedModel):
    config_class = ModernBertConfig
    base_model_prefix = "model"
    _no_split_modules = ["ModernBertLayer"]

    def _init_weights(self, module: nn.Module) -> None:
        """transformers' ModernBERT init: truncated normals, the output projections (marked ``out``) scaled
        by depth. By the module itself: transformers initializes the modules of code outside it one leaf
        at a time."""
        c = self.config
        if isinstance(module, (nn.Linear, nn.Embedding)):
            std = c.initializer_range
            if getattr(module, "init_role", None) == "out":
                std /= math.sqrt(2.0 * c.num_hidden_layers)
            cutoff = (c.initializer_cutoff_factor or 3.0) * std
            nn.init.trunc_normal_(module.weight, mean=0.0, std=std, a=-cutoff, b=cutoff)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    def save_pretrained(self, save_directory, *args, **kwargs) -> None:
        """transformers' own format: ``architectures`` names its classes, so the folder loads natively."""
        ours = self.config.architectures
        self.config.architectures = [type(self).__name__.replace("Fast", "", 1)]
        try:
            super().save_pretrained(save_directory, *args, **kwargs)
        finally:
            self.config.architectures = ours


class FastModernBertModel(FastModernBertPreTrainedModel):
    def __init__(self, config: ModernBertConfig):
        super().__init__(config)
        self.embeddings = ModernBertEmbeddings(config)
        self.layers = nn.ModuleList(ModernBertLayer(config, i) for i in range(config.num_hidden_layers))
        self.final_norm = nn.LayerNorm(config.hidden_size, eps=config.norm_eps, bias=config.norm_bias)
        self.windowed = LOCAL in layer_types(config)
        self._resolved: dict[tuple[torch.device, bool], Backends] = {}
        self.post_init()

    def get_input_embeddings(self):
        return self.embeddings.tok_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embeddings.tok_embeddings = value

    def backends(self, device: torch.device) -> Backends:
        c = self.config
        return resolved_backends(self._resolved, device, self.training, getattr(c, "attention", "auto"),
                                 getattr(c, "kernels", "auto"), c.attention_dropout,
                                 c.hidden_size // c.num_attention_heads, windowed=self.windowed)

    def encode(self, input_ids: torch.Tensor, info: Unpadded) -> torch.Tensor:
        """Hidden states of the real tokens, (total_tokens, hidden)."""
        c = self.config
        device = input_ids.device
        attention, fused = self.backends(device)
        dtype = compute_dtype(device, self.embeddings.tok_embeddings.weight.dtype)
        backend = attention.backend_for_batch(info.max_seqlen, dtype)
        inputs = {GLOBAL: prepare_attention(backend, info, c.num_attention_heads, device, dtype, alibi=False)}
        if self.windowed:
            inputs[LOCAL] = prepare_attention(backend, info, c.num_attention_heads, device, dtype, alibi=False,
                                              window=c.local_attention // 2)
        positions = info.positions()
        head_dim = c.hidden_size // c.num_attention_heads
        rotary = {kind: rotary_tables(positions, head_dim, rope_theta(c, kind)) for kind in inputs}
        emb = self.embeddings
        x = F.embedding(input_ids.flatten()[info.indices], emb.tok_embeddings.weight, emb.tok_embeddings.padding_idx)
        x = emb.drop(layer_norm(emb.norm, x, None, fused))
        for layer in self.layers:
            x = layer(x, inputs, rotary, fused)
        return layer_norm(self.final_norm, x, None, fused)

    def forward(self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor] = None,
                seq_lengths: Optional[Sequence[int]] = None,
                document_lengths: Optional[Sequence[Sequence[int]]] = None, **_) -> BaseModelOutput:
        """Padded (batch, seq, hidden) hidden states, zeros at padding."""
        info = locate_tokens(input_ids, attention_mask, seq_lengths, document_lengths)
        return BaseModelOutput(last_hidden_state=pad(self.encode(input_ids, info), info))

    def compile_layers(self, **compile_kwargs) -> None:
        for layer in self.layers:
            layer.compile(**{"dynamic": True, **compile_kwargs})


class ModernBertHead(nn.Module):
    def __init__(self, config: ModernBertConfig):
        super().__init__()
        self.dense = output_projection(nn.Linear(config.hidden_size, config.hidden_size, bias=config.classifier_bias))
        self.act = ACT2FN[config.classifier_activation]
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.norm_eps, bias=config.norm_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.act(self.dense(x)))


class FastModernBertForMaskedLM(FastModernBertPreTrainedModel):
    """With labels, the head runs only at the labelled positions (sparse prediction)."""

    _tied_weights_keys = {"decoder.weight": "model.embeddings.tok_embeddings.weight"}
    sparse_prediction = True

    def __init__(self, config: ModernBertConfig):
        super().__init__(config)
        self.model = FastModernBertModel(config)
        self.head = ModernBertHead(config)
        self.decoder = output_projection(nn.Linear(config.hidden_size, config.vocab_size, bias=config.decoder_bias))
        self.post_init()

    def get_input_embeddings(self):
        return self.model.embeddings.tok_embeddings

    def get_output_embeddings(self):
        return self.decoder

    def compile_regions(self, **compile_kwargs) -> None:
        self.model.compile_layers(**compile_kwargs)
        self.head.compile(**{"dynamic": True, **compile_kwargs})

    def forward(self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor] = None,
                labels: Optional[torch.Tensor] = None, seq_lengths: Optional[Sequence[int]] = None,
                masked_counts: Optional[Sequence[int]] = None,
                document_lengths: Optional[Sequence[Sequence[int]]] = None, **_) -> MaskedLMOutput:
        """As Mosaic BERT's: without labels, padded full logits; with them, the labelled positions' logits
        and labels (:class:`SparseMaskedLMOutput`) and their cross-entropy."""
        info = locate_tokens(input_ids, attention_mask, seq_lengths, document_lengths)
        if labels is None:
            return MaskedLMOutput(logits=pad(self.decoder(self.head(self.model.encode(input_ids, info))), info))
        masked, masked_labels = labelled_tokens(labels, info, masked_counts)
        x = self.model.encode(input_ids, info).index_select(0, masked)
        logits = self.decoder(self.head(x))
        if self.model.backends(x.device).fused_kernels:
            loss = cross_entropy(logits, masked_labels)
        else:
            loss = F.cross_entropy(logits.float(), masked_labels)
        return SparseMaskedLMOutput(loss=loss, logits=logits, labels=masked_labels)
