"""Run under the composer launcher: each rank reads one epoch of an MDS split through the library's
MLM dataloader and writes the sample ids it saw to OUT/rank<r>.json (tests/test_distributed.py)."""

import json
import sys

from composer.utils import dist

from efficient_bert.data.dataloader import build_mlm_dataloader
from efficient_bert.data.tokenizer import load_tokenizer

tokenizer_dir, data, out = sys.argv[1:4]
dist.initialize_dist("cpu")
spec = build_mlm_dataloader(load_tokenizer(tokenizer_dir), 8, local=data, split="train", shuffle=True, shuffle_seed=3,
                            max_seq_len=64, num_workers=0, drop_last=False)
ids = [int(i) for batch in spec.dataloader for i in batch["sample_id"]]
with open(f"{out}/rank{dist.get_global_rank()}.json", "w") as handle:
    json.dump({"ids": ids, "world_size": dist.get_world_size()}, handle)
