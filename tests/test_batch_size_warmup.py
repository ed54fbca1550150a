"""Batch-size warmup: the schedule, and its effect in a plain Composer Trainer around an HF BERT."""

import pytest
import torch

from conftest import StepWatch, mlm_batch, tiny_hf_bert
from efficient_bert.algorithms import BatchSizeWarmup, apply_batch_size_warmup, warmup_rows


def test_linear_curve_grows_the_rows_linearly_in_progress():
    # 512 rows from a quarter over the first 10%: 128 at the start, halfway 320, then all of them
    assert warmup_rows(0.0, 512, 0.25, 0.1, curve="linear") == 128
    assert warmup_rows(0.05, 512, 0.25, 0.1, curve="linear") == 320
    assert warmup_rows(0.0999, 512, 0.25, 0.1, curve="linear") == 504  # 511.6 rounded down to a multiple of 8
    assert warmup_rows(0.1, 512, 0.25, 0.1, curve="linear") == warmup_rows(0.7, 512, 0.25, 0.1, curve="linear") == 512
    assert warmup_rows(0.0, 20, 0.1, 0.5, curve="linear") == 8  # never fewer than one multiple
    assert warmup_rows(0.0, 5, 0.1, 0.5, curve="linear") == 5  # nor more than the batch
    with pytest.raises(ValueError, match="min_fraction"):
        BatchSizeWarmup(min_fraction=0.0)
    with pytest.raises(ValueError, match="curve must be one of modernbert, linear"):
        BatchSizeWarmup(curve="cosine")


def test_modernbert_curve_trains_the_same_number_of_steps_at_every_size():
    """ModernBERT's schedule: sizes 128, 136, ..., 504 of a 512-row batch, each while the progress is below
    10% of its share of the sizes' sum. When a step's budget is proportional to its rows (the reference
    clock; tokens), every size gets the same number of steps, so the batch grows linearly in steps."""
    from efficient_bert.algorithms.batch_size_warmup.batch_size_warmup import warmup_sizes

    sizes = warmup_sizes(512, 0.25, 8)
    assert sizes[0] == 128 and sizes[-1] == 504 and len(sizes) == 48
    assert warmup_rows(0.0, 512, 0.25, 0.1) == 128 and warmup_rows(0.1, 512, 0.25, 0.1) == 512
    progress, trained = 0.0, []
    while progress < 0.1:  # 4000 full steps make a run: a step of r rows uses r / 512 / 4000 of it
        rows = warmup_rows(progress, 512, 0.25, 0.1)
        trained.append(rows)
        progress += rows / 512 / 4000
    steps = [trained.count(s) for s in sizes]
    assert set(trained) == set(sizes) and max(steps) - min(steps) <= 1  # 13 or 14 steps at every size
    assert trained == sorted(trained)


def test_the_first_rows_of_every_entry_are_kept(tokenizer):
    batch = mlm_batch(tokenizer, rows=6)
    kept = apply_batch_size_warmup(batch, 4)
    assert kept["input_ids"].shape[0] == 4 and torch.equal(kept["labels"], batch["labels"][:4])
    assert kept["seq_lengths"] == batch["seq_lengths"][:4] and kept["masked_counts"] == batch["masked_counts"][:4]


@pytest.mark.slow
def test_in_a_plain_trainer_around_hf_bert_the_batch_grows_on_schedule(tokenizer, token_mds):
    from composer import Trainer

    from efficient_bert.data.dataloader import build_mlm_dataloader

    model = tiny_hf_bert(tokenizer)
    loader = build_mlm_dataloader(tokenizer, 32, local=str(token_mds), split="train", max_seq_len=64, num_workers=0)
    seen = StepWatch(model)
    trainer = Trainer(model=model, train_dataloader=loader, max_duration="10ba", device="cpu",
                      algorithms=[BatchSizeWarmup(warmup=0.5, min_fraction=0.25)], callbacks=[seen])
    trainer.fit()
    # progress is the elapsed fraction of 10 batches, read before each step: 0.0, 0.1, ..., 0.4, then full;
    # sizes 8, 16, 24 until 0.5 * 8/48, 0.5 * 24/48, 0.5
    assert seen.rows == [8, 16, 16, 24, 24, 32, 32, 32, 32, 32]
    assert int(trainer.state.timestamp.sample) == 10 * 32  # Composer counts the rows drawn
    with pytest.raises(ValueError, match="max_duration of 320sp"):
        Trainer(model=model, train_dataloader=loader, max_duration="320sp", device="cpu",
                algorithms=[BatchSizeWarmup()]).fit()
    loader.dataloader.dataset.close()
