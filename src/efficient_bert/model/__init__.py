"""Models: the HF BERT baseline and the Composer wrapper shared by all masked-LM modules."""

from efficient_bert.model.composer_mlm import ComposerMLM
from efficient_bert.model.hf_bert import build_hf_bert, hf_bert_config

__all__ = ["ComposerMLM", "build_hf_bert", "hf_bert_config"]
