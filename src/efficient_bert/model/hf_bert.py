"""The plain Hugging Face BERT baseline, built from a config (never downloaded)."""

from __future__ import annotations

from typing import Any

from transformers import BertConfig, BertForMaskedLM
from transformers.models.bert.modeling_bert import BertLayer

from efficient_bert.errors import ArgumentError
from efficient_bert.model.composer_mlm import ComposerMLM
from efficient_bert.model.vocabulary import vocabulary_size

# bert-base-uncased's architecture; YAML keys override any of these.
BERT_BASE = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                 max_position_embeddings=512, type_vocab_size=2, hidden_act="gelu",
                 hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)

# every config key a YAML may set, with its default (the registry checks a value's type against it)
CONFIG_KEYS = {k: v for k, v in BertConfig().to_dict().items()
               if k not in ("transformers_version", "model_type", "architectures")}


def hf_bert_config(vocab_size: int, pad_token_id: int, **overrides: Any) -> BertConfig:
    cfg = {**BERT_BASE, **overrides}
    if cfg["hidden_size"] % cfg["num_attention_heads"]:
        raise ArgumentError("hidden_size", f"must be divisible by num_attention_heads ({cfg['num_attention_heads']}), "
                                           f"got {cfg['hidden_size']}")
    return BertConfig(vocab_size=vocab_size, pad_token_id=pad_token_id, **cfg)


def build_hf_bert(tokenizer: Any, max_seq_len: int = 512, compile: bool = False, **config: Any) -> ComposerMLM:
    """``BertForMaskedLM`` with BERT's weight init, vocabulary sized to ``tokenizer``, in a ComposerMLM.

    ``compile`` compiles the whole module in place (``nn.Module.compile``: the state dict keeps its
    names), the fastest HF configuration of ``bench/throughput.py``."""
    config.setdefault("max_position_embeddings", max(512, max_seq_len))
    if config["max_position_embeddings"] < max_seq_len:
        raise ArgumentError("max_position_embeddings", f"{config['max_position_embeddings']} is shorter than "
                                                       f"max_seq_len ({max_seq_len})")
    vocab = vocabulary_size(tokenizer, config.pop("vocab_size", None))
    module = BertForMaskedLM(hf_bert_config(vocab, tokenizer.pad_token_id, **config))
    module.fsdp_wrap_fn = is_bert_layer  # Composer's FSDP hook: one shard unit per encoder layer
    if compile:
        module.compile()
    return ComposerMLM(module, tokenizer)




def is_bert_layer(module: Any) -> bool:
    return isinstance(module, BertLayer)
