"""main.py end to end on a tiny model: real shards, real tokenizer, ~30 steps on the CPU."""

import json
import os
import subprocess
import sys

import pytest
import torch

from conftest import ROOT
from efficient_bert.tools.cli import COMMANDS

TINY = ROOT / "yamls" / "tiny-cpu.yaml"


def run_main(*args, env=None, timeout=600):
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, **(env or {})}, timeout=timeout)


@pytest.mark.slow
def test_pretraining_lowers_eval_loss_and_writes_checkpoint_and_hf_export(tmp_path, tokenizer_dir, token_mds):
    out = tmp_path / "run"
    done = run_main(TINY, f"tokenizer.path={tokenizer_dir}", f"variables.data_local={token_mds}", f"save_folder={out}",
                    "loggers.wandb.mode=offline", f"loggers.wandb.dir={tmp_path}", "callbacks.hf_export={}",
                    env={"WANDB_MODE": "offline"})
    assert done.returncode == 0, done.stderr[-3000:]
    history = json.loads((out / "eval_history.json").read_text())
    losses = [r["eval/LanguageCrossEntropy"] for r in history]
    assert [r["batch"] for r in history] == [0, 15, 30]  # eval_at_start, then every 15 batches
    assert losses[0] > 7.0  # untrained: about ln(2000) = 7.6
    assert losses[-1] < losses[0] - 1.0
    assert "eval/LanguageCrossEntropy: first" in done.stdout
    assert (out / "ep1-ba30-rank0.pt").exists() or any(out.glob("*ba30-rank0.pt"))
    assert list((tmp_path / "wandb").glob("offline-run-*")), "wandb offline run directory missing"

    from transformers import AutoTokenizer, BertForMaskedLM

    model = BertForMaskedLM.from_pretrained(out / "hf")
    tok = AutoTokenizer.from_pretrained(out / "hf")
    assert model.config.hidden_size == 64 and len(tok) == model.config.vocab_size == 2000
    card = (out / "hf" / "README.md").read_text()
    train = json.loads((token_mds / "train" / "conversion.json").read_text())
    for fact in ("Trained 30 steps, ", f"{train['tokens']:,} tokens", f"at step 30: **{losses[-1]:.4f}**",
                 f"unigram floor {history[-1]['eval/UnigramEntropy']:.4f}", f"main.py {TINY}"):
        assert fact in card, fact

    # the export command: the same folder from the checkpoint, the card's facts from the run's files
    from efficient_bert.tools.export import main as export

    checkpoint = next(out.glob("*ba30-rank0.pt"))
    assert export([str(checkpoint), "--out", str(tmp_path / "exported")]) == 0
    again = BertForMaskedLM.from_pretrained(tmp_path / "exported")
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), model.state_dict().values()))
    assert (tmp_path / "exported" / "README.md").read_text() == card
    assert export([str(checkpoint), "--out", str(tmp_path / "exported")]) == 2  # never over an export
    other = ROOT / "results" / "compare" / "tokenizer"  # another vocabulary than the run's
    assert export([str(checkpoint), "--out", str(tmp_path / "other"), "--tokenizer", str(other)]) == 2
    assert not (tmp_path / "other").exists()


def test_config_errors_exit_2_with_the_fix(tmp_path, tokenizer_dir, capsys):
    from efficient_bert.pretrain.main import main

    done = run_main(TINY, f"tokenizer.path={tokenizer_dir}", "optimizer.lrr=1")  # the real command, once
    assert done.returncode == 2
    assert "has no option 'lrr' (did you mean 'lr'?)" in done.stderr
    assert main([str(TINY), "tokenizer.path=/does/not/exist"]) == 2  # the same entry point, in this process
    assert "error: tokenizer.path: tokenizer directory not found: /does/not/exist" in capsys.readouterr().err


