"""Selective backprop and RHO-loss: per-sequence losses, selection rules, IL files, the trainer."""

import numpy as np
import pytest
import torch
from composer.core import Callback, Event

from conftest import ROOT, SAMPLE, TINY_MODELS, mlm_batch, tiny_mosaic, tiny_run
from efficient_bert.algorithms import IrreducibleLosses, apply_rho_loss, apply_selective_backprop, selection_probabilities
from efficient_bert.algorithms.batch_selection import concat_rows, select_rows, sequence_losses_from_logits
from efficient_bert.algorithms.selective_backprop import draw_selected, loss_percentiles


def test_sequence_losses_from_sparse_and_dense_logits_agree(tokenizer):
    model = tiny_mosaic(layers=2, vocab_size=len(tokenizer)).eval()
    batch = mlm_batch(tokenizer)
    with torch.no_grad():
        sparse = model(batch).logits  # (n_masked, vocab)
        dense = model({k: v for k, v in batch.items() if k != "labels"}).logits  # (rows, seq, vocab)
    assert sparse.dim() == 2 and dense.dim() == 3
    ours = sequence_losses_from_logits(sparse, batch["labels"])
    torch.testing.assert_close(ours, sequence_losses_from_logits(dense, batch["labels"]), rtol=1e-4, atol=1e-4)
    row = 3  # by hand for one row: mean cross-entropy over its labelled tokens
    labelled = batch["labels"][row] != -100
    expected = torch.nn.functional.cross_entropy(dense[row][labelled], batch["labels"][row][labelled])
    torch.testing.assert_close(ours[row], expected, rtol=1e-4, atol=1e-4)


def test_row_subsets_keep_tensors_and_host_counts_together(tokenizer):
    batch = mlm_batch(tokenizer)
    part = select_rows(batch, [4, 1])
    assert part["sample_id"].tolist() == [104, 101]
    assert part["seq_lengths"] == part["attention_mask"].sum(1).tolist() == [batch["seq_lengths"][4], batch["seq_lengths"][1]]
    assert part["masked_counts"] == (part["labels"] != -100).sum(1).tolist()
    narrow = select_rows(mlm_batch(tokenizer, rows=2, seq=16), [0, 1])
    both = concat_rows([part, narrow])
    assert both["input_ids"].shape == (4, batch["input_ids"].shape[1])
    assert both["labels"][2:, 16:].eq(-100).all() and both["attention_mask"][2:, 16:].eq(0).all()
    assert both["seq_lengths"] == both["attention_mask"].sum(1).tolist()


def test_consecutive_rows_are_views_and_other_subsets_copies_in_their_order(tokenizer):
    batch = mlm_batch(tokenizer)
    span = select_rows(batch, range(2, 5))
    assert span["input_ids"].data_ptr() == batch["input_ids"][2].data_ptr()
    assert span["sample_id"].tolist() == [102, 103, 104] and span["seq_lengths"] == batch["seq_lengths"][2:5]
    assert select_rows(batch, [])["input_ids"].shape == (0, batch["input_ids"].shape[1])
    assert select_rows(batch, [3, 2, 5])["sample_id"].tolist() == [103, 102, 105]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_the_gpu_selecting_rows_never_waits_for_it(tokenizer):
    batch = {k: v.cuda() if torch.is_tensor(v) else v for k, v in mlm_batch(tokenizer).items()}
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        prefix, shuffled = select_rows(batch, range(4)), select_rows(batch, [5, 0, 3])
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert prefix["sample_id"].tolist() == [100, 101, 102, 103] and shuffled["sample_id"].tolist() == [105, 100, 103]


def test_selection_probabilities_and_draw_statistics_on_planted_losses():
    history = torch.arange(100, dtype=torch.float)
    losses = torch.tensor([10.0, 50.0, 90.0, 200.0, -1.0])
    assert loss_percentiles(losses, history).tolist() == pytest.approx([0.105, 0.505, 0.905, 1.0, 0.0])
    probabilities = selection_probabilities(losses, history, beta=2.0)
    assert probabilities.tolist() == pytest.approx([0.105 ** 2, 0.505 ** 2, 0.905 ** 2, 1.0, 0.0])
    generator = torch.Generator().manual_seed(0)
    n = 20000
    counts = torch.zeros(5)
    for _ in range(n):
        counts[draw_selected(probabilities, generator)] += 1
    sigma = (probabilities * (1 - probabilities) / n).sqrt()
    assert ((counts / n - probabilities).abs() <= 4 * sigma + 1e-12).all(), counts / n


