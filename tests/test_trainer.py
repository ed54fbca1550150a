"""efficient_bert.trainer.Trainer: the training loss and train metrics are read from the device at log
intervals only, as the mean loss since the last log; training itself is Composer's, bit for bit."""

from __future__ import annotations

import pytest
import torch
from composer.loggers import InMemoryLogger

from conftest import tiny_mosaic
from efficient_bert.data.dataloader import build_mlm_dataloader
from efficient_bert.trainer import Trainer


def train(tokenizer, token_mds, interval: int, batches: int = 7):
    spec = build_mlm_dataloader(tokenizer, 8, local=str(token_mds), split="train", max_seq_len=64, num_workers=0)
    memory = InMemoryLogger()
    model = tiny_mosaic()
    try:
        Trainer(model=model, train_dataloader=spec, max_duration=f"{batches}ba", device="cpu", seed=3,
                loggers=[memory], progress_bar=False, train_log_interval=interval).fit()
    finally:
        spec.dataloader.dataset.close()
    values = {key: [(int(ts.batch), float(value)) for ts, value in series] for key, series in memory.data.items()}
    return values, model


def test_the_loss_is_logged_every_interval_as_its_mean_and_train_metrics_on_those_batches(tokenizer, token_mds):
    every, model_every = train(tokenizer, token_mds, interval=1)
    sparse, model_sparse = train(tokenizer, token_mds, interval=3)
    losses = [value for _, value in every["loss/train/total"]]
    assert len(losses) == 7
    # batches 3 and 6 and the last one (7), numbered from 0 as Composer logs them
    assert [batch for batch, _ in sparse["loss/train/total"]] == [2, 5, 6]
    assert [value for _, value in sparse["loss/train/total"]] == pytest.approx(
        [sum(losses[0:3]) / 3, sum(losses[3:6]) / 3, losses[6]], rel=1e-6)
    for metric in ("metrics/train/LanguageCrossEntropy", "metrics/train/MaskedAccuracy"):
        assert sparse[metric] == [every[metric][i] for i in (2, 5, 6)]
    for a, b in zip(model_every.parameters(), model_sparse.parameters()):
        assert torch.equal(a, b)


def test_the_interval_is_a_positive_number_of_batches():
    with pytest.raises(ValueError, match="train_log_interval is a number of batches >= 1, got 0"):
        Trainer(train_log_interval=0)
