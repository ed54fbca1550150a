import pytest

from efficient_bert.data.tokenizer import SPECIAL_TOKENS, load_tokenizer, train_wordpiece
from efficient_bert.errors import ConfigError
from efficient_bert.pretrain.registry import config_errors


def test_trained_wordpiece_has_requested_vocab_and_bert_specials(tokenizer):
    assert len(tokenizer) == 2000
    assert [tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS] == [0, 1, 2, 3, 4]
    assert (tokenizer.pad_token_id, tokenizer.mask_token_id) == (0, 4)


def test_encoding_wraps_in_cls_sep_and_decodes_back(tokenizer):
    ids = tokenizer("The European lobster is blue.")["input_ids"]
    assert ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id
    assert tokenizer.unk_token_id not in ids
    assert tokenizer.decode(ids, skip_special_tokens=True) == "the european lobster is blue."


def test_refuses_to_overwrite_and_missing_dir_is_a_clear_error(tokenizer_dir, tmp_path):
    with pytest.raises(FileExistsError, match="not empty"):
        train_wordpiece(["a b c"], tokenizer_dir, vocab_size=100)
    with pytest.raises(FileNotFoundError, match="tokenizer directory not found: .*train-tokenizer"):
        load_tokenizer(tmp_path / "nope")
    with pytest.raises(ConfigError, match="^tokenizer.path: tokenizer directory not found: "), \
            config_errors("tokenizer.path"):  # what a run's config layer makes of it
        load_tokenizer(tmp_path / "nope")


def test_the_same_vocabulary_always_gets_the_same_ids(tokenizer, tmp_path):
    """Ids in canonical order: the specials, then code-point order; a second training on the same
    text gives the same ids and the same vocabulary digest."""
    from conftest import sample_documents
    from efficient_bert.data.tokenizer import vocabulary_digest

    vocab = tokenizer.get_vocab()
    ordered = sorted(vocab, key=vocab.__getitem__)
    assert ordered[:5] == SPECIAL_TOKENS and ordered[5:] == sorted(ordered[5:])
    again = train_wordpiece(sample_documents("train"), tmp_path / "again", vocab_size=2000)
    assert again.get_vocab() == vocab and vocabulary_digest(again) == vocabulary_digest(tokenizer)
    assert again("The European lobster is blue.")["input_ids"] == tokenizer("The European lobster is blue.")["input_ids"]
