"""The benchmark scripts run end to end on CPU (a check of the scripts; their figures come from GPUs)."""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest

from conftest import ROOT


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_trainer_path_times_both_paths_of_each_run_and_writes_them(tokenizer_dir, token_mds, tmp_path, capsys):
    trainer_path = load_script("trainer_path")
    out = tmp_path / "speed.json"
    demo = str(ROOT / "yamls" / "demo.yaml")
    assert trainer_path.main([
        "--data", str(token_mds), "--tokenizer", str(tokenizer_dir), "--warmup", "1", "--steps", "2",
        "--repeats", "1", "--json", str(out), "--override", "train_loader.dataset.max_seq_len=64",
        "--override", "train_loader.num_workers=0", "--override", "global_train_batch_size=8",
        "--run", f"demo={demo}", "--run", f"demo-log-every-batch={demo} train_log_interval=1ba",
        "--composer-loop", "demo-log-every-batch", "--profile", "demo", "--profile-steps", "1"]) == 0
    written = json.loads(out.read_text())
    assert [r["name"] for r in written["results"]] == ["demo", "demo-log-every-batch"]
    assert written["args"]["run"][1] == {"name": "demo-log-every-batch", "args": [demo, "train_log_interval=1ba"]}
    assert written["args"]["composer_loop"] == ["demo-log-every-batch"]
    for result in written["results"]:
        for path in ("trainer", "model_only"):
            assert result[path]["tokens_per_s"] > 0 and result[path]["spread"] == 0.0
        assert result["share"] == result["trainer"]["tokens_per_s"] / result["model_only"]["tokens_per_s"]
    printed = capsys.readouterr().out
    assert "| demo-log-every-batch |" in printed and "trainer vs demo" in printed
    assert "demo, trainer profile:\nprofiled 1 steps:" in printed
    assert "safetensors" not in printed  # the profile ends at its last step, before the HF export


def test_sentence_corpus_splits_paragraphs_at_sentence_ends_and_keeps_what_it_wrote(tmp_path):
    sentence_corpus = load_script("sentence_corpus")
    text = "The cat sat down. It was warm! Was it? yes it was.\nA new paragraph here. Too short."
    assert list(sentence_corpus.sentences(text)) == [
        "The cat sat down.", "It was warm!", "Was it? yes it was.", "A new paragraph here."]
    source, out = ROOT / "data" / "sample" / "c4-validation.00000-of-00001.json.gz", tmp_path / "s" / "train.jsonl"
    assert sentence_corpus.main([str(source), str(out)]) == 0
    rows = [json.loads(line)["text"] for line in out.read_text().splitlines()]
    assert len(rows) > 100 and all(len(r.split()) >= 3 for r in rows)
    with pytest.raises(SystemExit):
        sentence_corpus.main([str(source), str(out)])  # never over what it wrote
    assert len(out.read_text().splitlines()) == len(rows)
