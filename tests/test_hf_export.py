"""HF exports that load where efficient_bert is not installed: the portable Mosaic BERT code with
``trust_remote_code``, in a subprocess that cannot import efficient_bert, Composer or streaming."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import perturbed, sample_documents

ROOT = Path(__file__).resolve().parents[1]
LOADER = ROOT / "tests" / "helpers" / "load_export.py"
# float32 on CPU: the portable model (padded SDPA) and ours (unpadded) differ only in summation order
ATOL = 1e-5


def sentences() -> list[str]:
    """Real text of different lengths, and the first sentence again."""
    docs = [d.split(". ")[0] for d in sample_documents("validation")[:3]]
    return [docs[0], docs[1] + ". " + docs[2], docs[0]]


def load_plainly(tmp_path: Path, folder: Path, classifier: Path, *flags: str) -> dict:
    """What load_export.py computes in a fresh interpreter with efficient_bert blocked."""
    (tmp_path / "sentences.json").write_text(json.dumps(sentences()))
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-I", str(LOADER), str(folder), str(classifier),
                           str(tmp_path / "sentences.json"), str(tmp_path / "out.pt"), *flags],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return torch.load(tmp_path / "out.pt", weights_only=False)


def check_embeddings(out: dict, hidden: int) -> None:
    emb = out["embeddings"]
    assert emb.shape == (3, hidden) and out["pooling"] == ["Transformer", "Pooling"]
    # the same sentence, the same vector (to float32 rounding: rows of one batched matmul)
    torch.testing.assert_close(emb[0], emb[2], atol=1e-6, rtol=0)
    assert (emb[0] - emb[1]).abs().max() > 0.1
    assert not out["blocked_imported"]


@pytest.mark.parametrize("prenorm, linear_bias", [(False, True), (True, False)])
def test_mosaic_bert_export_loads_without_efficient_bert(tmp_path, tokenizer, prenorm, linear_bias):
    from efficient_bert.model.mosaic_bert import (MosaicBertConfig, MosaicBertForMaskedLM,
                                                  MosaicBertForSequenceClassification)

    # 3 heads: ALiBi's slopes for a head count that is not a power of two
    cfg = dict(vocab_size=len(tokenizer), hidden_size=48, num_hidden_layers=2, num_attention_heads=3,
               intermediate_size=80, prenorm=prenorm, linear_bias=linear_bias, attention="sdpa", kernels="torch")
    torch.manual_seed(0)
    mlm = perturbed(MosaicBertForMaskedLM(MosaicBertConfig(**cfg)))
    classifier = perturbed(MosaicBertForSequenceClassification(MosaicBertConfig(num_labels=3, **cfg)), seed=1)
    mlm.save_pretrained(tmp_path / "mlm")
    tokenizer.save_pretrained(tmp_path / "mlm")
    classifier.save_pretrained(tmp_path / "classifier")
    config = json.loads((tmp_path / "mlm" / "config.json").read_text())
    assert config["auto_map"]["AutoModelForMaskedLM"] == "modeling_mosaic_bert.MosaicBertForMaskedLM"

    out = load_plainly(tmp_path, tmp_path / "mlm", tmp_path / "classifier", "--trust-remote-code")
    assert out["classes"] == {"mlm": "MosaicBertForMaskedLM", "base": "MosaicBertModel",
                              "classifier": "MosaicBertForSequenceClassification"}
    batch = out["batch"]
    real = batch["attention_mask"].bool()
    assert not real.all()  # the rows differ in length: padding is exercised
    with torch.no_grad():
        ours = mlm(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]).logits
        hidden = mlm.bert(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]).last_hidden_state
        labels = classifier(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]).logits
    torch.testing.assert_close(out["mlm"][real], ours[real], atol=ATOL, rtol=0)
    torch.testing.assert_close(out["base"], hidden, atol=ATOL, rtol=0)
    torch.testing.assert_close(out["classifier"], labels, atol=ATOL, rtol=0)
    check_embeddings(out, 48)


def test_our_loader_keeps_our_fast_classes_for_an_export_with_remote_code(tmp_path):
    from transformers import AutoModelForMaskedLM

    from efficient_bert.model import mosaic_bert

    torch.manual_seed(0)
    cfg = mosaic_bert.MosaicBertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                       intermediate_size=64)
    mosaic_bert.MosaicBertForMaskedLM(cfg).save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.glob("*.py")) == ["configuration_mosaic_bert.py", "modeling_mosaic_bert.py"]
    assert isinstance(AutoModelForMaskedLM.from_pretrained(tmp_path), mosaic_bert.MosaicBertForMaskedLM)


def test_modernbert_export_is_transformers_own_format(tmp_path, tokenizer):
    """Our ModernBERT-architecture model's folder loads in transformers' ModernBERT classes, without custom
    code or trust_remote_code, where efficient_bert is not installed, and computes our logits."""
    from transformers import ModernBertForSequenceClassification

    from efficient_bert.model.modernbert import build_modernbert

    torch.manual_seed(0)
    mlm = perturbed(build_modernbert(tokenizer, size="tiny", attention="sdpa", kernels="torch").model)
    mlm.save_pretrained(tmp_path / "mlm")
    tokenizer.save_pretrained(tmp_path / "mlm")
    assert not list((tmp_path / "mlm").glob("*.py"))
    assert "auto_map" not in json.loads((tmp_path / "mlm" / "config.json").read_text())
    classifier = ModernBertForSequenceClassification.from_pretrained(tmp_path / "mlm", num_labels=3)
    perturbed(classifier, seed=1).save_pretrained(tmp_path / "classifier")

    out = load_plainly(tmp_path, tmp_path / "mlm", tmp_path / "classifier")
    assert out["classes"] == {"mlm": "ModernBertForMaskedLM", "base": "ModernBertModel",
                              "classifier": "ModernBertForSequenceClassification"}
    batch = out["batch"]
    real = batch["attention_mask"].bool()
    with torch.no_grad():
        ours = mlm(batch["input_ids"], batch["attention_mask"]).logits
        hidden = mlm.model(batch["input_ids"], batch["attention_mask"]).last_hidden_state
        labels = classifier.eval()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    # float32 on CPU, logits up to about 20: only the summation order differs
    torch.testing.assert_close(out["mlm"][real], ours[real], atol=1e-4, rtol=0)
    torch.testing.assert_close(out["base"][real], hidden[real], atol=ATOL, rtol=0)
    torch.testing.assert_close(out["classifier"], labels, atol=ATOL, rtol=0)
    check_embeddings(out, 128)
