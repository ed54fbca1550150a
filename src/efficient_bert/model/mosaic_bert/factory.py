"""Mosaic BERT for a training run: sized by name, vocabulary from the tokenizer, in a ComposerMLM."""

from __future__ import annotations

from typing import Any

from efficient_bert.errors import ArgumentError
from efficient_bert.model.mosaic_bert.configuration import MosaicBertConfig
from efficient_bert.model.vocabulary import vocabulary_size

# sizes from the BERT paper; the GLU intermediate size is the one Mosaic BERT uses
SIZES = {
    "tiny": dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=512),
    "base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
    "large": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096),
}
# every config key a YAML may set, with its default (the registry checks a value's type against it)
CONFIG_KEYS = {k: v for k, v in MosaicBertConfig().to_dict().items()
               if k not in ("transformers_version", "model_type", "architectures")}


def build_mosaic_bert(tokenizer: Any, max_seq_len: int = 128, size: str = "base", compile: bool = False,
                      **config: Any):
    """MosaicBertForMaskedLM sized to ``tokenizer`` (vocab padded to a multiple of 64), in a ComposerMLM.

    ``size`` picks tiny/base/large; explicit keys override it. ``compile`` compiles each layer and
    the MLM head (regional ``torch.compile``). ``max_seq_len`` is accepted for symmetry with other
    models: ALiBi needs no position table.
    """
    from efficient_bert.model.composer_mlm import ComposerMLM
    from efficient_bert.model.mosaic_bert.modeling import MosaicBertForMaskedLM

    if size not in SIZES:
        raise ArgumentError("size", f"unknown size '{size}'; choose one of {', '.join(SIZES)}")
    vocab = vocabulary_size(tokenizer, config.pop("vocab_size", None))
    cfg = MosaicBertConfig(vocab_size=vocab, pad_token_id=tokenizer.pad_token_id, **{**SIZES[size], **config})
    model = MosaicBertForMaskedLM(cfg)
    if compile:
        model.compile_regions()
    return ComposerMLM(model, tokenizer)


