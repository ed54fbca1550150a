import gzip
import json
import subprocess
import sys

import numpy as np
import pytest
from streaming import StreamingDataset

from conftest import ROOT, SAMPLE, sample_documents
from efficient_bert.data.convert import convert
from efficient_bert.data.corpus import BadInputError
from efficient_bert.data.text_dataset import release_shared_memory


def read_column(root, split, column):
    ds = StreamingDataset(local=str(root), split=split, shuffle=False, batch_size=1)
    try:
        return [ds[i][column] for i in range(ds.num_samples)]
    finally:
        release_shared_memory(ds)


def test_c4_json_gz_round_trips_every_document_in_order(text_mds):
    for split, expected in (("train", 224), ("validation", 60)):
        texts = read_column(text_mds, split, "text")
        assert len(texts) == expected
        assert texts == sample_documents(split)
        info = json.loads((text_mds / split / "conversion.json").read_text())
        assert (info["documents"], info["rows"], info["skipped_bad"]) == (expected, expected, 0)


def test_concat_tokens_rows_are_full_and_cover_all_tokens(token_mds, tokenizer):
    rows = read_column(token_mds, "validation", "tokens")
    info = json.loads((token_mds / "validation" / "conversion.json").read_text())
    assert all(r.dtype == np.int32 and r.shape == (64,) for r in rows)
    assert len(rows) == info["rows"] == info["tokens"] // 64
    assert info["tokens"] - 64 * len(rows) == info["dropped_tail_tokens"] < 64
    docs = sample_documents("validation")
    first = tokenizer(docs[0])["input_ids"]
    assert rows[0].tolist() == first[:64]


def test_max_docs_and_refusal_to_overwrite(tmp_path):
    out = tmp_path / "mds"
    (report,) = convert(["validation"], str(out), in_root=str(SAMPLE), max_docs=7)
    assert report.documents == 7
    with pytest.raises(FileExistsError, match="--overwrite"):
        convert(["validation"], str(out), in_root=str(SAMPLE), max_docs=3)
    assert len(read_column(out, "validation", "text")) == 7  # untouched
    convert(["validation"], str(out), in_root=str(SAMPLE), max_docs=3, overwrite=True)
    assert len(read_column(out, "validation", "text")) == 3


def test_other_input_formats_jsonl_zst_txt_and_hf_dataset_dir(tmp_path):
    import datasets
    import zstandard

    docs = sample_documents("validation")[:5]
    zst = tmp_path / "in" / "part-train.jsonl.zst"
    zst.parent.mkdir()
    zst.write_bytes(zstandard.ZstdCompressor().compress("".join(json.dumps({"text": d}) + "\n" for d in docs).encode()))
    txt = tmp_path / "in" / "train" / "notes.txt"
    txt.parent.mkdir()
    txt.write_text("first doc line one\nline two\n\n\nsecond doc\n")
    convert(["train"], str(tmp_path / "out"), in_root=str(tmp_path / "in"))
    assert read_column(tmp_path / "out", "train", "text") == docs + ["first doc line one\nline two", "second doc"]

    hf_dir = tmp_path / "hf"
    datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": docs[:3], "id": [1, 2, 3]})}).save_to_disk(str(hf_dir))
    convert(["train"], str(tmp_path / "out_hf"), in_root=str(hf_dir))
    assert read_column(tmp_path / "out_hf", "train", "text") == docs[:3]
    with pytest.raises(BadInputError, match="no column 'body'"):
        convert(["train"], str(tmp_path / "out_hf2"), in_root=str(hf_dir), text_key="body")


def test_line_without_text_names_file_and_line_or_is_skipped(tmp_path):
    bad = tmp_path / "c4-train.00000-of-00001.json.gz"
    with gzip.open(bad, "wt") as handle:
        handle.write('{"text": "good one"}\n{"url": "x"}\nnot json\n{"text": "good two"}\n')
    with pytest.raises(BadInputError, match=r"c4-train.00000-of-00001.json.gz:2: no string field 'text'"):
        convert(["train"], str(tmp_path / "out"), in_root=str(tmp_path))
    (report,) = convert(["train"], str(tmp_path / "out"), in_root=str(tmp_path), skip_bad=True, overwrite=True)
    assert (report.documents, report.skipped_bad) == (2, 2)
    assert "json.gz:3: not valid JSON" in report.bad_examples[1]


