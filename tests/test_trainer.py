"""efficient_bert.pretrain.trainer.Trainer: the training loss and train metrics are read from the device at log
intervals only, as the mean loss since the last log; in one process it skips Composer's per-step
device reads; training itself is Composer's, bit for bit."""

from __future__ import annotations

import composer
import pytest
import torch
from composer.core import Callback, Event
from composer.loggers import InMemoryLogger

from conftest import mlm_batch, tiny_mosaic
from efficient_bert.callbacks import SpeedMonitor
from efficient_bert.data.dataloader import build_mlm_dataloader
from efficient_bert.pretrain.trainer import Trainer, calls_closure_once


class EventLog(Callback):
    """Every event the engine runs, in order, with the rows of the batch it sees."""

    def __init__(self):
        self.events = []

    def run_event(self, event, state, logger):
        batch = state.batch if isinstance(state.batch, dict) else None
        self.events.append((event.value, None if batch is None else int(batch["input_ids"].shape[0])))


def train(tokenizer, token_mds, interval: int = 1, batches: int = 7, trainer_class=Trainer, microbatch=None):
    spec = build_mlm_dataloader(tokenizer, 8, local=str(token_mds), split="train", max_seq_len=64, num_workers=0)
    memory, log = InMemoryLogger(), EventLog()
    model = tiny_mosaic()
    options = {} if trainer_class is composer.Trainer else {"train_log_interval": interval}
    try:
        trainer_class(model=model, train_dataloader=spec, max_duration=f"{batches}ba", device="cpu", seed=3,
                      loggers=[memory], callbacks=[log], progress_bar=False, device_train_microbatch_size=microbatch,
                      **options).fit()
    finally:
        spec.dataloader.dataset.close()
    values = {key: [(int(ts.batch), float(value)) for ts, value in series] for key, series in memory.data.items()}
    return values, model, log.events


def test_the_loss_is_logged_every_interval_as_its_mean_and_train_metrics_on_those_batches(tokenizer, token_mds):
    every, model_every, _ = train(tokenizer, token_mds, interval=1)
    sparse, model_sparse, _ = train(tokenizer, token_mds, interval=3)
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


def test_one_process_steps_are_composers_with_the_same_events_losses_and_weights(tokenizer, token_mds):
    """Microbatches of 3 rows (3 + 3 + 2 per batch of 8): the batch size the losses are scaled by,
    the events and their order, the logged losses and the trained weights all match Composer's loop."""
    ours, ours_model, ours_events = train(tokenizer, token_mds, microbatch=3)
    ref, ref_model, ref_events = train(tokenizer, token_mds, microbatch=3, trainer_class=composer.Trainer)
    assert ours_events == ref_events
    assert [rows for event, rows in ours_events if event == Event.BEFORE_FORWARD.value] == [3, 3, 2] * 7
    assert ours["loss/train/total"] == ref["loss/train/total"]
    for a, b in zip(ours_model.parameters(), ref_model.parameters()):
        assert torch.equal(a, b)


def test_optimizers_step_after_the_backward_unless_their_step_needs_the_closure():
    weights = [torch.nn.Parameter(torch.zeros(2))]
    assert calls_closure_once(torch.optim.AdamW(weights)) and calls_closure_once(torch.optim.SGD(weights, lr=0.1))
    assert calls_closure_once(composer.optim.DecoupledAdamW(weights))
    assert not calls_closure_once(torch.optim.LBFGS(weights))
    from composer.algorithms.sam import SAMOptimizer
    assert not calls_closure_once(SAMOptimizer(torch.optim.SGD(weights, lr=0.1)))


def test_the_speed_monitor_logs_composers_figures_from_host_numbers(tokenizer):
    """The same batches and clock through Composer's SpeedMonitor and ours: every metric at every batch is
    equal (window 3, an A100's peak for MFU)."""
    import datetime
    from types import SimpleNamespace

    from composer.core import Timestamp
    from composer.devices import DeviceCPU

    class Metrics:
        def __init__(self):
            self.logged = []

        def log_metrics(self, metrics):
            self.logged.append(dict(metrics))

    model, batches = tiny_mosaic(), [mlm_batch(tokenizer, rows=6 - i % 3, seed=i) for i in range(6)]
    logs = []
    for monitor in (composer.callbacks.SpeedMonitor(window_size=3, gpu_flops_available=312e12),
                    SpeedMonitor(window_size=3, gpu_flops_available=312e12)):
        logger, samples, tokens = Metrics(), 0, 0
        for i, batch in enumerate(batches):
            samples, tokens = samples + len(batch["seq_lengths"]), tokens + sum(batch["seq_lengths"])
            clock = Timestamp(batch=i + 1, sample=samples, token=tokens,
                              total_wct=datetime.timedelta(seconds=0.25 * (i + 1) + 0.01 * i * i))
            monitor.batch_end(SimpleNamespace(model=model, batch=batch, timestamp=clock, device=DeviceCPU()), logger)
        logs.append(logger.logged)
    assert logs[0] == logs[1]
    assert {"throughput/device/mfu", "throughput/tokens_per_sec", "time/train"} <= {k for m in logs[1] for k in m}


def syncs(trainer_class, tokenizer, token_mds) -> list[str]:
    """Where the device was synchronised while batches 2-5 of 6 are fetched and trained (after the first step set
    everything up, before the last one computes train metrics), as torch's sync debug mode reports them."""
    import warnings

    from efficient_bert.optim.decoupled_adamw import decoupled_adamw

    class SyncDebug(Callback):
        def batch_end(self, state, logger):
            if int(state.timestamp.batch) == 1:
                torch.cuda.set_sync_debug_mode("warn")

        def batch_start(self, state, logger):
            if int(state.timestamp.batch) == 5:
                torch.cuda.set_sync_debug_mode("default")

    spec = build_mlm_dataloader(tokenizer, 8, local=str(token_mds), split="train", max_seq_len=64, num_workers=0)
    model = tiny_mosaic()
    options = {} if trainer_class is composer.Trainer else {"train_log_interval": 100}
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            trainer_class(model=model, optimizers=decoupled_adamw(model.parameters(), lr=1e-3),
                          train_dataloader=spec, max_duration="6ba", device="gpu", callbacks=[SyncDebug()],
                          progress_bar=False, **options).fit()
    finally:
        torch.cuda.set_sync_debug_mode("default")
        spec.dataloader.dataset.close()
    return [f"{w.filename}:{w.lineno}" for w in caught if "synchroniz" in str(w.message)]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_one_process_training_steps_never_wait_for_the_gpu(tokenizer, token_mds):
    # Composer's loop waits at least three times a step: the "iteration finished" flag, the batch size and
    # the closure's loss
    assert len(syncs(composer.Trainer, tokenizer, token_mds)) >= 3 * 4
    assert syncs(Trainer, tokenizer, token_mds) == []