def test_selective_backprop_trains_a_fixed_batch_from_selected_rows(tokenizer):
    pool = mlm_batch(tokenizer, rows=6)
    never, always = torch.zeros(6, dtype=torch.float64), torch.ones(6, dtype=torch.float64)
    planted = torch.tensor([0.0, 1.0, 0.0, 1.0, 1.0, 0.0], dtype=torch.float64)
    trained, carry, filled = apply_selective_backprop(pool, planted, train_rows=2)
    assert trained["sample_id"].tolist() == [101, 103] and carry["sample_id"].tolist() == [104] and filled == 0
    # the carried row goes first; a short queue is filled with the most probable unselected rows
    # (probabilities this small are never drawn with this generator; the fill order follows them)
    planted_next = torch.tensor([0.0, 3e-12, 0.0, 0.0, 0.0, 1e-12], dtype=torch.float64)
    trained, carry, filled = apply_selective_backprop(pool, planted_next, 3, carry=carry,
                                                      generator=torch.Generator().manual_seed(0))
    assert trained["sample_id"].tolist() == [104, 101, 105] and filled == 2
    assert carry is None
    trained, carry, _ = apply_selective_backprop(pool, always, 2, max_carry=3)
    assert len(trained["seq_lengths"]) == 2 and carry["sample_id"].tolist() == [102, 103, 104]
    trained, _, filled = apply_selective_backprop(pool, never, 4)
    assert filled == 4 and trained["input_ids"].shape[0] == 4


def test_rho_loss_trains_the_top_reducible_losses(tokenizer):
    pool = mlm_batch(tokenizer, rows=6)
    train = torch.tensor([5.0, 6.0, 2.0, 9.0, 4.0, 7.0])
    irreducible = torch.tensor([1.0, 5.5, 0.5, 2.0, 3.9, 1.0])  # reducible: 4, .5, 1.5, 7, .1, 6
    selected, reducible = apply_rho_loss(pool, train, irreducible, train_rows=3)
    assert selected["sample_id"].tolist() == [103, 105, 100]
    assert selected["masked_counts"] == [pool["masked_counts"][i] for i in (3, 5, 0)]
    assert reducible.tolist() == pytest.approx([4.0, 0.5, 1.5, 7.0, 0.1, 6.0])


def test_irreducible_loss_file_round_trip_and_missing_ids(tmp_path):
    losses = IrreducibleLosses([7, 2, 5], [0.5, 1.5, 2.5], {"data": "mds", "split": "train"})
    path = losses.save(tmp_path / "il.npz")
    loaded = IrreducibleLosses.load(path)
    assert len(loaded) == 3 and loaded.meta["split"] == "train"
    assert loaded.lookup(torch.tensor([5, 7, 2])).tolist() == [2.5, 0.5, 1.5]
    with pytest.raises(LookupError, match=r"sample id\(s\) 3, 9 have no irreducible loss in .*il.npz"):
        loaded.lookup(torch.tensor([2, 3, 9]))
    with pytest.raises(FileExistsError):
        losses.save(path)
    with pytest.raises(FileNotFoundError, match="efficient-bert extract-il"):
        IrreducibleLosses.load(tmp_path / "absent.npz")
    (tmp_path / "bad.npz").write_bytes(b"not numpy")
    with pytest.raises(ValueError, match="not an irreducible-loss file"):
        IrreducibleLosses.load(tmp_path / "bad.npz")


