import os
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import sample_documents
from efficient_bert.data.dataloader import build_mlm_dataloader, stop_workers
from efficient_bert.data.text_dataset import CorruptShardError, StreamingTextDataset
from efficient_bert.errors import ConfigError
from efficient_bert.pretrain.registry import config_errors


def test_text_rows_are_tokenized_and_truncated(text_mds, tokenizer):
    with StreamingTextDataset(tokenizer, 96, local=str(text_mds), split="validation", batch_size=4) as ds:
        sample = ds[5]
    assert ds.column == "text" and ds.num_samples == 60
    assert sample["sample_id"] == 5
    assert len(sample["input_ids"]) == 96  # every article is longer than 96 tokens
    assert sample["input_ids"][0] == tokenizer.cls_token_id and sample["input_ids"][-1] == tokenizer.sep_token_id


@pytest.mark.parametrize("max_seq_len", [8, 96, 4096])
def test_text_rows_get_the_ids_of_the_tokenizers_own_truncating_call(text_mds, tokenizer, max_seq_len):
    documents = sample_documents("validation")
    with StreamingTextDataset(tokenizer, max_seq_len, local=str(text_mds), split="validation", batch_size=4) as ds:
        rows = [ds[i]["input_ids"].tolist() for i in range(ds.num_samples)]
    assert rows == [tokenizer(d, truncation=True, max_length=max_seq_len)["input_ids"] for d in documents]
    assert max(map(len, rows)) == max_seq_len if max_seq_len < 4096 else min(map(len, rows)) > 96


def read_raw_rows(split_dir: Path, rows: list[int]) -> list[np.ndarray]:
    """Rows of the first shard of an MDS split as written, read with streaming's shard reader alone (no
    dataset class, no shuffling, no sample-id mapping)."""
    import json

    import zstandard
    from streaming.base.format import reader_from_json

    shard = json.loads((split_dir / "index.json").read_text())["shards"][0]
    raw = split_dir / shard["raw_data"]["basename"]
    if not raw.exists():
        compressed = (split_dir / shard["zip_data"]["basename"]).read_bytes()
        raw.write_bytes(zstandard.ZstdDecompressor().decompress(compressed, max_output_size=1 << 30))
    reader = reader_from_json(str(split_dir.parent), split_dir.name, shard)
    return [np.asarray(reader.decode_sample(reader.get_sample_data(row))["tokens"]) for row in rows]


def test_token_rows_are_used_as_is(token_mds, tokenizer):
    with StreamingTextDataset(tokenizer, 32, local=str(token_mds), split="train", batch_size=4) as ds:
        assert ds.column == "tokens"
        written = read_raw_rows(token_mds / "train", [0, 3])  # the shard's own rows, read without streaming
        assert ds[0]["input_ids"].tolist() == written[0][:32].tolist() and len(written[0]) == 64
        assert ds[3]["input_ids"].tolist() == written[1][:32].tolist()
        assert len(ds[3]["input_ids"]) == 32


def test_two_workers_see_every_sample_exactly_once(token_mds, tokenizer):
    spec = build_mlm_dataloader(tokenizer, 16, local=str(token_mds), split="validation", shuffle=False,
                                max_seq_len=64, num_workers=2, drop_last=False, pin_memory=False,
                                persistent_workers=False)
    ids, tokens = [], 0
    for batch in spec.dataloader:
        assert set(batch) == {"input_ids", "attention_mask", "token_type_ids", "labels", "sample_id",
                              "seq_lengths", "masked_counts"}
        assert batch["seq_lengths"] == [64] * len(batch["sample_id"])
        assert batch["input_ids"].shape[1] == 64
        ids += batch["sample_id"].tolist()
        tokens += spec.get_num_tokens_in_batch(batch)
    n = spec.dataloader.dataset.num_samples
    spec.dataloader.dataset.close()
    assert sorted(ids) == list(range(n))
    assert tokens == 64 * n  # concatenated rows have no padding


