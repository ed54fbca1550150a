"""Corpora, MDS conversion, tokenizers, streaming datasets and MLM batching. The names below import
on first use."""

from efficient_bert.lazy import lazy_exports

_EXPORTS = {
    "MLMCollator": "efficient_bert.data.mlm_collator",
    "StreamingTextDataset": "efficient_bert.data.text_dataset",
    "CorruptShardError": "efficient_bert.data.text_dataset",
    "build_mlm_dataloader": "efficient_bert.data.dataloader",
    "load_tokenizer": "efficient_bert.data.tokenizer",
    "train_wordpiece": "efficient_bert.data.tokenizer",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
