"""Mosaic BERT: an unpadded BERT encoder with ALiBi and GeGLU feed-forward (Portes et al. 2023).

Padding is removed once after the embeddings; every linear layer, the GLU and LayerNorm work on
(total_tokens, hidden). In training the MLM head runs only at masked positions (sparse prediction).
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import MaskedLMOutput

from efficient_bert.model.mosaic_bert.attention import ATTENTION, resolve_backend
from efficient_bert.model.mosaic_bert.padding import Unpadded, pad, unpad


class MosaicBertConfig(PretrainedConfig):
    model_type = "mosaic_bert"

    def __init__(self, vocab_size: int = 30528, hidden_size: int = 768, num_hidden_layers: int = 12,
                 num_attention_heads: int = 12, intermediate_size: int = 3072, hidden_dropout_prob: float = 0.1,
                 attention_probs_dropout_prob: float = 0.0, layer_norm_eps: float = 1e-12,
                 initializer_range: float = 0.02, type_vocab_size: int = 2, pad_token_id: int = 0,
                 attention: str = "auto", prenorm: bool = False, pad_vocab_to_multiple_of: int = 64, **kwargs):
        if hidden_size % num_attention_heads:
            raise ValueError(f"hidden_size ({hidden_size}) must be divisible by num_attention_heads "
                             f"({num_attention_heads})")
        resolve_backend(attention)
        m = pad_vocab_to_multiple_of
        kwargs.setdefault("tie_word_embeddings", True)  # the MLM decoder shares the word embeddings
        super().__init__(pad_token_id=pad_token_id, **kwargs)
        self.vocab_size = -(-vocab_size // m) * m if m > 1 else vocab_size
        self.hidden_size, self.num_hidden_layers = hidden_size, num_hidden_layers
        self.num_attention_heads, self.intermediate_size = num_attention_heads, intermediate_size
        self.hidden_dropout_prob, self.attention_probs_dropout_prob = hidden_dropout_prob, attention_probs_dropout_prob
        self.layer_norm_eps, self.initializer_range = layer_norm_eps, initializer_range
        self.type_vocab_size, self.attention, self.prenorm = type_vocab_size, attention, prenorm
        self.pad_vocab_to_multiple_of = m


class MosaicBertLayer(nn.Module):
    def __init__(self, config: MosaicBertConfig):
        super().__init__()
        h = config.hidden_size
        self.heads = config.num_attention_heads
        self.prenorm = config.prenorm
        self.attention_dropout = config.attention_probs_dropout_prob
        self.backend = ATTENTION[resolve_backend(config.attention)]
        self.qkv = nn.Linear(h, 3 * h)
        self.attn_out = nn.Linear(h, h)
        self.attn_norm = nn.LayerNorm(h, eps=config.layer_norm_eps)
        self.gated = nn.Linear(h, 2 * config.intermediate_size, bias=False)  # GeGLU: gelu(x W) * (x V)
        self.mlp_out = nn.Linear(config.intermediate_size, h)
        self.mlp_norm = nn.LayerNorm(h, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def attention(self, x: torch.Tensor, info: Unpadded) -> torch.Tensor:
        qkv = self.qkv(x).view(x.shape[0], 3, self.heads, -1)
        out = self.backend(qkv, info, self.attention_dropout if self.training else 0.0)
        return self.dropout(self.attn_out(out))

    def mlp(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gated(x).chunk(2, dim=-1)
        return self.dropout(self.mlp_out(F.gelu(gate, approximate="none") * up))

    def forward(self, x: torch.Tensor, info: Unpadded) -> torch.Tensor:
        if self.prenorm:
            x = x + self.attention(self.attn_norm(x), info)
            return x + self.mlp(self.mlp_norm(x))
        x = self.attn_norm(x + self.attention(x, info))
        return self.mlp_norm(x + self.mlp(x))


class MosaicBertPreTrainedModel(PreTrainedModel):
    config_class = MosaicBertConfig
    base_model_prefix = "bert"

    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


class MosaicBertModel(MosaicBertPreTrainedModel):
    """Embeddings (no learned positions: ALiBi carries position) and the unpadded encoder."""

    def __init__(self, config: MosaicBertConfig):
        super().__init__(config)
        h = config.hidden_size
        self.word_embeddings = nn.Embedding(config.vocab_size, h, padding_idx=config.pad_token_id)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, h)
        self.embedding_norm = nn.LayerNorm(h, eps=config.layer_norm_eps)
        self.embedding_dropout = nn.Dropout(config.hidden_dropout_prob)
        self.layers = nn.ModuleList(MosaicBertLayer(config) for _ in range(config.num_hidden_layers))
        self.final_norm = nn.LayerNorm(h, eps=config.layer_norm_eps) if config.prenorm else nn.Identity()
        self.post_init()

    def get_input_embeddings(self):
        return self.word_embeddings

    def encode(self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor] = None,
               token_type_ids: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, Unpadded]:
        """Hidden states of the real tokens, (total_tokens, hidden), and where they sit."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        _, info = unpad(input_ids[..., None], attention_mask)
        flat_ids = input_ids.flatten()[info.indices]
        flat_types = token_type_ids.flatten()[info.indices]
        x = self.word_embeddings(flat_ids) + self.token_type_embeddings(flat_types)
        x = self.embedding_dropout(self.embedding_norm(x))
        for layer in self.layers:
            x = layer(x, info)
        return self.final_norm(x), info

    def forward(self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor] = None,
                token_type_ids: Optional[torch.Tensor] = None, **_) -> torch.Tensor:
        """Padded (batch, seq, hidden) hidden states (zeros at padding), for HF-style callers."""
        x, info = self.encode(input_ids, attention_mask, token_type_ids)
        return pad(x, info)


class MosaicBertForMaskedLM(MosaicBertPreTrainedModel):
    _tied_weights_keys = {"decoder.weight": "bert.word_embeddings.weight"}

    def __init__(self, config: MosaicBertConfig):
        super().__init__(config)
        h = config.hidden_size
        self.bert = MosaicBertModel(config)
        self.transform = nn.Sequential(nn.Linear(h, h), nn.GELU(), nn.LayerNorm(h, eps=config.layer_norm_eps))
        self.decoder = nn.Linear(h, config.vocab_size)
        self.decoder.weight = self.bert.word_embeddings.weight
        self.post_init()

    def get_input_embeddings(self):
        return self.bert.word_embeddings

    def get_output_embeddings(self):
        return self.decoder

    def forward(self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor] = None,
                token_type_ids: Optional[torch.Tensor] = None, labels: Optional[torch.Tensor] = None,
                **_) -> MaskedLMOutput:
        """With ``labels``, logits are computed only at labelled (masked) positions: shape
        (n_masked, vocab); the loss is their cross-entropy. Without labels, padded full logits."""
        x, info = self.bert.encode(input_ids, attention_mask, token_type_ids)
        if labels is None:
            return MaskedLMOutput(logits=pad(self.decoder(self.transform(x)), info))
        flat_labels = labels.flatten()[info.indices]
        keep = flat_labels != -100
        logits = self.decoder(self.transform(x[keep]))
        loss = F.cross_entropy(logits.float(), flat_labels[keep])
        return MaskedLMOutput(loss=loss, logits=logits)