def test_a_non_finite_loss_stops_the_run_before_its_checkpoint(tmp_path, tokenizer_dir, token_mds, capsys):
    import torch

    from efficient_bert.pretrain.main import main

    out = tmp_path / "run"
    # no warmup at LR 1e30: step 1 leaves weights near 1e30, and step 2's loss is NaN
    assert main([str(TINY), f"tokenizer.path={tokenizer_dir}", f"variables.data_local={token_mds}", f"save_folder={out}",
                 "eval_at_start=false", "optimizer.lr=1e30",
                 "max_duration=4ba", "save_interval=1ba"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith(
        "error: training loss is nan at batch 2. Usual causes: learning rate too high")
    assert sorted(p.name for p in out.glob("ep*.pt")) == ["ep0-ba1-rank0.pt"]  # step 2's weights are never saved
    weights = torch.load(out / "ep0-ba1-rank0.pt", weights_only=False)["state"]["model"]
    assert all(torch.isfinite(w).all() for w in weights.values() if isinstance(w, torch.Tensor))


@pytest.mark.slow
def test_mosaic_bert_pretrains_and_its_checkpoint_loads_for_fine_tuning(tmp_path, tokenizer_dir, token_mds):
    import torch
    from transformers import AutoModelForMaskedLM

    from efficient_bert.model.checkpoint import load_pretrained
    from efficient_bert.model.mosaic_bert import MosaicBertForMaskedLM, MosaicBertForSequenceClassification

    out = tmp_path / "run"
    done = run_main(TINY, "model.name=mosaic_bert", f"tokenizer.path={tokenizer_dir}", f"variables.data_local={token_mds}",
                    f"save_folder={out}", "log_to_console=true", "console_log_interval=10ba", "callbacks.hf_export={}")
    assert done.returncode == 0, done.stderr[-3000:]
    # the console: one line per interval and per evaluation, not Composer's multi-line dump
    lines = done.stdout.splitlines()
    assert [line.split("]")[0] for line in lines if line.startswith("[batch")] == ["[batch 10/30", "[batch 20/30",
                                                                                    "[batch 30/30"]
    assert sum(line.startswith("[eval @ batch") for line in lines) == 3 and "unigram floor" in lines[0]
    assert not any("Train metrics/" in line or "Eval metrics/" in line for line in lines)
    losses = [r["eval/LanguageCrossEntropy"] for r in json.loads((out / "eval_history.json").read_text())]
    assert losses[-1] < losses[0] - 1.0

    exported = AutoModelForMaskedLM.from_pretrained(out / "hf").eval()
    assert isinstance(exported, MosaicBertForMaskedLM) and exported.config.vocab_size == 2048  # 2000 -> 64k
    checkpoint = next(out.glob("*ba30-rank0.pt"))
    from_checkpoint = load_pretrained(checkpoint, "masked_lm").eval()
    ids = torch.randint(5, 2000, (2, 40))
    mask = torch.ones_like(ids)
    mask[1, 25:] = 0
    assert torch.equal(exported(ids, mask).logits, from_checkpoint(ids, mask).logits)

    classifier = load_pretrained(checkpoint, "sequence_classification", num_labels=3).eval()
    assert isinstance(classifier, MosaicBertForSequenceClassification)
    for name, weight in classifier.bert.state_dict().items():
        assert torch.equal(weight, exported.bert.state_dict()[name]), name
    out_cls = classifier(ids, mask, labels=torch.tensor([0, 2]))
    assert out_cls.logits.shape == (2, 3) and torch.isfinite(out_cls.loss)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_answers_without_importing_torch(command):
    probe = ("import sys\nfrom efficient_bert.tools.cli import main\ntry:\n    main([sys.argv[1], '--help'])\n"
             "except SystemExit:\n    pass\nprint('torch loaded' if 'torch' in sys.modules else 'light')")
    done = subprocess.run([sys.executable, "-c", probe, command], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "light" and "usage: " in done.stdout
