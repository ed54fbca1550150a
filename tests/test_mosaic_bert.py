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


@pytest.mark.parametrize("backend", ["sdpa", "flex"])
def test_backends_agree_with_eager(backend):
    # 9 rows of up to 100 tokens: FlexAttention's 128-token tiles then hold several documents
    ids, mask = batch(b=9, s=100, seed=3)
    with torch.no_grad():  # FlexAttention has no CPU backward; the Triton backend is tested in test_kernels.py
        ref = tiny(attention="eager").bert(ids, mask).last_hidden_state
        out = tiny(attention=backend).bert(ids, mask).last_hidden_state
    assert torch.allclose(out, ref, atol=1e-5)


def test_auto_backend_choice():
    from efficient_bert.model.mosaic_bert.attention import BackendPlan, backend_for_device

    assert backend_for_device("auto", torch.device("cpu")) == "sdpa"
    with pytest.raises(ValueError, match="no attention dropout"):
        backend_for_device("flex", dropout_p=0.1)
    with pytest.raises(ValueError, match="at most 128 tokens"):
        BackendPlan("triton", None).backend_for_batch(256)  # the one place the length limit is checked


def test_backends_are_resolved_once_per_device_and_mode_with_an_explicit_long_batch_fallback():
    from efficient_bert.model.mosaic_bert.attention import BackendPlan

    model = tiny()
    ids, mask = batch()
    model.train().bert(ids, mask)
    model.bert(ids, mask)
    model.eval().bert(ids, mask)
    cpu = torch.device("cpu")
    assert model.bert._resolved == {(cpu, True): (BackendPlan("sdpa", "sdpa"), False),
                                    (cpu, False): (BackendPlan("sdpa", "sdpa"), False)}
    assert BackendPlan("triton", "flex").backend_for_batch(128) == "triton"
    assert BackendPlan("triton", "flex").backend_for_batch(129) == "flex"  # auto: FlexAttention takes long batches
    # auto where FlashAttention-4 runs: it takes long batches in half precision only
    with_fa4 = BackendPlan("triton", "flex", "flash_attn")
    assert with_fa4.backend_for_batch(128, torch.bfloat16) == "triton"
    assert with_fa4.backend_for_batch(129, torch.bfloat16) == with_fa4.backend_for_batch(129, torch.float16) == "flash_attn"
    assert with_fa4.backend_for_batch(129, torch.float32) == "flex"
    with pytest.raises(ValueError, match="at most 128 tokens, this batch has 300; choose attention: auto"):
        BackendPlan("triton", None).backend_for_batch(300)  # attention: triton named explicitly
    # the fp32 tile's backward does not fit an A100's 163 KiB of shared memory per block, an H100's 227 KiB
    a100, h100 = 166_912, 232_448
    assert BackendPlan("triton", "flex", shared_memory=a100).backend_for_batch(128, torch.bfloat16) == "triton"
    assert BackendPlan("triton", "flex", "flash_attn", a100).backend_for_batch(128, torch.float32) == "flex"
    assert BackendPlan("triton", "flex", shared_memory=h100).backend_for_batch(128, torch.float32) == "triton"
    with pytest.raises(ValueError, match="'triton' in torch.float32 needs 224 KiB of shared memory per block, "
                                         "this GPU has 163 KiB; train in bf16"):
        BackendPlan("triton", None, shared_memory=a100).backend_for_batch(128, torch.float32)


def test_prenorm_layers_compute_the_textbook_pre_ln_residual_stream():
    # x <- x + attention(norm1(x)); x <- x + mlp(norm2(x)); then a final norm: the layers hand each MLP
    # output on unadded (the add runs in the next norm), which must not change the result
    model = tiny(prenorm=True)
    ids, mask = batch()
    bert = model.bert
    with torch.no_grad():
        out, inputs = bert.encode(ids, mask)
        x = bert.embedding_norm(bert.word_embeddings(ids.flatten()[inputs.info.indices])
                                + bert.token_type_embeddings.weight[0])
        for layer in bert.layers:
            x = x + layer.attention(layer.attn_norm(x), inputs)
            x = x + layer.mlp(layer.mlp_norm(x), False)
        assert torch.allclose(out, bert.final_norm(x), atol=1e-5)


def test_unpadded_batch_equals_each_sequence_alone():
    model = tiny()
    ids, mask = batch()
    together = model.bert(ids, mask).last_hidden_state
    for row in range(ids.shape[0]):
        n = int(mask[row].sum())
        alone = model.bert(ids[row:row + 1, :n]).last_hidden_state
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
    # no position table: a 512-token batch (4x the 128 of pretraining) runs, the backends agree on it,
    # and a sequence padded inside it is encoded exactly as when it is alone
    ids, mask = batch(b=2, s=512, seed=4)
    mask[1, 300:] = 0
    ids = ids * mask
    with torch.no_grad():
        eager = tiny(attention="eager").bert(ids, mask).last_hidden_state
        sdpa = tiny(attention="sdpa").bert(ids, mask).last_hidden_state
        alone = tiny(attention="eager").bert(ids[1:, :300], mask[1:, :300]).last_hidden_state
    assert eager.shape == (2, 512, 48)
    assert torch.allclose(sdpa, eager, atol=1e-5)
    assert torch.allclose(eager[1, :300], alone[0], atol=1e-5)


