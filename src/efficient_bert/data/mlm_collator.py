"""Batching with dynamic MLM masking: a fresh mask every time a sample is seen."""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np
import torch


def host_counts(attention_mask: torch.Tensor, labels: torch.Tensor) -> dict[str, list[int]]:
    """Per-row real and labelled token counts as Python lists (``seq_lengths``, ``masked_counts``),
    computed on the host where the batch is made, so unpadded models never read them from the GPU."""
    return {"seq_lengths": attention_mask.sum(dim=1).tolist(), "masked_counts": (labels != -100).sum(dim=1).tolist()}


class MLMCollator:
    """Pad samples into a batch and mask them for masked-language modelling (Devlin et al. 2019).

    Each non-special, non-pad token is selected independently with probability ``mlm_probability``
    (default 0.30, the Mosaic BERT rate). Of the selected tokens, 80% become ``[MASK]``, 10% a random
    regular token and 10% stay unchanged; ``labels`` hold the original id at selected positions and
    -100 elsewhere. Batches are padded to the longest sample, rounded up to ``pad_to_multiple_of``.

    Besides the tensors, a batch carries ``seq_lengths`` and ``masked_counts``: Python lists of each
    row's real and labelled token counts. Unpadded models size their buffers from them instead of
    reading the GPU (a host sync); Composer splits lists per microbatch like tensors. Code that keeps
    a subset of rows must subset these lists too.

    Randomness comes from ``generator`` when given, else from torch's global RNG, which the
    DataLoader seeds per worker from the run's seed. With ``mask_seed``, each sample's mask is
    instead a function of ``(mask_seed, sample_id)`` alone: every pass over an evaluation set masks
    it the same way, whatever the model, batch size, worker count or RNG state of the run.
    """

    def __init__(self, tokenizer: Any, mlm_probability: float = 0.30, pad_to_multiple_of: int = 8,
                 generator: Optional[torch.Generator] = None, mask_seed: Optional[int] = None):
        if not 0.0 < mlm_probability < 1.0:
            raise ValueError(f"mlm_probability must be in (0, 1), got {mlm_probability}")
        if mask_seed is not None and mask_seed < 0:
            raise ValueError(f"mask_seed must be a non-negative integer, got {mask_seed}")
        self.mlm_probability = mlm_probability
        self.pad_to_multiple_of = pad_to_multiple_of
        self.generator = generator
        self.mask_seed = mask_seed
        self.pad_id = int(tokenizer.pad_token_id)
        self.mask_id = int(tokenizer.mask_token_id)
        special = set(int(i) for i in tokenizer.all_special_ids)
        vocab = len(tokenizer)
        self.special_ids = torch.tensor(sorted(special), dtype=torch.long)
        self.regular_ids = torch.tensor([i for i in range(vocab) if i not in special], dtype=torch.long)

    def pad(self, sequences: Sequence[Any]) -> torch.Tensor:
        longest = max(len(s) for s in sequences)
        m = self.pad_to_multiple_of
        width = -(-longest // m) * m if m > 1 else longest
        batch = torch.full((len(sequences), width), self.pad_id, dtype=torch.long)
        for row, seq in enumerate(sequences):
            batch[row, : len(seq)] = torch.as_tensor(np.asarray(seq), dtype=torch.long)
        return batch

    def mask(self, input_ids: torch.Tensor, generator: Optional[torch.Generator] = None
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (masked input_ids, labels) for an already padded batch (``generator``: this call's
        RNG, else the collator's)."""
        g = generator or self.generator
        maskable = ~torch.isin(input_ids, self.special_ids)  # pad is special too
        selected = (torch.rand(input_ids.shape, generator=g) < self.mlm_probability) & maskable
        labels = torch.where(selected, input_ids, torch.full_like(input_ids, -100))
        roll = torch.rand(input_ids.shape, generator=g)
        to_mask = selected & (roll < 0.8)
        to_random = selected & (roll >= 0.8) & (roll < 0.9)
        masked = input_ids.clone()
        masked[to_mask] = self.mask_id
        picks = torch.randint(len(self.regular_ids), (int(to_random.sum()),), generator=g)
        masked[to_random] = self.regular_ids[picks]
        return masked, labels

    def mask_per_sample(self, input_ids: torch.Tensor, sample_ids: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Mask each row with its own generator seeded from ``(mask_seed, sample_id)``."""
        rows = [self.mask(input_ids[i : i + 1], torch.Generator().manual_seed(
            int(np.random.SeedSequence([self.mask_seed, int(sid)]).generate_state(1, np.uint64)[0])))
            for i, sid in enumerate(sample_ids)]
        return torch.cat([r[0] for r in rows]), torch.cat([r[1] for r in rows])

    def __call__(self, examples: Sequence[dict[str, Any]]) -> dict[str, Any]:
        input_ids = self.pad([ex["input_ids"] for ex in examples])
        attention_mask = (input_ids != self.pad_id).long()
        if self.mask_seed is None:
            masked, labels = self.mask(input_ids)
        else:
            if "sample_id" not in examples[0]:
                raise ValueError("mask_seed masks each sample by its sample_id, and these samples have none")
            masked, labels = self.mask_per_sample(input_ids, [ex["sample_id"] for ex in examples])
        batch = {
            "input_ids": masked,
            "attention_mask": attention_mask,
            "token_type_ids": torch.zeros_like(input_ids),
            "labels": labels,
            **host_counts(attention_mask, labels),
        }
        if "sample_id" in examples[0]:
            batch["sample_id"] = torch.tensor([int(ex["sample_id"]) for ex in examples], dtype=torch.long)
        return batch
