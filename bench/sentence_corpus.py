"""A corpus of short documents for the packing benchmark: every sentence of a text corpus (of at least
``--min-words`` words) as a document of its own, one JSON line each.

Sentences end at ``.``, ``!`` or ``?`` followed by white space and a capital letter, within each
paragraph (line) of each document. From enwiki-2015 part 00000 this gives 365,193 sentences, 32
tokens each on average with ``[CLS]`` and ``[SEP]`` (docs/benchmarks.md, "Short documents"):

    python bench/sentence_corpus.py runs/enwiki/corpus/enwiki2015-train-00000.jsonl.zst runs/sentences/train.jsonl
    python convert_c4.py --in_root runs/sentences --out_root runs/short-mds --splits train
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Iterator, Optional, Sequence

from efficient_bert.data.corpus import iter_documents

BOUNDARY = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")


def sentences(document: str, min_words: int = 3) -> Iterator[str]:
    for paragraph in document.split("\n"):
        for sentence in BOUNDARY.split(paragraph):
            if len(sentence.split()) >= min_words:
                yield sentence


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", nargs="+", type=Path, help="corpus files (.jsonl, .jsonl.zst, .json.gz, .txt)")
    parser.add_argument("out", type=Path, help="the JSON-lines file to write (one {'text': sentence} per line)")
    parser.add_argument("--min-words", type=int, default=3)
    args = parser.parse_args(argv)
    if args.out.exists():
        parser.error(f"{args.out} exists: choose another path or remove it")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with open(args.out, "w", encoding="utf-8") as out:
        for document in iter_documents(args.source):
            for sentence in sentences(document, args.min_words):
                out.write(json.dumps({"text": sentence}) + "\n")
                count += 1
    print(f"{count} sentences -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
