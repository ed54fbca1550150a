import os

import pytest

from efficient_bert.data.dataloader import build_mlm_dataloader
from efficient_bert.data.text_dataset import StreamingTextDataset
from efficient_bert.registry import ConfigError


def test_text_rows_are_tokenized_and_truncated(text_mds, tokenizer):
    with StreamingTextDataset(tokenizer, 96, local=str(text_mds), split="validation", batch_size=4) as ds:
        sample = ds[5]
    assert ds.column == "text" and ds.num_samples == 60
    assert sample["sample_id"] == 5
    assert len(sample["input_ids"]) == 96  # every article is longer than 96 tokens
    assert sample["input_ids"][0] == tokenizer.cls_token_id and sample["input_ids"][-1] == tokenizer.sep_token_id


def test_token_rows_are_used_as_is(token_mds, tokenizer):
    with StreamingTextDataset(tokenizer, 32, local=str(token_mds), split="train", batch_size=4) as ds:
        assert ds.column == "tokens"
        assert ds[0]["input_ids"].tolist() == ds.get_item(0)["input_ids"].tolist()
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


def test_missing_shards_and_wrong_columns_are_clear_errors(tmp_path, tokenizer):
    with pytest.raises(ConfigError, match="no MDS index at .*convert_c4.py"):
        StreamingTextDataset(tokenizer, 64, local=str(tmp_path), split="train")
    from streaming import MDSWriter

    with MDSWriter(out=str(tmp_path / "train"), columns={"body": "str"}) as w:
        w.write({"body": "x"})
    with pytest.raises(ConfigError, match="columns \\['body'\\]; expected 'text'"):
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