def test_persistent_workers_stop_when_told_instead_of_timing_out(token_mds, tokenizer):
    spec = build_mlm_dataloader(tokenizer, 16, local=str(token_mds), split="validation", shuffle=False,
                                max_seq_len=64, num_workers=2, pin_memory=False)
    next(iter(spec.dataloader))
    workers = spec.dataloader._iterator._workers
    assert [w.is_alive() for w in workers] == [True, True]  # persistent: they outlive the pass
    stop_workers(spec.dataloader)
    spec.dataloader.dataset.close()
    # exit code 0: each worker stopped on its own (a worker killed after the join's timeout shows -15)
    assert [w.exitcode for w in workers] == [0, 0] and spec.dataloader._iterator is None
    stop_workers(spec.dataloader)  # nothing left to stop


def test_missing_shards_and_wrong_columns_are_clear_errors(tmp_path, tokenizer):
    with pytest.raises(FileNotFoundError, match="no MDS index at .*convert_c4.py"):
        StreamingTextDataset(tokenizer, 64, local=str(tmp_path), split="train")
    # the config layer names the section
    with pytest.raises(ConfigError, match="^train_loader: no MDS index at "), config_errors("train_loader"):
        StreamingTextDataset(tokenizer, 64, local=str(tmp_path), split="train")
    with pytest.raises(ConfigError, match="^train_loader.max_seq_len: must be at least 8, got 4"), \
            config_errors("train_loader"):
        StreamingTextDataset(tokenizer, 4, local=str(tmp_path), split="train")
    from streaming import MDSWriter

    with MDSWriter(out=str(tmp_path / "train"), columns={"body": "str"}) as w:
        w.write({"body": "x"})
    with pytest.raises(ValueError, match="columns \\['body'\\]; expected 'text'"):
        StreamingTextDataset(tokenizer, 64, local=str(tmp_path), split="train")


def test_corrupt_shard_names_the_shard(tmp_path, tokenizer):
    from streaming import MDSWriter

    with MDSWriter(out=str(tmp_path / "train"), columns={"text": "str"}, compression="zstd") as w:
        for i in range(50):
            w.write({"text": f"sentence number {i} " * 20})
    shard = next((tmp_path / "train").glob("*.zstd"))
    shard.write_bytes(shard.read_bytes()[:40])
    with StreamingTextDataset(tokenizer, 64, local=str(tmp_path), split="train") as ds:
        with pytest.raises(RuntimeError, match="shard 0 .*shard.00000.mds.zstd.*corrupt"):
            ds[0]


def copy_of(mds, tmp_path):
    import shutil

    return Path(shutil.copytree(mds, tmp_path / "mds"))


