"""The ModernBERT architecture on our fast path: transformers' ModernBertForMaskedLM computes the same
function from our saved folder, which it loads natively; every attention backend agrees."""

from __future__ import annotations

import pytest
import torch

from conftest import mlm_batch, perturbed

# tiny, and a window of +-8 tokens inside rows of up to 40: the local layers see only part of a row
TINY = dict(size="tiny", local_attention=16, global_attn_every_n_layers=2, num_hidden_layers=3)


def fast(tokenizer, attention="sdpa", seed=0, **kw):
    """Our model with every parameter moved off its initial value (norm weights off 1), in eval mode."""
    from efficient_bert.model.modernbert import build_modernbert

    torch.manual_seed(seed)
    return perturbed(build_modernbert(tokenizer, attention=attention, kernels="torch", **{**TINY, **kw}).model, seed)


@pytest.fixture(scope="module")
def batch(tokenizer):
    b = mlm_batch(tokenizer, rows=4, seq=40)
    assert not b["attention_mask"].bool().all()  # rows of different lengths: padding is exercised
    return b


def test_transformers_loads_our_folder_natively_and_computes_our_logits(tmp_path, tokenizer, batch):
    from transformers import AutoModelForMaskedLM, ModernBertForMaskedLM

    ours = fast(tokenizer)
    ours.save_pretrained(tmp_path)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    real = mask.bool()
    for implementation in ("sdpa", "eager"):
        theirs = AutoModelForMaskedLM.from_pretrained(tmp_path, attn_implementation=implementation).eval()
        assert type(theirs) is ModernBertForMaskedLM  # transformers' own class: no custom code
        with torch.no_grad():
            expected = theirs(input_ids=ids, attention_mask=mask).logits
            got = ours(ids, mask).logits
        # float32 on CPU: only the summation order differs (logits of magnitude up to about 20)
        torch.testing.assert_close(got[real], expected[real], atol=1e-4, rtol=0)
    with torch.no_grad():  # the sparse head's loss is theirs over the labelled tokens
        loss = ours(ids, mask, labels=batch["labels"]).loss
        expected = theirs(input_ids=ids, attention_mask=mask, labels=batch["labels"]).loss
    torch.testing.assert_close(loss, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("backend", ["sdpa", "flex"])
def test_backends_agree_with_eager(tokenizer, batch, backend):
    ids, mask = batch["input_ids"], batch["attention_mask"]
    with torch.no_grad():  # the Triton kernel's window is tested in test_kernels.py
        ref = fast(tokenizer, "eager").model(ids, mask).last_hidden_state
        out = fast(tokenizer, backend).model(ids, mask).last_hidden_state
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)


def test_local_layers_see_only_their_window(tokenizer):
    """A token beyond every local window changes the first token's output only through a global layer."""
    from efficient_bert.model.modernbert.modeling import GLOBAL, LOCAL, layer_types

    local = fast(tokenizer, global_attn_every_n_layers=100)  # layer 0 global, then only local layers
    assert layer_types(local.config) == [GLOBAL, LOCAL, LOCAL]
    ids = torch.randint(5, len(tokenizer), (1, 40), generator=torch.Generator().manual_seed(1))
    changed = ids.clone()
    changed[0, 39] = (ids[0, 39] + 1) % len(tokenizer)
    with torch.no_grad():
        a, b = (local.model(x).last_hidden_state[0, 0] for x in (ids, changed))
    assert not torch.allclose(a, b)  # layer 0 is global: position 39 reaches position 0
    only_local = fast(tokenizer, global_attn_every_n_layers=100, num_hidden_layers=1,
                      layer_types=[LOCAL])
    with torch.no_grad():
        a, b = (only_local.model(x).last_hidden_state[0, 0] for x in (ids, changed))
    torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_it_trains_through_our_trainer(tmp_path, tokenizer_dir, token_mds):
    """A few steps of tiny-cpu.yaml with model.name: modernbert, through the same trainer and its metrics."""
    from conftest import tiny_run

    run = tiny_run(tokenizer_dir, token_mds, "max_duration=4ba", f"save_folder={tmp_path}",
                   "model={name: modernbert, size: tiny, attention: sdpa, kernels: torch}")
    run.trainer.fit()
    loss = run.trainer.state.eval_metrics["eval"]["LanguageCrossEntropy"].compute()
    assert torch.isfinite(loss) and float(loss) < 8.0
