"""The ModernBERT architecture trained on our fast path (``model.name: modernbert``); its exports are
transformers' own ``ModernBertForMaskedLM`` format. transformers' implementation itself is the peer
``model.name: hf_modernbert`` (``build_hf_modernbert``). The names below import on first use.
"""

from efficient_bert.lazy import lazy_exports

_EXPORTS = {
    "FastModernBertForMaskedLM": "efficient_bert.model.modernbert.modeling",
    "FastModernBertModel": "efficient_bert.model.modernbert.modeling",
    "SIZES": "efficient_bert.model.modernbert.factory",
    "CONFIG_KEYS": "efficient_bert.model.modernbert.factory",
    "build_modernbert": "efficient_bert.model.modernbert.factory",
    "build_hf_modernbert": "efficient_bert.model.modernbert.factory",
    "modernbert_config": "efficient_bert.model.modernbert.factory",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
