import numpy as np
import torch

from efficient_bert.data.mlm_collator import MLMCollator


def test_masking_statistics_and_labels(tokenizer):
    collator = MLMCollator(tokenizer, mlm_probability=0.30, seed=0)
    rng = np.random.default_rng(0)
    regular = collator.regular_ids.numpy()
    # 256 samples of varying length, each [CLS] ... [SEP], padded by the collator.
    examples = [{"input_ids": np.concatenate([[2], rng.choice(regular, n), [3]]), "sample_id": i}
                for i, n in enumerate(rng.integers(20, 126, 256))]
    batch = collator(examples)
    original = collator.pad([e["input_ids"] for e in examples])
    assert batch["input_ids"].shape[1] % 8 == 0 and batch["input_ids"].shape[1] == 128
    assert batch["sample_id"].tolist() == list(range(256))
    assert torch.equal(batch["attention_mask"], (original != tokenizer.pad_token_id).long())
    # host-side counts for unpadded models, one per row
    assert batch["seq_lengths"] == [len(e["input_ids"]) for e in examples]
    assert batch["masked_counts"] == (batch["labels"] != -100).sum(dim=1).tolist()

    selected = batch["labels"] != -100
    special = torch.isin(original, collator.special_ids)
    assert not (selected & special).any()  # CLS, SEP and padding are never masked
    assert torch.equal(batch["labels"][selected], original[selected])
    assert torch.equal(batch["input_ids"][~selected], original[~selected])

    n = int(selected.sum())
    rate = n / int((~special).sum())
    assert abs(rate - 0.30) < 0.01  # ~20k candidates: 4 sigma is 0.013
    to_mask = (batch["input_ids"] == tokenizer.mask_token_id) & selected
    unchanged = (batch["input_ids"] == original) & selected
    randomized = selected & ~to_mask & ~unchanged
    assert abs(int(to_mask.sum()) / n - 0.8) < 0.02
    assert abs((int(unchanged.sum()) + int(randomized.sum())) / n - 0.2) < 0.02
    assert not torch.isin(batch["input_ids"][randomized], collator.special_ids).any()


def test_masks_change_with_the_epoch_and_depend_on_nothing_else(tokenizer):
    rng = np.random.default_rng(2)
    examples = [{"input_ids": rng.integers(10, 1000, 64), "sample_id": 100 + i, "epoch": 3} for i in range(6)]
    collator = MLMCollator(tokenizer, seed=7)
    whole = collator(examples)
    torch.manual_seed(123)  # the global RNG plays no part
    halves = [collator(examples[3:]), collator(examples[:3])]  # other batches, other order
    for key in ("labels", "input_ids"):
        assert torch.equal(torch.cat([halves[1][key], halves[0][key]]), whole[key])
    assert (whole["labels"] != -100).any()
    next_epoch = collator([{**ex, "epoch": 4} for ex in examples])
    assert not torch.equal(next_epoch["labels"], whole["labels"])  # dynamic masking: a fresh mask each epoch
    assert not torch.equal(MLMCollator(tokenizer, seed=8)(examples)["labels"], whole["labels"])
    fixed = MLMCollator(tokenizer, seed=7, vary_by_epoch=False)  # evaluation: one mask per sample for good
    assert torch.equal(fixed(examples)["labels"], fixed([{**ex, "epoch": 4} for ex in examples])["labels"])
