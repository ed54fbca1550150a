"""Shared fixtures: a tokenizer and MDS shards built once per session from the bundled real sample."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample"


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
