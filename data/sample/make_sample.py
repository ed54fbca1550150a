"""Rebuild the bundled sample corpus from WikiText-103 (run from the repository root).

    python data/sample/make_sample.py WIKITEXT_DIR     (the folder with wiki.train.tokens.head, wiki.test.tokens, wiki.valid.tokens)

Writes gzipped JSON-lines files named and laid out like C4's native release
(``c4-{split}.NNNNN-of-NNNNN.json.gz``, one ``{"text": ...}`` object per line), so the demo and
the tests exercise exactly the path a user takes with real C4.
"""

from __future__ import annotations

import gzip
import json
import re
import sys
from pathlib import Path

# WikiText marks intra-number/word separators as " @x@ "; undo them and the space tokenisation.
_AT_MARKERS = re.compile(r" @([-,.])@ ")
_SPACE_BEFORE = re.compile(r" ([,.;:!?)\]}%']|'s|n't)")
_SPACE_AFTER = re.compile(r"([(\[{$]) ")


def detokenize(line: str) -> str:
    line = _AT_MARKERS.sub(r"\1", line.strip())
    line = _SPACE_BEFORE.sub(r"\1", line)
    return _SPACE_AFTER.sub(r"\1", line)


def articles(path: Path, drop_last: bool = False) -> list[dict]:
    """Split a WikiText file into articles at top-level ``= Title =`` headings."""
    docs: list[dict] = []
    title, paragraphs = None, []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line:
            continue
        top = re.fullmatch(r"= ([^=].*[^=]) =", line)
        if top:
            if title is not None and paragraphs:
                docs.append({"text": "\n".join(paragraphs), "title": title})
            title, paragraphs = detokenize(top.group(1)), []
            continue
        sub = re.fullmatch(r"(=\s)+(.*?)(\s=)+", line)
        paragraphs.append(detokenize(sub.group(2)) if sub else detokenize(line))
    if title is not None and paragraphs and not drop_last:
        docs.append({"text": "\n".join(paragraphs), "title": title})
    return docs


def write(docs: list[dict], path: Path) -> None:
    # mtime=0 keeps the gzip bytes reproducible.
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
        for doc in docs:
            gz.write((json.dumps(doc, ensure_ascii=False) + "\n").encode("utf-8"))
    print(f"{path}: {len(docs)} documents")


def main(src: str) -> None:
    src_dir, out = Path(src), Path(__file__).resolve().parent
    # The training head is cut mid-article: drop that last partial article.
    write(articles(src_dir / "wiki.train.tokens.head", drop_last=True), out / "c4-train.00000-of-00002.json.gz")
    write(articles(src_dir / "wiki.test.tokens"), out / "c4-train.00001-of-00002.json.gz")
    write(articles(src_dir / "wiki.valid.tokens"), out / "c4-validation.00000-of-00001.json.gz")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    main(sys.argv[1])