@pytest.mark.parametrize("workers", [0, 1])
def test_a_truncated_compressed_shard_fails_within_seconds_naming_it(tmp_path, tokenizer_dir, token_mds, workers):
    # only the .zstd is left, cut short: streaming's decompression fails in a background thread, which
    # used to leave the shard "preparing" forever and the run hanging
    from test_train_e2e import TINY, run_main

    mds = copy_of(token_mds, tmp_path)
    (mds / "train" / "shard.00000.mds").unlink(missing_ok=True)  # streaming's copy, once a reader decompressed it
    zipped = mds / "train" / "shard.00000.mds.zstd"
    zipped.write_bytes(zipped.read_bytes()[:50_000])
    start = time.monotonic()
    done = run_main(TINY, f"tokenizer.path={tokenizer_dir}", f"variables.data_local={mds}", f"save_folder={tmp_path / 'run'}",
                    f"train_loader.num_workers={workers}", timeout=120)
    assert done.returncode == 2 and time.monotonic() - start < 60
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: decompressing or downloading a shard failed (") and "Decompression error" in last
    assert f"shard 0 (shard.00000.mds, shard.00000.mds.zstd) under {mds / 'train'} is corrupt" in last
    assert last.endswith("re-run convert_c4.py with --overwrite, or delete the local cache so it is downloaded again")


def test_token_ids_outside_the_vocabulary_are_caught_where_they_are_read(tmp_path, tokenizer):
    # without the check, such an id ends in an IndexError deep inside the embedding
    import numpy as np
    from streaming import MDSWriter

    with MDSWriter(out=str(tmp_path / "train"), columns={"tokens": "ndarray:int32"}) as w:
        w.write({"tokens": np.arange(10, 74, dtype=np.int32)})
        w.write({"tokens": np.array([10, 11, 5000, 12], dtype=np.int32)})
    with StreamingTextDataset(tokenizer, 64, local=str(tmp_path), split="train") as ds:
        assert ds[0]["input_ids"].max() == 73
        with pytest.raises(CorruptShardError, match=f"^sample 1 holds token ids from 10 to 5000, outside the "
                                                    f"tokenizer's vocabulary of {len(tokenizer)}: shard 0 .* was "
                                                    "written with another tokenizer: point the run at that one, "
                                                    "or convert the corpus again with this one$"):
            ds[1]


def test_a_raw_shard_is_read_only_if_it_matches_its_hash(tmp_path, tokenizer, token_mds):
    mds = copy_of(token_mds, tmp_path)
    zipped, raw = mds / "validation" / "shard.00000.mds.zstd", mds / "validation" / "shard.00000.mds"
    with StreamingTextDataset(tokenizer, 64, local=str(mds), split="validation") as ds:
        intact = ds[ds.num_samples - 1]["input_ids"]  # reading decompresses the shard beside its .zstd
    assert raw.is_file()
    zipped.write_bytes(zipped.read_bytes()[:1000])  # a damaged .zstd beside an intact raw copy: nothing is wrong
    with StreamingTextDataset(tokenizer, 64, local=str(mds), split="validation") as ds:
        assert (ds[ds.num_samples - 1]["input_ids"] == intact).all()
    data = bytearray(raw.read_bytes())
    data[-4] ^= 1  # the last id of the last sample, still inside the vocabulary
    raw.write_bytes(bytes(data))
    with StreamingTextDataset(tokenizer, 64, local=str(mds), split="validation") as ds:
        with pytest.raises(CorruptShardError, match="shard.00000.mds does not match the sha1 its index.json records"):
            ds[0]
    flipped = int.from_bytes(data[-4:], "little")
    assert flipped < len(tokenizer) and flipped != intact[-1]  # only the hash can tell


def test_remote_shards_are_copied_into_the_local_cache(token_mds, tokenizer, tmp_path):
    cache = tmp_path / "cache"
    with (StreamingTextDataset(tokenizer, 64, local=str(cache), remote=str(token_mds), split="validation") as ds,
          StreamingTextDataset(tokenizer, 64, local=str(token_mds), split="validation") as local):
        assert ds.num_samples == local.num_samples
        assert ds[7]["input_ids"].tolist() == local[7]["input_ids"].tolist()
    assert list((cache / "validation").glob("shard.*.mds*"))  # fetched from the remote into the cache


def open_descriptors() -> int:
    return len(os.listdir(f"/proc/{os.getpid()}/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts descriptors through /proc")
def test_closed_datasets_leave_no_descriptors_or_shared_memory(token_mds, tokenizer):
    # Streaming holds its blocks until interpreter exit; a long process must be able to let them go.
    def build_and_read():
        with StreamingTextDataset(tokenizer, 64, local=str(token_mds), split="validation") as a, \
                StreamingTextDataset(tokenizer, 64, local=str(token_mds), split="train") as b:
            assert len(a[0]["input_ids"]) == len(b[0]["input_ids"]) == 64
            return [f"{d._shm_prefix_int:06}_locals" for d in (a, b)]

    build_and_read()  # the first build imports and opens what a process keeps anyway
    before = open_descriptors()
    for _ in range(5):
        names = build_and_read()
        assert not any(os.path.exists(f"/dev/shm/{name}") for name in names)
    assert open_descriptors() == before
