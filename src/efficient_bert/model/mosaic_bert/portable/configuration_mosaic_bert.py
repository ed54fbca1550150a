"""The Mosaic BERT config (``model_type: mosaic_bert``), as an export's ``config.json`` holds it."""

from __future__ import annotations

from typing import Optional

from transformers import PretrainedConfig


class MosaicBertConfig(PretrainedConfig):
    """``linear_bias``: whether the encoder layers' QKV, attention-output and MLP-output projections have
    biases (the GLU input projection has none). ``attention`` and ``kernels`` choose the training
    library's backends; the portable model ignores them. ``vocab_size`` is rounded up to a multiple of
    ``pad_vocab_to_multiple_of`` (tensor-core-friendly decoder shapes)."""

    model_type = "mosaic_bert"

    def __init__(self, vocab_size: int = 30528, hidden_size: int = 768, num_hidden_layers: int = 12,
                 num_attention_heads: int = 12, intermediate_size: int = 3072, hidden_dropout_prob: float = 0.1,
                 attention_probs_dropout_prob: float = 0.0, layer_norm_eps: float = 1e-12,
                 initializer_range: float = 0.02, type_vocab_size: int = 2, pad_token_id: int = 0,
                 attention: str = "auto", kernels: str = "auto", prenorm: bool = False, linear_bias: bool = True,
                 pad_vocab_to_multiple_of: int = 64, classifier_dropout: Optional[float] = None, **kwargs):
        if hidden_size % num_attention_heads:
            raise ValueError(f"hidden_size ({hidden_size}) must be divisible by num_attention_heads "
                             f"({num_attention_heads})")
        m = pad_vocab_to_multiple_of
        kwargs.setdefault("tie_word_embeddings", True)  # the MLM decoder shares the word embeddings
        super().__init__(pad_token_id=pad_token_id, **kwargs)
        self.vocab_size = -(-vocab_size // m) * m if m > 1 else vocab_size
        self.hidden_size, self.num_hidden_layers = hidden_size, num_hidden_layers
        self.num_attention_heads, self.intermediate_size = num_attention_heads, intermediate_size
        self.hidden_dropout_prob, self.attention_probs_dropout_prob = hidden_dropout_prob, attention_probs_dropout_prob
        self.layer_norm_eps, self.initializer_range = layer_norm_eps, initializer_range
        self.type_vocab_size, self.attention, self.prenorm = type_vocab_size, attention, prenorm
        self.linear_bias = linear_bias
        self.kernels, self.classifier_dropout = kernels, classifier_dropout
        self.pad_vocab_to_multiple_of = m