def test_corrupt_gzip_is_reported_with_file_and_line(tmp_path):
    data = (SAMPLE / "c4-validation.00000-of-00001.json.gz").read_bytes()
    broken = tmp_path / "c4-validation.00000-of-00001.json.gz"
    broken.write_bytes(data[: len(data) // 2])  # a truncated download
    with pytest.raises(BadInputError, match=r"c4-validation.00000-of-00001.json.gz: corrupt or truncated data after line \d+"):
        convert(["validation"], str(tmp_path / "out"), in_root=str(tmp_path))
    (report,) = convert(["validation"], str(tmp_path / "out"), in_root=str(tmp_path), skip_bad=True, overwrite=True)
    assert 0 < report.documents < 60 and report.skipped_bad == 1


def test_an_empty_corpus_is_refused_and_leaves_no_split(tmp_path, tokenizer_dir):
    (tmp_path / "c4-train.00000.json").write_text("")
    with pytest.raises(BadInputError, match=r"^split 'train' has no rows: 0 documents in .*c4-train.00000.json; "
                                            r"check the files, --text_key or --splits$"):
        convert(["train"], str(tmp_path / "out"), in_root=str(tmp_path))
    assert not (tmp_path / "out" / "train").exists()
    (tmp_path / "c4-train.00000.json").write_text('{"text": "a few words"}\n')
    with pytest.raises(BadInputError, match=r"has no rows: 1 documents \(fewer than the 64 tokens of one row\)"):
        convert(["train"], str(tmp_path / "out"), in_root=str(tmp_path), tokenizer=str(tokenizer_dir), concat_tokens=64)


def test_a_file_that_is_not_utf8_names_the_line(tmp_path):
    # 200 good lines first: the text reader decodes blocks ahead, the message must name the bad line itself
    lines = [json.dumps({"text": f"line {i}"}).encode() for i in range(200)] + ['{"text": "caf\xe9"}'.encode("latin-1")]
    (tmp_path / "c4-train.00000.json").write_bytes(b"\n".join(lines) + b"\n")
    with pytest.raises(BadInputError, match=r"c4-train.00000.json: line 201 is not UTF-8 \(byte 0xe9 at column 14\); "
                                            r"convert the file to UTF-8 first, e.g. `iconv -f latin1 -t utf-8"):
        convert(["train"], str(tmp_path / "out"), in_root=str(tmp_path))
    (report,) = convert(["train"], str(tmp_path / "out"), in_root=str(tmp_path), skip_bad=True, overwrite=True)
    assert (report.documents, report.skipped_bad) == (200, 1)


def test_cli_with_workers_matches_single_process(tmp_path, tokenizer_dir, token_mds):
    cmd = [sys.executable, str(ROOT / "convert_c4.py"), "--in_root", str(SAMPLE), "--out_root", str(tmp_path / "o"),
           "--splits", "validation", "--tokenizer", str(tokenizer_dir), "--concat_tokens", "64", "--num_workers", "2"]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    assert "validation: 60 documents ->" in done.stdout and "docs/s" in done.stdout
    a = read_column(tmp_path / "o", "validation", "tokens")
    b = read_column(token_mds, "validation", "tokens")
    assert len(a) == len(b) and all((x == y).all() for x, y in zip(a, b))
    again = subprocess.run(cmd, capture_output=True, text=True)
    assert again.returncode != 0 and "pass --overwrite" in again.stderr


def test_overwrite_with_bad_input_keeps_the_old_split_and_a_failed_run_does_not_block_the_next(tmp_path):
    out = tmp_path / "mds"
    convert(["validation"], str(out), in_root=str(SAMPLE), max_docs=7)
    bad = tmp_path / "in" / "c4-validation.00000.json"
    bad.parent.mkdir()
    bad.write_text('{"text": "fine"}\nnot json\n')
    with pytest.raises(BadInputError, match="c4-validation.00000.json:2: not valid JSON"):
        convert(["validation"], str(out), in_root=str(bad.parent), overwrite=True)
    assert len(read_column(out, "validation", "text")) == 7  # the earlier split, intact
    assert sorted(p.name for p in out.iterdir()) == ["validation"]  # no partial output left behind
    bad.write_text('{"text": "fine"}\n{"text": "fixed"}\n')
    convert(["validation"], str(out), in_root=str(bad.parent), overwrite=True)
    assert read_column(out, "validation", "text") == ["fine", "fixed"]


def test_a_mistyped_split_is_refused_before_any_split_is_converted(tmp_path):
    with pytest.raises(BadInputError, match=r"^no input files for split 'val' under .* \(looked for names "
                                            r"containing 'val' with a supported suffix, or a 'val/' directory\)$"):
        convert(["train", "val"], str(tmp_path / "out"), in_root=str(SAMPLE))
    assert not (tmp_path / "out").exists()
