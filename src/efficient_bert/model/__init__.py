"""Models: our Mosaic BERT, the HF BERT baseline, the Composer wrapper shared by all masked-LM modules,
and loading and exporting checkpoints. The names below import on first use."""

from efficient_bert.lazy import lazy_exports
from efficient_bert.model.mosaic_bert import _EXPORTS as _MOSAIC_EXPORTS

_EXPORTS = {
    "ComposerMLM": "efficient_bert.model.composer_mlm",
    "build_hf_bert": "efficient_bert.model.hf_bert",
    "hf_bert_config": "efficient_bert.model.hf_bert",
    "load_pretrained": "efficient_bert.model.checkpoint",
    "export_hf": "efficient_bert.model.checkpoint",
    **{name: module for name, module in _MOSAIC_EXPORTS.items() if name.startswith(("Mosaic", "build_"))},
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
