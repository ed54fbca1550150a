"""Mosaic BERT (Portes et al. 2023) in plain PyTorch: BERT with ALiBi instead of position embeddings
(Press et al. 2022) and a GeGLU feed-forward, post-LN or pre-LN.

Padded rows, SDPA with an additive bias: ALiBi's -slope * |i - j| plus -inf on padded keys. The weights'
names are those of efficient_bert's unpadded training model, so its exports load here unchanged.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import BaseModelOutput, MaskedLMOutput, SequenceClassifierOutput

from .configuration_mosaic_bert import MosaicBertConfig


def alibi_slopes(num_heads: int) -> torch.Tensor:
    """Per-head slopes: the geometric sequence 2^(-8/n), 2^(-16/n), ... for n heads.

    When n is not a power of two, the paper's rule: take the slopes of the closest power of two
    below n, then the odd-indexed slopes of twice that power for the remaining heads.
    """
    def power_of_two(n: int) -> list[float]:
        start = 2 ** (-8 / n)
        return [start ** (i + 1) for i in range(n)]

    if math.log2(num_heads).is_integer():
        slopes = power_of_two(num_heads)
    else:
        lower = 2 ** math.floor(math.log2(num_heads))
        slopes = power_of_two(lower) + power_of_two(2 * lower)[0::2][: num_heads - lower]
    return torch.tensor(slopes, dtype=torch.float32)


def slope_bias(slopes: torch.Tensor, seq_len: int) -> torch.Tensor:
    """(heads, seq, seq) ALiBi bias -slope * |i - j| in ``slopes``' dtype: symmetric, for an encoder."""
    pos = torch.arange(seq_len, device=slopes.device)
    return -slopes[:, None, None] * (pos[None, :] - pos[:, None]).abs().to(slopes.dtype)


def attention_bias(attention_mask: torch.Tensor, num_heads: int, dtype: torch.dtype) -> torch.Tensor:
    """(batch, heads, seq, seq): ALiBi plus -inf on the padded keys of each row."""
    alibi = slope_bias(alibi_slopes(num_heads).to(attention_mask.device), attention_mask.shape[1])
    keys = torch.zeros(attention_mask.shape, device=attention_mask.device)
    keys = keys.masked_fill(attention_mask == 0, float("-inf"))[:, None, None, :]
    return (alibi[None] + keys).to(dtype)


