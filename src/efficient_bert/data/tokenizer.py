"""Training a BERT WordPiece tokenizer locally and loading tokenizers from local directories only."""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path
from typing import Any, Iterable, Optional


SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def train_wordpiece(documents: Iterable[str], out_dir: str | Path, vocab_size: int = 30522,
                    lowercase: bool = True, min_frequency: int = 2, overwrite: bool = False):
    """Train a BERT-style (uncased by default) WordPiece tokenizer and save it with ``save_pretrained``.

    Its ids are in a canonical order (:func:`canonical_vocab`), so the same vocabulary always gets the
    same ids. The vocabulary itself can still differ between two trainings on the same documents:
    the trainer breaks ties between equally frequent pairs in an order that changes from process to
    process, which decides the last few merges (seen on 32M tokens of Wikipedia at 30,522 ids: two
    vocabularies, in 5 trainings). Keep the tokenizer the shards were made with; the shards record its
    :func:`vocabulary_digest`. Returns the ``BertTokenizerFast``; ``out_dir`` can then be given as
    ``tokenizer.path``.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertTokenizerFast

    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise FileExistsError(f"{out_dir} is not empty; choose another directory or pass --overwrite")
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=lowercase, strip_accents=lowercase)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                        special_tokens=SPECIAL_TOKENS, show_progress=False)
    tok.train_from_iterator(documents, trainer=trainer)
    tok.model = models.WordPiece(vocab=canonical_vocab(tok.get_vocab()), unk_token="[UNK]",
                                 continuing_subword_prefix="##")
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)])
    fast = BertTokenizerFast(tokenizer_object=tok, do_lower_case=lowercase, unk_token="[UNK]",
                             sep_token="[SEP]", pad_token="[PAD]", cls_token="[CLS]", mask_token="[MASK]")
    fast.save_pretrained(str(out_dir))
    return fast


def canonical_vocab(vocab: dict[str, int]) -> dict[str, int]:
    """The special tokens first, then every other token in code-point order. The trainer numbers tokens
    in an order that changes from process to process; WordPiece tokenizes by longest match, which the
    ids do not affect."""
    rest = sorted(token for token in vocab if token not in SPECIAL_TOKENS)
    return {token: i for i, token in enumerate([*(t for t in SPECIAL_TOKENS if t in vocab), *rest])}


def vocabulary_digest(tokenizer: Any) -> str:
    """A hash of what decides a tokenizer's ids: its vocabulary (token -> id) and its lowercasing.
    Shards, checkpoints and result records carry it, so a mismatch is found before training."""
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
    # a folder whose config.json names another model type (ModernBERT's) loads as transformers' generic
    # tokenizer class, which keeps do_lower_case only among its saved settings
    lowercase = bool(getattr(tokenizer, "do_lower_case", getattr(tokenizer, "init_kwargs", {}).get("do_lower_case", False)))
    payload = json.dumps({"vocab": vocab, "lowercase": lowercase}, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


def load_tokenizer(path: str | Path):
    """Load a tokenizer saved in a local directory. Hub names are refused: nothing is downloaded."""
    from transformers import AutoTokenizer

    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"tokenizer directory not found: {path}. Train one with "
                          f"`efficient-bert train-tokenizer --in_root CORPUS --out {path}` "
                          "or point tokenizer.path at a tokenizer saved with save_pretrained")
    tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    for name in ("pad_token_id", "mask_token_id"):
        if getattr(tokenizer, name) is None:
            raise ValueError(f"tokenizer at {path} has no {name.removesuffix('_id')} token; MLM needs both "
                              "[PAD] and [MASK]")
    return tokenizer


def main(argv: Optional[list[str]] = None) -> None:
    from efficient_bert.data.corpus import BadInputError, find_split_files, iter_documents

    parser = argparse.ArgumentParser(prog="efficient-bert train-tokenizer",
                                     description="Train a WordPiece tokenizer on a local corpus.")
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--in_root", help="corpus directory (same layout convert_c4.py reads)")
    src.add_argument("--files", nargs="+", help="explicit corpus files")
    parser.add_argument("--split", default="train", help="split to read under --in_root (default: train)")
    parser.add_argument("--out", required=True, help="output directory for the tokenizer")
    parser.add_argument("--vocab_size", type=int, default=30522)
    parser.add_argument("--cased", action="store_true", help="keep case and accents")
    parser.add_argument("--max_docs", type=int, default=None)
    parser.add_argument("--text_key", default="text")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)

    files = [Path(f) for f in args.files] if args.files else find_split_files(Path(args.in_root), args.split)
    if not files:
        parser.error(f"no corpus files for split '{args.split}' under {args.in_root}")
    docs = iter_documents(files, args.text_key)
    if args.max_docs is not None:
        docs = (d for i, d in zip(range(args.max_docs), docs))
    try:
        tok = train_wordpiece(docs, args.out, args.vocab_size, lowercase=not args.cased, overwrite=args.overwrite)
    except (BadInputError, FileExistsError) as exc:
        raise SystemExit(f"error: {exc}") from None
    print(f"tokenizer: {len(tok)} tokens from {len(files)} file(s) -> {args.out}")


if __name__ == "__main__":
    main()
