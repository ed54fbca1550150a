"""Learning, not motion: the budget recipe must beat the unigram floor, not only lower its loss.

A model that learns only token frequencies lowers its loss too, down to the entropy of the eval set's
unigram distribution; only a loss clearly below that floor shows the model uses context.
"""

import json

import numpy as np
import pytest

from conftest import ROOT
from test_train_e2e import run_main

BUDGET_RECIPE = ROOT / "yamls" / "pretrain" / "mosaic-bert-budget.yaml"


def unigram_entropy_of_rows(tokenizer, mds, split: str) -> float:
    """Entropy (nats) of the non-special tokens of every row of a split, counted here with numpy."""
    from efficient_bert.data.text_dataset import StreamingTextDataset

    special = np.array(sorted(set(tokenizer.all_special_ids)))
    with StreamingTextDataset(tokenizer, 64, local=str(mds), split=split) as dataset:
        ids = np.concatenate([dataset[i]["input_ids"] for i in range(dataset.num_samples)])
    counts = np.bincount(ids[~np.isin(ids, special)])
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


@pytest.mark.slow
def test_budget_recipe_learns_beyond_token_frequencies(tmp_path, tokenizer, tokenizer_dir, token_mds):
    # the short-budget recipe, shrunk to a 64-wide, 2-layer model that trains 300 steps in ~35 s on 2 cores
    out = tmp_path / "run"
    done = run_main(
        BUDGET_RECIPE, f"variables.tokenizer={tokenizer_dir}", f"variables.data_local={token_mds}",
        "variables.max_seq_len=64", f"save_folder={out}", "model.size=tiny", "model.hidden_size=64",
        "model.intermediate_size=256", "model.compile=false", "precision=fp32", "optimizer.lr=5e-3",
        "global_train_batch_size=32", "device_train_microbatch_size=32", "device_eval_batch_size=128",
        "train_loader.num_workers=0", "eval_loader.num_workers=0", "budget.hours=null", "budget.eval_every=null",
        "max_duration=300ba", "eval_interval=300ba", "save_interval=1000ba", "callbacks.hf_export=null")
    assert done.returncode == 0, done.stderr[-3000:]
    final = json.loads((out / "eval_history.json").read_text())[-1]
    floor = unigram_entropy_of_rows(tokenizer, token_mds, "validation")
    # the metric counts the same tokens: every row of the eval set, once
    assert final["eval/UnigramEntropy"] == pytest.approx(floor, rel=1e-9)
    assert final["eval/LanguageCrossEntropy"] < floor - 0.3, (final, floor)
    assert f"unigram floor {floor:.4f}" in done.stdout
