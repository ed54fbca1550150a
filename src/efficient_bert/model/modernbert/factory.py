"""ModernBERT-architecture models for a training run: sized by name, vocabulary and special tokens from
the tokenizer, in a ComposerMLM; ours (``modernbert``) and transformers' (``hf_modernbert``) from one config."""

from __future__ import annotations

from typing import Any

from transformers import ModernBertConfig

from efficient_bert.errors import ArgumentError
from efficient_bert.model.vocabulary import vocabulary_size

# ModernBERT-base and -large as published (Warner et al. 2024); tiny for tests and CPU runs
SIZES = {
    "tiny": dict(hidden_size=128, num_hidden_layers=3, num_attention_heads=2, intermediate_size=192),
    "base": dict(hidden_size=768, num_hidden_layers=22, num_attention_heads=12, intermediate_size=1152),
    "large": dict(hidden_size=1024, num_hidden_layers=28, num_attention_heads=16, intermediate_size=2624),
}
_NOT_KEYS = ("transformers_version", "model_type", "architectures", "vocab_size", "pad_token_id", "bos_token_id",
             "eos_token_id", "cls_token_id", "sep_token_id")
# every config key a YAML may set, with its default (the registry checks a value's type against it)
CONFIG_KEYS = {**{k: v for k, v in ModernBertConfig().to_dict().items() if k not in _NOT_KEYS},
               # what ModernBertConfig takes besides its fields: the layer pattern and the two RoPE bases
               "global_attn_every_n_layers": 3, "global_rope_theta": 160_000.0, "local_rope_theta": 10_000.0}


def modernbert_config(tokenizer: Any, size: str = "base", **overrides: Any) -> ModernBertConfig:
    """transformers' ``ModernBertConfig`` at ``size``, its vocabulary and special tokens the tokenizer's."""
    if size not in SIZES:
        raise ArgumentError("size", f"unknown size '{size}'; choose one of {', '.join(SIZES)}")
    cfg = {**SIZES[size], **overrides}
    if cfg["hidden_size"] % cfg["num_attention_heads"]:
        raise ArgumentError("hidden_size", f"must be divisible by num_attention_heads ({cfg['num_attention_heads']}), "
                                           f"got {cfg['hidden_size']}")
    vocab = vocabulary_size(tokenizer, cfg.pop("vocab_size", None))
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    return ModernBertConfig(vocab_size=vocab, pad_token_id=tokenizer.pad_token_id, cls_token_id=cls, bos_token_id=cls,
                            sep_token_id=sep, eos_token_id=sep, **cfg)


def build_modernbert(tokenizer: Any, max_seq_len: int = 128, size: str = "base", compile: bool = False,
                     attention: str = "auto", kernels: str = "auto", **config: Any):
    """The ModernBERT architecture on our fast path (unpadded, our attention backends and kernels).

    ``compile`` compiles each layer and the MLM head (regional ``torch.compile``)."""
    from efficient_bert.model.composer_mlm import ComposerMLM
    from efficient_bert.model.modernbert.modeling import FastModernBertForMaskedLM
    from efficient_bert.model.mosaic_bert.attention import backend_for_device
    from efficient_bert.model.mosaic_bert.configuration import KERNELS

    _check_length(max_seq_len, config)
    backend_for_device(attention, dropout_p=config.get("attention_dropout", 0.0))
    if kernels not in KERNELS:
        raise ArgumentError("kernels", f"unknown kernels '{kernels}'; choose one of {', '.join(KERNELS)}")
    cfg = modernbert_config(tokenizer, size, **config)
    cfg.attention, cfg.kernels = attention, kernels
    model = FastModernBertForMaskedLM(cfg)
    if compile:
        model.compile_regions()
    return ComposerMLM(model, tokenizer)


def build_hf_modernbert(tokenizer: Any, max_seq_len: int = 128, size: str = "base", compile: bool = False,
                        **config: Any):
    """transformers' ``ModernBertForMaskedLM`` as a user would install it (SDPA attention, no flash-attn,
    padded batches), in a ComposerMLM. ``compile`` compiles the whole module."""
    from transformers import ModernBertForMaskedLM

    from efficient_bert.model.composer_mlm import ComposerMLM

    _check_length(max_seq_len, config)
    cfg = modernbert_config(tokenizer, size, **config)
    cfg._attn_implementation = "sdpa"
    module = ModernBertForMaskedLM(cfg)
    if compile:
        module.compile()
    return ComposerMLM(module, tokenizer)


def _check_length(max_seq_len: int, config: dict[str, Any]) -> None:
    longest = config.get("max_position_embeddings", CONFIG_KEYS["max_position_embeddings"])
    if max_seq_len > longest:
        raise ArgumentError("max_position_embeddings", f"{longest} is shorter than max_seq_len ({max_seq_len})")
