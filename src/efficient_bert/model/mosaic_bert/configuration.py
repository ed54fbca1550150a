"""The Mosaic BERT config the library trains with: the portable config (what an export's ``config.json``
holds) with the training backends checked up front."""

from __future__ import annotations

from efficient_bert.model.mosaic_bert.portable.configuration_mosaic_bert import MosaicBertConfig as PortableConfig

KERNELS = ("auto", "triton", "torch")


class MosaicBertConfig(PortableConfig):
    def __init__(self, attention: str = "auto", kernels: str = "auto", attention_probs_dropout_prob: float = 0.0,
                 **kwargs):
        # imported here: the attention module imports transformers' modeling code, whose loading registers
        # this config with the Auto classes (efficient_bert.model.auto_classes)
        from efficient_bert.model.mosaic_bert.attention import backend_for_device

        backend_for_device(attention, dropout_p=attention_probs_dropout_prob)
        if kernels not in KERNELS:
            raise ValueError(f"unknown kernels '{kernels}'; choose one of {', '.join(KERNELS)}")
        super().__init__(attention=attention, kernels=kernels,
                         attention_probs_dropout_prob=attention_probs_dropout_prob, **kwargs)
