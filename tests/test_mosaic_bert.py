"""Mosaic BERT on the CPU: backends agree, unpadding is exact, ALiBi extrapolates, HF round trip."""

import pytest
import torch

from efficient_bert.model.mosaic_bert import MosaicBertConfig, MosaicBertForMaskedLM
from efficient_bert.model.mosaic_bert.alibi import alibi_slopes


def tiny(**kw):
    cfg = dict(vocab_size=500, hidden_size=48, num_hidden_layers=2, num_attention_heads=6, intermediate_size=96,
               hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    torch.manual_seed(0)
    return MosaicBertForMaskedLM(MosaicBertConfig(**{**cfg, **kw})).eval()


def batch(b=4, s=24, seed=1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 500, (b, s), generator=g)
    lengths = torch.randint(3, s + 1, (b,), generator=g)
    lengths[0] = s
    mask = (torch.arange(s)[None] < lengths[:, None]).long()
    return ids * mask, mask


def test_alibi_slopes_follow_the_paper():
    assert torch.allclose(alibi_slopes(8), torch.tensor([2.0 ** -(i + 1) for i in range(8)]))
    twelve = [2.0 ** -(i + 1) for i in range(8)] + [2.0 ** -(0.5 * (2 * i + 1)) for i in range(4)]
    assert torch.allclose(alibi_slopes(12), torch.tensor(twelve))


def test_backends_agree_with_eager():
    ids, mask = batch()
    ref = tiny(attention="eager").bert(ids, mask)
    out = tiny(attention="sdpa").bert(ids, mask)
    assert torch.allclose(out, ref, atol=1e-5)


def test_unpadded_batch_equals_each_sequence_alone():
    model = tiny()
    ids, mask = batch()
    together = model.bert(ids, mask)
    for row in range(ids.shape[0]):
        n = int(mask[row].sum())
        alone = model.bert(ids[row:row + 1, :n])
        assert torch.allclose(together[row, :n], alone[0], atol=1e-5)
        assert (together[row, n:] == 0).all()


def test_sparse_prediction_loss_and_gradients_reach_every_parameter():
    model = tiny().train()
    ids, mask = batch()
    labels = torch.full_like(ids, -100)
    labels[:, 1] = ids[:, 1]
    out = model(ids, mask, labels=labels)
    assert out.logits.shape == (4, 512)  # 4 labelled positions; vocab padded to a multiple of 64
    dense = model(ids, mask).logits[:, 1]
    assert torch.allclose(out.logits, dense, atol=1e-5)
    assert torch.isclose(out.loss, torch.nn.functional.cross_entropy(dense, ids[:, 1]), atol=1e-5)
    out.loss.backward()
    assert [n for n, p in model.named_parameters() if p.grad is None] == []


def test_alibi_extrapolates_to_longer_sequences():
    model = tiny()
    ids = torch.randint(5, 500, (2, 512))
    labels = torch.where(torch.rand(ids.shape) < 0.3, ids, torch.full_like(ids, -100))
    assert torch.isfinite(model(ids, labels=labels).loss)


def test_hf_round_trip_is_exact(tmp_path):
    model = tiny()
    model.save_pretrained(tmp_path)
    again = MosaicBertForMaskedLM.from_pretrained(tmp_path).eval()
    ids, mask = batch()
    assert torch.equal(model(ids, mask).logits, again(ids, mask).logits)


@pytest.mark.parametrize("kw, message", [(dict(hidden_size=50), "divisible"), (dict(attention="flashy"), "unknown attention")])
def test_bad_config_is_a_clear_error(kw, message):
    with pytest.raises(ValueError, match=message):
        MosaicBertConfig(**{"num_attention_heads": 6, "hidden_size": 48, **kw})
