"""The unigram floor of an MLM evaluation: the loss of the best model that knows only token frequencies.

A model that has learned nothing but how often each token occurs predicts that distribution at
every masked position. On a set of tokens with empirical unigram distribution ``p`` no such
context-free prediction scores better than the entropy ``H(p) = -sum p log p`` (in nats, like the
MLM loss), so an eval loss near ``H(p)`` means the model uses no context, and only a loss clearly
below it shows learning. The floor is measured on the tokens the evaluation itself reads: every
real, non-special token of its batches (the masked positions are a uniform sample of those).
"""

from __future__ import annotations

from typing import Mapping

import torch
from torchmetrics import Metric


def original_tokens(batch: Mapping[str, torch.Tensor], special_ids: torch.Tensor) -> torch.Tensor:
    """The batch's real, non-special token ids before masking (labels hold the masked ones), flat."""
    ids, labels = batch["input_ids"], batch["labels"]
    original = torch.where(labels != -100, labels, ids)
    keep = batch["attention_mask"].bool() & ~torch.isin(original, special_ids.to(original.device))
    return original[keep]


class UnigramEntropy(Metric):
    """Entropy in nats of the unigram distribution of the tokens it is updated with."""

    full_state_update = False

    def __init__(self, vocab_size: int, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size = vocab_size
        self.add_state("counts", default=torch.zeros(vocab_size, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, tokens: torch.Tensor) -> None:
        self.counts += torch.bincount(tokens.flatten().long(), minlength=self.vocab_size).to(self.counts)

    def compute(self) -> torch.Tensor:
        total = self.counts.sum()
        if total == 0:
            return torch.tensor(float("nan"), dtype=torch.float64)
        p = self.counts[self.counts > 0] / total
        return -(p * p.log()).sum()
