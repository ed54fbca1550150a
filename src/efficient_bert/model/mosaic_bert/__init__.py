"""Mosaic BERT: unpadded ALiBi + GeGLU encoder (work in progress for issue #3: eager and SDPA backends)."""

from typing import Any

from efficient_bert.model.composer_mlm import ComposerMLM
from efficient_bert.model.mosaic_bert.modeling import MosaicBertConfig, MosaicBertForMaskedLM, MosaicBertModel

CONFIG_KEYS = frozenset(MosaicBertConfig().to_dict()) - {"transformers_version", "model_type", "architectures"}


def build_mosaic_bert(tokenizer: Any, max_seq_len: int = 128, **config: Any) -> ComposerMLM:
    """MosaicBertForMaskedLM sized to ``tokenizer`` (vocab padded to a multiple of 64), in a ComposerMLM.

    ``max_seq_len`` is accepted for symmetry with other models: ALiBi needs no position table.
    """
    from efficient_bert.registry import ConfigError

    try:
        cfg = MosaicBertConfig(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, **config)
    except ValueError as exc:
        raise ConfigError(f"model: {exc}") from exc
    return ComposerMLM(MosaicBertForMaskedLM(cfg), tokenizer)


__all__ = ["MosaicBertConfig", "MosaicBertForMaskedLM", "MosaicBertModel", "build_mosaic_bert"]
