"""Mosaic BERT: unpadded ALiBi + GeGLU encoder with pluggable attention backends and Triton kernels.

``import efficient_bert`` registers the model with transformers' Auto classes
(:mod:`efficient_bert.model.auto_classes`), so ``AutoModelForMaskedLM.from_pretrained(dir)`` and
``AutoModelForSequenceClassification`` load our exports. The names below import on first use.
"""

from efficient_bert.lazy import lazy_exports

_EXPORTS = {
    "BACKENDS": "efficient_bert.model.mosaic_bert.attention",
    "MosaicBertConfig": "efficient_bert.model.mosaic_bert.configuration",
    "MosaicBertModel": "efficient_bert.model.mosaic_bert.modeling",
    "MosaicBertForMaskedLM": "efficient_bert.model.mosaic_bert.modeling",
    "MosaicBertForSequenceClassification": "efficient_bert.model.mosaic_bert.modeling",
    "SIZES": "efficient_bert.model.mosaic_bert.factory",
    "CONFIG_KEYS": "efficient_bert.model.mosaic_bert.factory",
    "build_mosaic_bert": "efficient_bert.model.mosaic_bert.factory",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
