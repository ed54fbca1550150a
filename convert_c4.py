"""Convert C4 (its native json.gz) or any text corpus into MDS shards for streaming pretraining.

    python convert_c4.py --in_root /data/c4/en --out_root /data/c4-mds --splits train validation
    python convert_c4.py --in_root data/sample --out_root runs/mds --tokenizer runs/tok --concat_tokens 128

`python convert_c4.py --help` lists every option.
"""

from efficient_bert.data.convert import main

if __name__ == "__main__":
    main()
