"""Mosaic BERT: unpadded ALiBi + GeGLU encoder with pluggable attention backends and Triton kernels.

Importing this package registers the model with transformers' Auto classes, so
``AutoModelForMaskedLM.from_pretrained(dir)`` / ``AutoModelForSequenceClassification`` load our exports.
"""

from typing import Any

from transformers import AutoConfig, AutoModel, AutoModelForMaskedLM, AutoModelForSequenceClassification

from efficient_bert.model.mosaic_bert.attention import BACKENDS
from efficient_bert.model.mosaic_bert.modeling import (
    MosaicBertConfig,
    MosaicBertForMaskedLM,
    MosaicBertForSequenceClassification,
    MosaicBertModel,
)

AutoConfig.register(MosaicBertConfig.model_type, MosaicBertConfig, exist_ok=True)
AutoModel.register(MosaicBertConfig, MosaicBertModel, exist_ok=True)
AutoModelForMaskedLM.register(MosaicBertConfig, MosaicBertForMaskedLM, exist_ok=True)
AutoModelForSequenceClassification.register(MosaicBertConfig, MosaicBertForSequenceClassification, exist_ok=True)

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
    from efficient_bert.registry import ConfigError

    if size not in SIZES:
        raise ConfigError(f"model.size: unknown size '{size}'; choose one of {', '.join(SIZES)}")
    try:
        cfg = MosaicBertConfig(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                               **{**SIZES[size], **config})
    except ValueError as exc:
        raise ConfigError(f"model: {exc}") from exc
    model = MosaicBertForMaskedLM(cfg)
    if compile:
        model.compile_regions()
    return ComposerMLM(model, tokenizer)


__all__ = ["BACKENDS", "MosaicBertConfig", "MosaicBertForMaskedLM", "MosaicBertForSequenceClassification",
           "MosaicBertModel", "SIZES", "build_mosaic_bert"]