def test_hf_round_trip_is_exact(tmp_path):
    model = tiny()
    model.save_pretrained(tmp_path)
    again = MosaicBertForMaskedLM.from_pretrained(tmp_path).eval()
    ids, mask = batch()
    assert torch.equal(model(ids, mask).logits, again(ids, mask).logits)


@pytest.mark.parametrize("kw, message", [(dict(hidden_size=50), "divisible"), (dict(attention="flashy"), "unknown attention"),
                                         (dict(kernels="cuda"), "unknown kernels"),
                                         (dict(attention="triton", attention_probs_dropout_prob=0.1), "no attention dropout")])
def test_bad_config_is_a_clear_error(kw, message):
    with pytest.raises(ValueError, match=message):
        MosaicBertConfig(**{"num_attention_heads": 6, "hidden_size": 48, **kw})


def test_auto_classes_load_our_exports(tmp_path):
    from transformers import AutoConfig, AutoModel, AutoModelForMaskedLM, AutoModelForSequenceClassification

    from efficient_bert.model.mosaic_bert import MosaicBertForSequenceClassification, MosaicBertModel

    model = tiny()
    model.save_pretrained(tmp_path)
    assert AutoConfig.from_pretrained(tmp_path).model_type == "mosaic_bert"
    assert isinstance(AutoModelForMaskedLM.from_pretrained(tmp_path), MosaicBertForMaskedLM)
    encoder = AutoModel.from_pretrained(tmp_path).eval()
    assert isinstance(encoder, MosaicBertModel)
    ids, mask = batch()
    assert torch.equal(encoder(ids, mask).last_hidden_state, model.bert(ids, mask).last_hidden_state)
    classifier = AutoModelForSequenceClassification.from_pretrained(tmp_path, num_labels=2)
    assert isinstance(classifier, MosaicBertForSequenceClassification)
    assert torch.equal(classifier.bert.word_embeddings.weight, model.bert.word_embeddings.weight)


@pytest.mark.parametrize("num_labels, labels, problem", [
    (3, torch.tensor([0, 2, 1, 1]), "single_label_classification"),
    (1, torch.tensor([0.5, 1.0, 4.0, 2.5]), "regression"),
    (2, torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0]]), "multi_label_classification"),
])
def test_sequence_classification_losses_follow_hf(num_labels, labels, problem):
    from efficient_bert.model.mosaic_bert import MosaicBertForSequenceClassification

    torch.manual_seed(0)
    cfg = tiny().config
    cfg.num_labels = num_labels
    model = MosaicBertForSequenceClassification(cfg).eval()
    ids, mask = batch()
    out = model(ids, mask, labels=labels)
    assert out.logits.shape == (4, num_labels) and model.config.problem_type == problem
    # the pooled token is each row's first token: a row alone gives the same logits
    alone = model(ids[1:2, :int(mask[1].sum())]).logits
    assert torch.allclose(alone, out.logits[1:2], atol=1e-5)
    with pytest.raises(ValueError, match="right padding"):
        model(ids, mask.flip(1))


def test_training_flops_count_sparse_prediction_exactly():
    from efficient_bert.model.flops import mlm_training_flops

    model = tiny()  # hidden 48, 2 layers, GLU 96, vocab padded to 512
    mask = torch.zeros(2, 24, dtype=torch.long)
    mask[0, :24], mask[1, :10] = 1, 1
    labels = torch.full((2, 24), -100)
    labels[0, :3], labels[1, :2] = 7, 7
    per_layer = 48 * 144 + 48 * 48 + 48 * 192 + 96 * 48  # qkv, attention out, GLU in, GLU out
    encoder, head, attention = 2 * 2 * per_layer * 34, 2 * (48 + 512) * 48 * 5, 4 * 48 * 2 * (24 ** 2 + 10 ** 2)
    assert mlm_training_flops(model, mask, labels) == 3 * (encoder + head + attention)
    assert mlm_training_flops(model, mask, labels, [24, 10], [3, 2]) == 3 * (encoder + head + attention)