def test_irreducible_losses_per_epoch_of_masks(tmp_path):
    """Epoch e's losses under epoch e's masks; after the epochs the file covers, their mean."""
    epochs = [IrreducibleLosses([4, 1], [1.0, 2.0]), IrreducibleLosses([1, 4], [5.0, 3.0])]
    losses = IrreducibleLosses.of_epochs(epochs, {"mask_seed": 17, "mlm_probability": 0.3})
    loaded = IrreducibleLosses.load(losses.save(tmp_path / "il.npz"))
    ids = torch.tensor([1, 4])
    assert loaded.epochs == 2 and len(loaded) == 2
    assert loaded.lookup(ids, 0).tolist() == [2.0, 1.0] and loaded.lookup(ids, 1).tolist() == [5.0, 3.0]
    assert loaded.lookup(ids, 7).tolist() == [3.5, 2.0]
    loaded.check_masks(17, 0.3)
    with pytest.raises(ValueError, match=r"under the masks of seed 17 at 0.3 and this run masks with seed 18 at 0.3: "
                                         r"extract them with `efficient-bert extract-il --seed 18"):
        loaded.check_masks(18, 0.3)


class TrainedRows(Callback):
    """What each training step actually trains: its rows and sample ids."""

    def __init__(self):
        self.sizes, self.ids, self.consistent = [], [], True

    def run_event(self, event, state, logger):
        if event == Event.BATCH_START:
            batch = state.batch
            self.sizes.append(int(batch["input_ids"].shape[0]))
            self.ids.append(batch["sample_id"].tolist())
            self.consistent &= batch["seq_lengths"] == batch["attention_mask"].sum(1).tolist()


def build(tmp_path, tokenizer_dir, data, *overrides, methods=()):
    run = tiny_run(tokenizer_dir, data, f"save_folder={tmp_path / 'ckpt'}", "max_duration=6ba", "eval_interval=1000ba",
                   "save_interval=1000ba", "global_train_batch_size=8", *overrides, methods=methods)
    rows = TrainedRows()
    run.trainer.state.callbacks.append(rows)
    return run, rows


@pytest.mark.slow
def test_selective_backprop_in_the_trainer_batch_size_budget_and_workers(tmp_path, tokenizer_dir, token_mds):
    from efficient_bert.budget import TrainingBudget
    from efficient_bert.callbacks.trained_counts import TrainedCounts

    runs = []
    # the first run gives its duration in samples, as mosaic-bert-base.yaml does: 48 trained rows are 6 steps
    for count, workers, duration in ((False, 2, "48sp"), (True, 2, "6ba")):
        run, rows = build(tmp_path / str(count), tokenizer_dir, token_mds, "budget.hours=1",
                          f"budget.count_extra_forwards={str(count).lower()}", f"train_loader.num_workers={workers}",
                          f"max_duration={duration}", methods=["selective-backprop.yaml"])
        assert run.trainer.state.train_dataloader.batch_size == 16  # pool: (beta + 1) x 8 candidates
        run.fit()
        budget = next(c for c in run.trainer.state.callbacks if isinstance(c, TrainingBudget))
        assert rows.sizes == [8] * 6 and rows.consistent
        # Composer counts the pools drawn; the trained counts are the selected rows
        counts = next(c for c in run.trainer.state.callbacks if isinstance(c, TrainedCounts))
        assert int(run.trainer.state.timestamp.sample) == 6 * 16 and (counts.samples, counts.tokens) == (6 * 8, 6 * 8 * 64)
        # the scoring forwards are taken off the budget only when they do not count
        assert (budget.excluded_seconds > 0) == (not count) and budget.excluded_seconds < budget.wall_seconds
        runs.append(rows.ids)
        workers = run.trainer.state.train_dataloader._iterator._workers
        run.close()
        assert [w.exitcode for w in workers] == [0, 0]  # stopped when told, not killed at exit
    assert runs[0] == runs[1]  # the same rows selected in two runs with 2 dataloader workers
    assert all(len(set(ids)) == 8 for ids in runs[0])


