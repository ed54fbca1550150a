"""Shared fixtures and builders: a tokenizer and MDS shards built once per session from the bundled real
sample; tiny models and real-text MLM batches for the tests that need one."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import tempfile
from pathlib import Path

# Everything the session writes to the temp folder goes into one folder of its own, removed when the
# session passes: pytest's tmp_path folders, what subprocesses leave (multiprocessing's pymp-*,
# Composer's symlink files, streaming's file locks, a killed run's leftovers) and torch's inductor
# cache, which importing Composer creates. Set before those imports, so that they see it.
SESSION_TEMP = Path(tempfile.mkdtemp(prefix="efficient-bert-tests-"))
os.environ["TMPDIR"] = tempfile.tempdir = str(SESSION_TEMP)

import pytest  # noqa: E402
from composer.core import Callback, Event  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def pytest_sessionfinish(session, exitstatus):
    if exitstatus == 0:  # a failed session keeps its folders to look into
        shutil.rmtree(SESSION_TEMP, ignore_errors=True)
    else:
        print(f"\nthe session's temp folder is kept: {SESSION_TEMP}")

SAMPLE = ROOT / "data" / "sample"
TINY_YAML = ROOT / "yamls" / "tiny-cpu.yaml"


# each model family's tiny config as tiny-cpu.yaml overrides; the ModernBERT ones
# alternate global and local layers, and their first layer has no pre-attention norm of its own
TINY_MODELS = {
    "hf_bert": ["model.name=hf_bert"],
    "mosaic_bert": ["model.name=mosaic_bert", "model.size=tiny", "model.hidden_size=64", "model.num_attention_heads=2"],
    "modernbert": ["model={name: modernbert, size: tiny, attention: sdpa, kernels: torch, local_attention: 16, "
                   "global_attn_every_n_layers: 2}"],
    "hf_modernbert": ["model={name: hf_modernbert, size: tiny, local_attention: 16, global_attn_every_n_layers: 2}"],
}


def tiny_run(tokenizer_dir, data, *overrides, methods=()):
    """A run of ``tiny-cpu.yaml`` with method YAMLs (``yamls/methods/<m>``) and ``key=value`` overrides on
    the shards ``data``, built as main.py builds it; no evaluation before the first step."""
    from efficient_bert.pretrain.build import build_trainer
    from efficient_bert.pretrain.schema import load_config

    yamls = [TINY_YAML, *(ROOT / "yamls" / "methods" / m for m in methods)]
    return build_trainer(load_config(yamls, [f"tokenizer.path={tokenizer_dir}", f"variables.data_local={data}",
                                             "eval_at_start=false", *overrides]))


def sample_documents(split: str) -> list[str]:
    docs = []
    for path in sorted(SAMPLE.glob(f"c4-{split}.*.json.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            docs.extend(json.loads(line)["text"] for line in handle)
    return docs


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory) -> Path:
    from efficient_bert.data.corpus import find_split_files, iter_documents
    from efficient_bert.data.tokenizer import train_wordpiece

    out = tmp_path_factory.mktemp("tok") / "tokenizer"
    train_wordpiece(iter_documents(find_split_files(SAMPLE, "train")), out, vocab_size=2000)
    return out


@pytest.fixture(scope="session")
def tokenizer(tokenizer_dir):
    from efficient_bert.data.tokenizer import load_tokenizer

    return load_tokenizer(tokenizer_dir)


@pytest.fixture(scope="session")
def text_mds(tmp_path_factory) -> Path:
    from efficient_bert.data.convert import convert

    out = tmp_path_factory.mktemp("mds") / "text"
    convert(["train", "validation"], str(out), in_root=str(SAMPLE))
    return out


@pytest.fixture(scope="session")
def token_mds(tmp_path_factory, tokenizer_dir) -> Path:
    from efficient_bert.data.convert import convert

    out = tmp_path_factory.mktemp("mds") / "tokens"
    convert(["train", "validation"], str(out), in_root=str(SAMPLE), tokenizer=str(tokenizer_dir), concat_tokens=64)
    return out


# Reference-clock prices for tiny-cpu.yaml's model (HF BERT, 64 wide, 2 layers) at its rows of 64 tokens:
# a training pass over 16 rows costs 4 s with one layer running and 10 s with both; a forward pass 1 s and 3 s;
# a Lion step 1 s more than the AdamW step the training prices include
TINY_COSTS = {"model": {"model_type": "bert", "hidden_size": 64, "num_hidden_layers": 2, "intermediate_size": 256},
              "seq_len": 64, "rows": 16, "train": [4.0, 10.0], "forward": [1.0, 3.0],
              "optimizer_steps": {"AdamW": 1.0, "Lion": 2.0}}


@pytest.fixture(scope="session")
def tiny_cost_table(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("costs") / "tiny-cpu-costs.json"
    path.write_text(json.dumps(TINY_COSTS))
    return path


def mlm_batch(tokenizer, rows: int = 6, seq: int = 32, seed: int = 0) -> dict:
    """A collated MLM batch of real validation text: rows of decreasing length (seq, seq - 4, ...),
    sample ids 100, 101, ..."""
    from efficient_bert.data.mlm_collator import MLMCollator

    docs = sample_documents("validation")[:rows]
    examples = [{"input_ids": tokenizer(d, truncation=True, max_length=seq - 4 * i)["input_ids"], "sample_id": 100 + i}
                for i, d in enumerate(docs)]
    return MLMCollator(tokenizer, 0.3, seed=seed)(examples)


def tiny_mosaic(layers: int = 4, vocab_size: int = 2000):
    """A 32-wide Mosaic BERT in a ComposerMLM, on the reference kernels, seeded, without dropout."""
    import torch

    from efficient_bert.model.composer_mlm import ComposerMLM
    from efficient_bert.model.mosaic_bert import MosaicBertConfig, MosaicBertForMaskedLM

    torch.manual_seed(0)
    cfg = MosaicBertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=layers, num_attention_heads=2,
                           intermediate_size=64, attention="eager", kernels="torch", hidden_dropout_prob=0.0)
    return ComposerMLM(MosaicBertForMaskedLM(cfg))


def perturbed(model, seed: int = 0):
    """``model`` in eval mode with every parameter moved off its initial value (norm weights off 1, biases
    off 0), so that a comparison of two implementations sees each one."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model.eval()


class StepWatch(Callback):
    """Per training step of an HF BERT in a Composer model (``tiny_hf_bert``, ``tiny-cpu.yaml``'s): the
    rows trained, their sample ids, and how many encoder layers ran."""

    def __init__(self, model):
        self.rows, self.ids, self.layers = [], [], []
        self._ran = 0
        for layer in model.model.bert.encoder.layer:
            layer.register_forward_hook(self._count)

    def _count(self, *args):
        self._ran += 1

    def run_event(self, event, state, logger):
        if event == Event.BEFORE_FORWARD:
            self.rows.append(int(state.batch["input_ids"].shape[0]))
            self.ids.append(state.batch["sample_id"].tolist())
            self._ran = 0
        elif event == Event.AFTER_FORWARD and state.model.training:
            self.layers.append(self._ran)


def tiny_hf_bert(tokenizer, layers: int = 1):
    """A 32-wide HF ``BertForMaskedLM`` in Composer's own ``HuggingFaceModel``: what a user of a plain
    Composer Trainer has, without any of this library's model code."""
    import torch
    from composer.models import HuggingFaceModel
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(0)
    return HuggingFaceModel(BertForMaskedLM(BertConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=layers, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=64)), use_logits=True)
