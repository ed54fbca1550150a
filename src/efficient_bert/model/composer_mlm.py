"""Composer wrapper for any HF-style masked-LM module (our Mosaic BERT, HF BertForMaskedLM, ...)."""

from __future__ import annotations

import inspect
from typing import Any, Mapping, Optional

import torch
from composer.metrics import nlp as composer_metrics
from composer.metrics.nlp import LanguageCrossEntropy
from composer.models import ComposerModel
from torchmetrics import Metric

from efficient_bert.data.tokenizer import vocabulary_digest
from efficient_bert.model.flops import mlm_training_flops
from efficient_bert.model.layer_plan import find_layer_plan
from efficient_bert.model.unigram_floor import UnigramEntropy, original_tokens

# Keys of a batch that a module may consume; the rest (sample_id, ...) is for algorithms.
# ``seq_lengths``/``masked_counts`` are host-side per-row counts that spare unpadded models a sync.
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids", "labels", "seq_lengths", "masked_counts",
                "document_lengths")


def model_inputs(module: torch.nn.Module, batch: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of ``batch`` that ``module.forward`` names as parameters (HF BERT takes no counts)."""
    # unwrap torch.compile (_orig_mod) and FSDP1 (_fsdp_wrapped_module), whose forward takes *args;
    # compilation may sit outside or inside the FSDP1 wrapper, so _orig_mod is looked for on both sides
    for attribute in ("_orig_mod", "_fsdp_wrapped_module", "_orig_mod"):
        module = getattr(module, attribute, module)
    names = inspect.signature(module.forward).parameters
    if "document_lengths" in batch and "document_lengths" not in names:
        raise ValueError(f"{type(module).__name__} cannot attend within the documents of packed rows; train it on "
                         "unpacked rows (train_loader.dataset.pack: false) or use model.name: mosaic_bert")
    return {k: batch[k] for k in MODEL_INPUTS if k in batch and k in names}


class MaskedAccuracy(composer_metrics.MaskedAccuracy):
    """Composer's ``MaskedAccuracy`` (the same states and values) counted by masked sums: Composer's
    update selects the labelled positions, and a selection's size is a value the host waits for."""

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        preds = torch.argmax(preds, dim=-1)
        if preds.shape != target.shape:
            raise ValueError(f"MaskedAccuracy: predictions of shape {tuple(preds.shape)} for targets of shape "
                             f"{tuple(target.shape)}; pass one target per row of logits")
        labelled = target != self.ignore_index
        self.correct += (labelled & (preds == target)).sum()
        self.total += labelled.sum()


class ComposerMLM(ComposerModel):
    """Wraps a module whose ``forward(input_ids, attention_mask, token_type_ids, labels)`` returns an
    object with ``loss`` and ``logits`` (the HF ``MaskedLMOutput`` contract).

    Metrics: ``LanguageCrossEntropy`` (the MLM loss over masked tokens) and ``MaskedAccuracy``, on
    train and eval, updated without waiting for the device; on eval also ``UnigramEntropy``, the
    loss floor of a model that knows only token frequencies (:mod:`efficient_bert.model.unigram_floor`;
    needs the tokenizer's special tokens).
    ``flops_per_batch`` lets Composer's SpeedMonitor report MFU.
    """

    def __init__(self, module: torch.nn.Module, tokenizer: Any = None):
        super().__init__()
        self.model = module
        self.tokenizer = tokenizer
        self.train_metrics = {"LanguageCrossEntropy": LanguageCrossEntropy(), "MaskedAccuracy": MaskedAccuracy()}
        self.val_metrics = {"LanguageCrossEntropy": LanguageCrossEntropy(), "MaskedAccuracy": MaskedAccuracy()}
        if tokenizer is not None:
            self.special_ids = torch.tensor(sorted(set(tokenizer.all_special_ids)), dtype=torch.long)
            self.val_metrics["UnigramEntropy"] = UnigramEntropy(module.config.vocab_size)
            # checkpoints and exports then name the tokenizer they were trained with (fine-tuning checks it)
            module.config.tokenizer_vocabulary = vocabulary_digest(tokenizer)

    @property
    def config(self):
        return self.model.config

    def forward(self, batch: Mapping[str, Any]) -> Any:
        return self.model(**model_inputs(self.model, batch))

    def loss(self, outputs: Any, batch: Mapping[str, Any], *args: Any, **kwargs: Any) -> torch.Tensor:
        return outputs.loss

    def eval_forward(self, batch: Mapping[str, Any], outputs: Optional[Any] = None) -> Any:
        return outputs if outputs is not None else self.forward(batch)

    def get_metrics(self, is_train: bool = False) -> dict[str, Metric]:
        return self.train_metrics if is_train else self.val_metrics

    def update_metric(self, batch: Mapping[str, Any], outputs: Any, metric: Metric) -> None:
        if isinstance(metric, UnigramEntropy):
            metric.update(original_tokens(batch, self.special_ids))
            return
        labels = batch["labels"]
        if outputs.logits.dim() == 2:  # sparse prediction: logits only at the labelled positions
            # the model's own labels for those rows, when it returns them (SparseMaskedLMOutput);
            # selecting them here would wait for the device
            sparse_labels = getattr(outputs, "labels", None)
            labels = labels[labels != -100] if sparse_labels is None else sparse_labels
        metric.update(outputs.logits, labels)

    def flops_per_batch(self, batch: Mapping[str, Any]) -> float:
        # attention runs per sequence: per document in packed rows
        documents = batch.get("document_lengths")
        lengths = [n for row in documents for n in row] if documents is not None else batch.get("seq_lengths")
        return mlm_training_flops(self.model, batch["attention_mask"], batch.get("labels"), lengths,
                                  batch.get("masked_counts"))

    def get_extra_state(self) -> dict[str, Any]:
        # saved inside every Composer checkpoint, so a checkpoint alone rebuilds the model
        extra = {"hf_config": self.model.config.to_dict(), "hf_class": type(self.model).__name__}
        plan = find_layer_plan(self.model)
        if plan is not None and plan.depth < plan.total:  # layer stacking: the upper layers are not trained yet
            extra["trained_depth"] = plan.depth
        return extra

    def set_extra_state(self, state: Any) -> None:
        pass
