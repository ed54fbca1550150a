"""Each algorithm in a plain ``composer.Trainer`` around Composer's ``HuggingFaceModel`` of a tiny HF
``BertForMaskedLM``: no YAML, no model code of this library; every test checks the algorithm's effect.
(Batch-size warmup's test of the same kind is in test_batch_size_warmup.py.)"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from composer import Trainer
from composer.core import Callback

from conftest import StepWatch, tiny_hf_bert
from efficient_bert.algorithms import (IrreducibleLosses, LayerDrop, LayerStacking, RHOLoss, SelectiveBackprop,
                                       SophiaHessian)
from efficient_bert.algorithms.layer_drop import keep_probability, layer_keep_probabilities
from efficient_bert.data.dataloader import build_mlm_dataloader
from efficient_bert.optim import SophiaG

pytestmark = pytest.mark.slow


@pytest.fixture
def loader(tokenizer, token_mds):
    made = []

    def make(rows):
        spec = build_mlm_dataloader(tokenizer, rows, local=str(token_mds), split="train", max_seq_len=64,
                                    num_workers=0)
        made.append(spec)
        return spec

    yield make
    for spec in made:
        spec.dataloader.dataset.close()


def fit(model, train, algorithms, batches=10, optimizer=None):
    watch = StepWatch(model)
    trainer = Trainer(model=model, train_dataloader=train, max_duration=f"{batches}ba", device="cpu", seed=3,
                      algorithms=algorithms, callbacks=[watch], optimizers=optimizer, progress_bar=False)
    trainer.fit()
    return trainer, watch


def test_layer_stacking_runs_one_layer_then_both_from_half_the_run(tokenizer, loader):
    model = tiny_hf_bert(tokenizer, layers=2)
    trainer, watch = fit(model, loader(8), [LayerStacking(stack_at=[0.5])])
    assert watch.layers == [1] * 5 + [2] * 5  # progress before step k is k/10
    upper, lower = model.model.bert.encoder.layer[1], model.model.bert.encoder.layer[0]
    assert not torch.equal(upper.attention.self.query.weight, lower.attention.self.query.weight)  # trained apart


def test_layer_drop_skips_exactly_the_drawn_layers(tokenizer, loader):
    model = tiny_hf_bert(tokenizer, layers=4)
    trainer, watch = fit(model, loader(8), [LayerDrop(theta_bar=0.3, gamma=5.0)])
    expected = []
    for batch in range(10):  # the documented draw: a generator seeded by the run's seed and the batch index
        generator = torch.Generator().manual_seed((3 * 1_000_003 + batch) % 2 ** 63)
        keep = torch.tensor(layer_keep_probabilities(keep_probability(batch / 10, 0.3, 5.0), 4), dtype=torch.float64)
        expected.append(int((torch.rand(4, generator=generator, dtype=torch.float64) < keep).sum()))
    assert watch.layers == expected and min(expected) < 4


def test_selective_backprop_trains_a_fixed_batch_drawn_from_twice_as_many_candidates(tokenizer, loader):
    model = tiny_hf_bert(tokenizer)
    pools = [set(batch["sample_id"].tolist()) for batch, _ in zip(loader(16).dataloader, range(6))]
    trainer, watch = fit(model, loader(16), [SelectiveBackprop(train_batch_size=8)], batches=6)
    assert watch.rows == [8] * 6 and int(trainer.state.timestamp.sample) == 6 * 16  # 16 drawn, 8 trained
    assert all(len(p) == 16 for p in pools)
    # each step's trained rows come from that step's pool (or the carry of selected rows left over)
    carried = set()
    for ids, pool in zip(watch.ids, pools):
        assert len(set(ids)) == 8 and set(ids) <= pool | carried
        carried = (carried | pool) - set(ids)


def test_rho_loss_never_trains_rows_whose_loss_is_irreducible(tokenizer, loader, token_mds):
    model = tiny_hf_bert(tokenizer)
    pool = loader(16)
    n = pool.dataloader.dataset.num_samples
    ids = np.arange(n)
    # an IL loss of 100 on even rows: their reducible loss is about -93, below every odd row's
    il = IrreducibleLosses(ids, np.where(ids % 2 == 0, 100.0, 0.0))
    trainer, watch = fit(model, pool, [RHOLoss(train_batch_size=8, il_losses=il, mega_batch_size=16)], batches=6)
    trained = [i for step in watch.ids for i in step]
    assert watch.rows == [8] * 6 and trained and all(i % 2 == 1 for i in trained)


def test_sophia_hessian_updates_the_estimate_on_its_schedule_only(tokenizer, loader):
    model = tiny_hf_bert(tokenizer)
    optimizer = SophiaG(model.parameters(), lr=1e-3)
    weight = model.model.bert.encoder.layer[0].attention.self.query.weight
    estimates = []

    class Estimates(Callback):
        def batch_end(self, state, logger):
            estimates.append(optimizer.state[weight]["hessian"].clone())

    trainer = Trainer(model=model, train_dataloader=loader(8), max_duration="7ba", device="cpu", seed=3,
                      optimizers=optimizer, algorithms=[SophiaHessian(every=3)], callbacks=[Estimates()],
                      progress_bar=False)
    trainer.fit()
    # updated after steps 1, 4 and 7 (k = 3), at BATCH_END before this callback; unchanged in between
    changed = [not torch.equal(a, b) for a, b in zip([torch.zeros_like(estimates[0])] + estimates, estimates)]
    assert changed == [True, False, False, True, False, False, True]
    with pytest.raises(ValueError, match="SophiaG"):
        Trainer(model=tiny_hf_bert(tokenizer), train_dataloader=loader(8), max_duration="1ba", device="cpu",
                algorithms=[SophiaHessian()], progress_bar=False).fit()


@pytest.mark.parametrize("eval_mode", [True, False])
def test_selective_backprop_scores_in_eval_mode_by_default_and_counts_trained_samples(tokenizer, loader, eval_mode):
    model = tiny_hf_bert(tokenizer)  # BERT's dropout 0.1: train-mode scores would be noisy
    scoring_modes = []
    model.model.register_forward_pre_hook(
        lambda module, args: None if torch.is_grad_enabled() else scoring_modes.append(module.training))
    fit(model, loader(16), [SelectiveBackprop(train_batch_size=8, score_in_eval_mode=eval_mode)], batches=3)
    assert scoring_modes == [not eval_mode] * 3 and model.training  # the model trains in train mode again
    if eval_mode:  # 96 samples at 8 trained rows a step: 12 steps, of pools of 16 rows
        trainer = Trainer(model=model, train_dataloader=loader(16), max_duration="96sp", device="cpu",
                          algorithms=[SelectiveBackprop(train_batch_size=8)], progress_bar=False)
        trainer.fit()
        assert int(trainer.state.timestamp.batch) == 12 and int(trainer.state.timestamp.sample) == 12 * 16
        with pytest.raises(ValueError, match="skips rows that Composer counts as tokens, so a max_duration of "
                                             "6144tok would train less than it says: give max_duration in batches"):
            Trainer(model=model, train_dataloader=loader(16), max_duration="6144tok", device="cpu",
                    algorithms=[SelectiveBackprop(train_batch_size=8)], progress_bar=False).fit()


def test_rho_loss_mega_batch_defaults_to_twice_the_trained_batch(tmp_path):
    from efficient_bert.pretrain.components import ALGORITHMS

    path = IrreducibleLosses(np.arange(10), np.zeros(10)).save(tmp_path / "il.npz")
    # the README's command: the Mosaic recipe with rho-loss.yaml and global_train_batch_size=512
    built = ALGORITHMS.build("rho_loss", {"il_losses": str(path)}, train_batch_size=512)
    assert (built.pool_size, built.train_batch_size) == (1024, 512)
    assert RHOLoss(1536, str(path)).pool_size == 3072  # NoTrainNoGain's sizes
    assert RHOLoss(8, str(path), mega_batch_size=24).pool_size == 24
