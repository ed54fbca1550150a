"""The benchmark scripts run end to end on CPU (a check of the scripts; their figures come from GPUs)."""

from __future__ import annotations

import importlib.util
import json
import sys

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
        "--run", f"demo={demo}", "--run", f"demo-log-every-batch={demo} train_log_interval=1ba"]) == 0
    written = json.loads(out.read_text())
    assert [r["name"] for r in written["results"]] == ["demo", "demo-log-every-batch"]
    assert written["args"]["run"][1] == {"name": "demo-log-every-batch", "args": [demo, "train_log_interval=1ba"]}
    for result in written["results"]:
        for path in ("trainer", "model_only"):
            assert result[path]["tokens_per_s"] > 0 and result[path]["spread"] == 0.0
        assert result["share"] == result["trainer"]["tokens_per_s"] / result["model_only"]["tokens_per_s"]
    table = capsys.readouterr().out
    assert "| demo-log-every-batch |" in table and "trainer vs demo" in table