def sequence_classification_loss(config: PretrainedConfig, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """HF's rules: regression for one label, cross-entropy for integer labels, BCE for multi-label (the
    problem type is inferred once and kept in the config)."""
    problem = config.problem_type
    if problem is None:
        if config.num_labels == 1:
            problem = "regression"
        elif labels.dtype in (torch.long, torch.int):
            problem = "single_label_classification"
        else:
            problem = "multi_label_classification"
        config.problem_type = problem
    if problem == "regression":
        return F.mse_loss(logits.squeeze(-1), labels.float().view(-1))
    if problem == "single_label_classification":
        return F.cross_entropy(logits, labels.view(-1))
    return F.binary_cross_entropy_with_logits(logits, labels.float())


class MosaicBertLayer(nn.Module):
    def __init__(self, config: MosaicBertConfig):
        super().__init__()
        h = config.hidden_size
        self.heads = config.num_attention_heads
        self.prenorm = config.prenorm
        self.attention_dropout = config.attention_probs_dropout_prob
        bias = config.linear_bias
        self.qkv = nn.Linear(h, 3 * h, bias=bias)
        self.attn_out = nn.Linear(h, h, bias=bias)
        self.attn_norm = nn.LayerNorm(h, eps=config.layer_norm_eps)
        self.gated = nn.Linear(h, 2 * config.intermediate_size, bias=False)  # GeGLU: gelu(x W) * (x V)
        self.mlp_out = nn.Linear(config.intermediate_size, h, bias=bias)
        self.mlp_norm = nn.LayerNorm(h, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def attention(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        b, s, h = x.shape
        q, k, v = self.qkv(x).view(b, s, 3, self.heads, h // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        p = self.attention_dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=p)
        return self.attn_out(out.transpose(1, 2).reshape(b, s, h))

    def mlp(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gated(x).chunk(2, dim=-1)
        return self.mlp_out(F.gelu(gate) * up)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        if self.prenorm:
            x = x + self.dropout(self.attention(self.attn_norm(x), bias))
            return x + self.dropout(self.mlp(self.mlp_norm(x)))
        x = self.attn_norm(x + self.dropout(self.attention(x, bias)))
        return self.mlp_norm(x + self.dropout(self.mlp(x)))


class MosaicBertPreTrainedModel(PreTrainedModel):
    config_class = MosaicBertConfig
    base_model_prefix = "bert"
    _no_split_modules = ["MosaicBertLayer"]

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
    """Word and token-type embeddings (ALiBi carries position), the encoder layers and, pre-LN, a final norm."""

    layer_class = MosaicBertLayer  # efficient_bert's unpadded model puts its own in

    def __init__(self, config: MosaicBertConfig):
        super().__init__(config)
        h = config.hidden_size
        self.word_embeddings = nn.Embedding(config.vocab_size, h, padding_idx=config.pad_token_id)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, h)
        self.embedding_norm = nn.LayerNorm(h, eps=config.layer_norm_eps)
        self.embedding_dropout = nn.Dropout(config.hidden_dropout_prob)
        self.layers = nn.ModuleList(self.layer_class(config) for _ in range(config.num_hidden_layers))
        self.final_norm = nn.LayerNorm(h, eps=config.layer_norm_eps) if config.prenorm else nn.Identity()
        self.post_init()

    def get_input_embeddings(self):
        return self.word_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.word_embeddings = value

    def forward(self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor] = None,
                token_type_ids: Optional[torch.Tensor] = None, **_) -> BaseModelOutput:
        """(batch, seq, hidden) hidden states, zeros at padded positions."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        x = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)
        x = self.embedding_dropout(self.embedding_norm(x))
        bias = attention_bias(attention_mask, self.config.num_attention_heads, x.dtype)
        for layer in self.layers:
            x = layer(x, bias)
        x = self.final_norm(x) * attention_mask[..., None].to(x.dtype)
        return BaseModelOutput(last_hidden_state=x)


class MosaicBertLMHead(nn.Module):
    """BERT's transform (dense, GELU, LayerNorm) and the decoder tied to the word embeddings."""

    def __init__(self, config: MosaicBertConfig, word_embeddings: nn.Embedding):
        super().__init__()
        h = config.hidden_size
        self.transform = nn.Sequential(nn.Linear(h, h), nn.GELU(), nn.LayerNorm(h, eps=config.layer_norm_eps))
        self.decoder = nn.Linear(h, config.vocab_size)
        self.decoder.weight = word_embeddings.weight

    def forward(self, x: torch.Tensor, labels: Optional[torch.Tensor] = None
                ) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Logits of ``x`` and, given ``labels`` for the same rows, their cross-entropy (computed here so
        that a compiled head fuses the float32 softmax instead of writing float32 logits)."""
        logits = self.decoder(self.transform(x))
        return logits, (None if labels is None else F.cross_entropy(logits.float(), labels))


class MosaicBertForMaskedLM(MosaicBertPreTrainedModel):
    _tied_weights_keys = {"head.decoder.weight": "bert.word_embeddings.weight"}
    encoder_class = MosaicBertModel  # efficient_bert's unpadded model puts its own in

    def __init__(self, config: MosaicBertConfig):
        super().__init__(config)
        self.bert = self.encoder_class(config)
        self.head = MosaicBertLMHead(config, self.bert.word_embeddings)
        self.post_init()

    def get_input_embeddings(self):
        return self.bert.word_embeddings

    def get_output_embeddings(self):
        return self.head.decoder

    def forward(self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor] = None,
                token_type_ids: Optional[torch.Tensor] = None, labels: Optional[torch.Tensor] = None,
                **_) -> MaskedLMOutput:
        """(batch, seq, vocab) logits; with ``labels``, the mean cross-entropy of those not -100."""
        x = self.bert(input_ids, attention_mask, token_type_ids).last_hidden_state
        logits, _ = self.head(x)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=-100)
        return MaskedLMOutput(loss=loss, logits=logits)


class MosaicBertForSequenceClassification(MosaicBertPreTrainedModel):
    """BERT's pooler (dense + tanh on the first token, [CLS]) and a linear classifier."""

    encoder_class = MosaicBertModel

    def __init__(self, config: MosaicBertConfig):
        super().__init__(config)
        h = config.hidden_size
        self.num_labels = config.num_labels
        self.bert = self.encoder_class(config)
        self.pooler = nn.Sequential(nn.Linear(h, h), nn.Tanh())
        p = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = nn.Dropout(p)
        self.classifier = nn.Linear(h, config.num_labels)
        self.post_init()

    def forward(self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor] = None,
                token_type_ids: Optional[torch.Tensor] = None, labels: Optional[torch.Tensor] = None,
                **_) -> SequenceClassifierOutput:
        x = self.bert(input_ids, attention_mask, token_type_ids).last_hidden_state
        logits = self.classifier(self.dropout(self.pooler(x[:, 0])))
        loss = None if labels is None else sequence_classification_loss(self.config, logits.float(), labels)
        return SequenceClassifierOutput(loss=loss, logits=logits)
