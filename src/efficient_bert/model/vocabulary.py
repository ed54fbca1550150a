"""How many token ids a model's embedding holds: at least its tokenizer's."""

from __future__ import annotations

from typing import Any, Optional

from efficient_bert.errors import ArgumentError


def vocabulary_size(tokenizer: Any, vocab_size: Optional[int] = None) -> int:
    """The tokenizer's size, or ``vocab_size`` when one is asked for: never fewer ids than the
    tokenizer gives, or some of its ids would index past the embedding."""
    if vocab_size is None:
        return len(tokenizer)
    if not isinstance(vocab_size, int) or vocab_size < len(tokenizer):
        raise ArgumentError("vocab_size", f"the tokenizer has {len(tokenizer)} ids, more than vocab_size "
                                          f"{vocab_size}: leave vocab_size out (it comes from the tokenizer)")
    return vocab_size