@pytest.mark.slow
def test_rho_loss_end_to_end_holdout_il_model_extraction_and_selection(tmp_path, tokenizer_dir, capsys):
    from efficient_bert.data.convert import convert
    from efficient_bert.algorithms.rho_loss.extract_il import main as extract_il
    from efficient_bert.pretrain.main import main as train

    mds = tmp_path / "mds"
    reports = convert(["train", "validation"], str(mds), in_root=str(SAMPLE), tokenizer=str(tokenizer_dir),
                      concat_tokens=64, holdout_fraction=0.2)
    assert [r.split for r in reports] == ["train", "holdout", "validation"]
    train_docs, holdout_docs = reports[0].documents, reports[1].documents
    assert 0.1 < holdout_docs / (train_docs + holdout_docs) < 0.3

    # step 1: the IL model trains on the holdout split with the normal trainer
    il_run = tmp_path / "il"
    assert train([str(ROOT / "yamls" / "tiny-cpu.yaml"), str(ROOT / "yamls" / "methods" / "rho-il-model.yaml"),
                  f"tokenizer.path={tokenizer_dir}", f"variables.data_local={mds}", f"save_folder={il_run}",
                  "eval_at_start=false", "max_duration=4ba",
                  "save_interval=4ba"]) == 0
    # step 2: its loss on every training sample, by sample id
    out = tmp_path / "il.npz"
    assert extract_il(["--model", str(next(il_run.glob("*ba4-rank0.pt"))), "--tokenizer", str(tokenizer_dir),
                       "--data_local", str(mds), "--split", "train", "--out", str(out), "--max_seq_len", "64",
                       "--batch_size", "64", "--seed", "17", "--epochs", "2"]) == 0
    il = IrreducibleLosses.load(out)
    assert len(il) == reports[0].rows and il.meta["split"] == "train" and il.meta["mask_seed"] == 17
    # a sample's loss depends on neither the batch it lands in nor the process that loads it
    serial = tmp_path / "il-serial.npz"
    assert extract_il(["--model", str(next(il_run.glob("*ba4-rank0.pt"))), "--tokenizer", str(tokenizer_dir),
                       "--data_local", str(mds), "--split", "train", "--out", str(serial), "--max_seq_len", "64",
                       "--batch_size", "24", "--num_workers", "0", "--seed", "17", "--epochs", "2"]) == 0
    assert np.allclose(IrreducibleLosses.load(serial).table, il.table, rtol=0, atol=1e-5)
    # two epochs of the run's masks: every sample's loss differs between them (another mask)
    ids = torch.arange(len(il))
    assert il.epochs == 2 and bool((il.lookup(ids, 0) != il.lookup(ids, 1)).all())

    # step 3: train on the top reducible losses of each mega-batch
    run, rows = build(tmp_path / "rho", tokenizer_dir, mds, f"variables.il_losses={out}",
                      "algorithms.rho_loss.mega_batch_size=32", methods=["rho-loss.yaml"])
    run.fit()
    assert rows.sizes == [8] * 6 and rows.consistent
    run.close()

    # an IL file that misses training samples is refused before training starts
    partial = tmp_path / "partial.npz"
    IrreducibleLosses(list(range(10)), [1.0] * 10, {"data": "x", "split": "train"}).save(partial)
    run, _ = build(tmp_path / "bad", tokenizer_dir, mds, f"variables.il_losses={partial}",
                   "algorithms.rho_loss.mega_batch_size=32", methods=["rho-loss.yaml"])
    with pytest.raises(LookupError, match=f"training samples .* have no irreducible loss in {partial}"):
        run.fit()
    run.close()
    # and so is one extracted under another run's masks
    run, _ = build(tmp_path / "seed", tokenizer_dir, mds, f"variables.il_losses={out}", "seed=18",
                   "algorithms.rho_loss.mega_batch_size=32", methods=["rho-loss.yaml"])
    with pytest.raises(ValueError, match="masks with seed 18 at 0.3: extract them with"):
        run.fit()
    run.close()


@pytest.mark.slow
@pytest.mark.parametrize("model", list(TINY_MODELS))
def test_selective_backprop_composes_with_stacking_layer_drop_and_another_optimizer(tmp_path, tokenizer_dir, token_mds,
                                                                                    model):
    from efficient_bert.model.layer_plan import find_layer_plan

    run, rows = build(tmp_path, tokenizer_dir, token_mds, "model.num_hidden_layers=4", *TINY_MODELS[model],
                      "algorithms.layer_stacking.stack_at=[0.5]", "optimizer={name: adamw, lr: 1.0e-3}",
                      methods=["layer-stacking.yaml", "layer-drop.yaml", "selective-backprop.yaml"])
    run.fit()
    assert rows.sizes == [8] * 6 and rows.consistent
    assert find_layer_plan(run.trainer.state.model).depth == 4  # stacked at half of max_duration
    run.close()
