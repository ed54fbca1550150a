"""Sequence packing: short documents packed into full rows, attention kept within each document.

Real short documents: the bundled SST-2 sentences."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from conftest import ROOT, tiny_mosaic, tiny_run
from efficient_bert.data.mlm_collator import MLMCollator

SST2 = ROOT / "data" / "glue" / "SST-2" / "train.tsv"


def sentences(n: int) -> list[str]:
    with open(SST2, encoding="utf-8") as f:
        return [row["sentence"] for row, _ in zip(csv.DictReader(f, delimiter="\t"), range(n))]


def examples(tokenizer, n: int, max_len: int = 64) -> list[dict]:
    return [{"input_ids": tokenizer(text, truncation=True, max_length=max_len)["input_ids"], "sample_id": 100 + i}
            for i, text in enumerate(sentences(n))]


def test_documents_are_packed_first_fit_by_length_and_masked_as_unpacked(tokenizer):
    lengths = [20, 50, 8, 30, 14, 40, 10]
    text = tokenizer(" ".join(sentences(20)))["input_ids"]  # documents of these lengths from real text
    starts = [sum(lengths[:i]) for i in range(len(lengths))]
    docs = [{"input_ids": text[a:a + n], "sample_id": i} for i, (a, n) in enumerate(zip(starts, lengths))]
    assert [len(d["input_ids"]) for d in docs] == lengths
    plain = MLMCollator(tokenizer, seed=5)(docs)
    packed = MLMCollator(tokenizer, seed=5, pack_to=64)(docs)
    rows = packed["document_lengths"]
    # first fit by decreasing length: 50, 40, 30 open rows; 20 fits beside 40, 14 beside 50, 10 and 8 beside 30
    assert rows == [[50, 14], [40, 20], [30, 10, 8]]
    assert packed["seq_lengths"] == [64, 60, 48]
    assert packed["input_ids"].shape == (3, 64)
    # each document is numbered 1, 2, ... in its row and keeps its own masks (they hash its sample_id)
    for r, row in enumerate(rows):
        start = 0
        for number, n in enumerate(row, start=1):
            assert (packed["attention_mask"][r, start:start + n] == number).all()
            start += n
        assert (packed["attention_mask"][r, start:] == 0).all()
    documents = {tuple(plain["input_ids"][i, :lengths[i]].tolist()): plain["labels"][i, :lengths[i]].tolist()
                 for i in range(len(docs))}
    for r, row in enumerate(rows):
        start = 0
        for n in row:
            ids = tuple(packed["input_ids"][r, start:start + n].tolist())
            assert documents[ids] == packed["labels"][r, start:start + n].tolist()
            start += n
    assert sum(packed["masked_counts"]) == sum(plain["masked_counts"])


@pytest.mark.parametrize("attention", ["eager", "sdpa", "flex"])
def test_a_packed_batch_has_the_loss_of_the_same_documents_unpacked(tokenizer, attention):
    docs = examples(tokenizer, 24)
    model = tiny_mosaic(layers=2)
    model.model.config.attention = attention
    model.eval()
    plain = MLMCollator(tokenizer, seed=1)(docs)
    packed = MLMCollator(tokenizer, seed=1, pack_to=64)(docs)
    assert len(packed["document_lengths"]) < len(docs)
    with torch.no_grad():
        unpacked_loss = model.loss(model(plain), plain)
        packed_loss = model.loss(model(packed), packed)
    torch.testing.assert_close(packed_loss, unpacked_loss, rtol=1e-5, atol=1e-6)


def test_hf_bert_refuses_packed_rows(tokenizer):
    from conftest import tiny_hf_bert
    from efficient_bert.model.composer_mlm import ComposerMLM

    packed = MLMCollator(tokenizer, pack_to=64)(examples(tokenizer, 8))
    hf = ComposerMLM(tiny_hf_bert(tokenizer).model)
    with pytest.raises(ValueError, match="BertForMaskedLM cannot attend within the documents of packed rows"):
        hf(packed)


@pytest.fixture(scope="module")
def sst2_text_mds(tmp_path_factory):
    from efficient_bert.data.convert import convert

    root = tmp_path_factory.mktemp("sst2")
    texts = sentences(2000)
    for split, part in (("train", texts[:1800]), ("validation", texts[1800:])):
        (root / f"{split}.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in part))
    convert(["train", "validation"], str(root / "mds"), in_root=str(root))  # text rows, tokenized when read
    return root / "mds"


def test_packed_text_rows_train_counting_documents_and_refuse_what_cannot_pack(tmp_path, tokenizer_dir, sst2_text_mds):
    from efficient_bert.errors import ConfigError

    def run_of(*extra):
        return tiny_run(tokenizer_dir, sst2_text_mds, f"save_folder={tmp_path / 'run'}", "model.name=mosaic_bert",
                        "train_loader.dataset.pack=true", "eval_loader.dataset.pack=true", "global_train_batch_size=64",
                        "max_duration=3ba", "eval_interval=3ba", *extra)

    run = run_of()
    try:
        run.fit()
        timestamp = run.trainer.state.timestamp
        assert int(timestamp.batch) == 3 and int(timestamp.sample) == 3 * 64  # a sample is a document
        assert run.eval_history.records[-1]["eval/LanguageCrossEntropy"] < 8.0
    finally:
        run.close()
    with pytest.raises(ConfigError, match="^train_loader.dataset.pack needs model.name: mosaic_bert, which attends "
                                          "within each document of a row; hf_bert would attend across the whole row$"):
        run_of("model={name: hf_bert}")
    with pytest.raises(ConfigError, match="selects rows by sample and cannot train packed rows"):
        run_of("algorithms={selective_backprop: {}}", f"save_folder={tmp_path / 'other'}")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_the_gpu_a_packed_step_matches_unpacked_and_never_waits_for_the_gpu(tokenizer):
    from efficient_bert.model.mosaic_bert import MosaicBertConfig, MosaicBertForMaskedLM

    torch.manual_seed(0)
    model = MosaicBertForMaskedLM(MosaicBertConfig(vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=2,
                                                   num_attention_heads=4, intermediate_size=128,
                                                   hidden_dropout_prob=0.0)).cuda()
    docs = examples(tokenizer, 48)
    plain, packed = (MLMCollator(tokenizer, seed=3, pack_to=pack)(docs) for pack in (None, 128))
    plain, packed = ({k: v.cuda() if torch.is_tensor(v) else v for k, v in b.items() if k != "sample_id"}
                     for b in (plain, packed))

    def loss(batch):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            return model(**batch).loss

    torch.testing.assert_close(loss(packed), loss(plain), rtol=2e-2, atol=1e-3)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        loss(packed).backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