def test_host_counts_give_the_same_step_and_are_checked():
    """seq_lengths/masked_counts (the collator's host-side counts) only spare a sync; outputs are equal."""
    from transformers import BertConfig, BertForMaskedLM

    from efficient_bert.model.composer_mlm import model_inputs

    model = tiny().train()
    ids, mask = batch()
    labels = torch.where(torch.rand(ids.shape, generator=torch.Generator().manual_seed(3)) < 0.3, ids, -100)
    labels[mask == 0] = -100
    counts = dict(seq_lengths=mask.sum(1).tolist(), masked_counts=(labels != -100).sum(1).tolist())
    torch.manual_seed(5)
    plain = model(ids, mask, labels=labels)
    torch.manual_seed(5)
    counted = model(ids, mask, labels=labels, **counts)
    assert torch.equal(plain.logits, counted.logits) and torch.equal(plain.loss, counted.loss)
    with pytest.raises(ValueError, match="seq_lengths"):
        model(ids, mask, labels=labels, seq_lengths=[24] * 4)
    with pytest.raises(ValueError, match="masked_counts"):
        model(ids, mask, labels=labels, seq_lengths=counts["seq_lengths"], masked_counts=[0, 0, 0, 1])

    full = dict(input_ids=ids, attention_mask=mask, labels=labels, sample_id=torch.arange(4), **counts)
    assert sorted(model_inputs(model, full)) == ["attention_mask", "input_ids", "labels", "masked_counts",
                                                 "seq_lengths"]
    hf = BertForMaskedLM(BertConfig(vocab_size=500, hidden_size=48, num_hidden_layers=1, num_attention_heads=6,
                                    intermediate_size=96))
    assert sorted(model_inputs(hf, full)) == ["attention_mask", "input_ids", "labels"]
    assert sorted(model_inputs(torch.compile(hf), full)) == ["attention_mask", "input_ids", "labels"]


def metric_inputs(tokenizer, device: str = "cpu"):
    """A tiny Mosaic BERT's training outputs on a batch of real text, both on ``device``."""
    from conftest import mlm_batch, tiny_mosaic

    model = tiny_mosaic().to(device)
    batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in mlm_batch(tokenizer).items()}
    return model, batch, model(batch)


def test_train_metrics_are_composers_counted_without_selecting_the_labelled_positions(tokenizer):
    from composer.metrics.nlp import MaskedAccuracy as ComposersMaskedAccuracy

    model, batch, outputs = metric_inputs(tokenizer)
    labels = batch["labels"]
    assert torch.equal(outputs.labels, labels[labels != -100])  # the sparse logits' rows, in order
    ours, theirs = model.train_metrics["MaskedAccuracy"], ComposersMaskedAccuracy()
    model.update_metric(batch, outputs, ours)
    theirs.update(outputs.logits, labels[labels != -100])
    assert int(ours.total) == int(theirs.total) == sum(batch["masked_counts"])
    assert int(ours.correct) == int(theirs.correct) and ours.compute() == theirs.compute()
    # HF BERT's logits: one row per position, unlabelled ones included; the even positions predict
    # their target, the odd ones the next class
    targets = torch.where(labels == -100, labels, labels % 7)
    even = (torch.arange(labels.numel()) % 2 == 0).view(labels.shape)
    dense = torch.nn.functional.one_hot((targets.clamp(min=0) + (~even).long()) % 7, 7).float()
    ours.reset()
    theirs.reset()
    ours.update(dense, targets)
    theirs.update(dense, targets)
    labelled = labels != -100
    assert int(ours.correct) == int(theirs.correct) == int((labelled & even).sum()) > 0
    assert int(ours.total) == int(theirs.total) == int(labelled.sum())
    with pytest.raises(ValueError, match="one target per row of logits"):
        ours.update(outputs.logits, labels)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_train_metric_updates_never_wait_for_the_gpu(tokenizer):
    model, batch, outputs = metric_inputs(tokenizer, "cuda")
    metrics = {name: metric.to("cuda") for name, metric in model.train_metrics.items()}
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for metric in metrics.values():
            model.update_metric(batch, outputs, metric)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert int(metrics["MaskedAccuracy"].total) == sum(batch["masked_counts"])


def test_layers_without_linear_biases_train_and_round_trip(tmp_path):
    model = tiny(linear_bias=False).train()
    names = {name for name, _ in model.named_parameters()}
    assert not {n for n in names if n.endswith(("qkv.bias", "attn_out.bias", "mlp_out.bias"))}
    assert {n for n in names if n.endswith("norm.bias")}  # the LayerNorms keep theirs
    assert sum(p.numel() for p in tiny().parameters()) - sum(p.numel() for p in model.parameters()) == 2 * 5 * 48
    ids, mask = batch()
    model(ids, mask, labels=torch.where(mask.bool(), ids, -100)).loss.backward()
    assert [n for n, p in model.named_parameters() if p.grad is None] == []
    model.save_pretrained(tmp_path)
    again = MosaicBertForMaskedLM.from_pretrained(tmp_path).eval()
    assert again.config.linear_bias is False
    assert torch.equal(model.eval()(ids, mask).logits, again(ids, mask).logits)
