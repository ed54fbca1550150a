"""Triton kernels against their PyTorch references, forward and backward.

They run on a GPU. Without one, ``test_kernels_in_triton_interpreter`` runs this same file again
under ``TRITON_INTERPRET=1``, which executes the kernels on CPU tensors (slowly, on small shapes).
"""

import os
import subprocess
import sys

import pytest
import torch

from efficient_bert.kernels import (add_layer_norm, add_layer_norm_and_sum, add_layer_norm_and_sum_reference,
                                    add_layer_norm_reference, cross_entropy, cross_entropy_reference, geglu,
                                    geglu_reference, short_attention, short_attention_reference, triton_available)
from efficient_bert.model.mosaic_bert.alibi import alibi_slopes

INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
needs_triton_device = pytest.mark.skipif(not triton_available() or not (torch.cuda.is_available() or INTERPRETED),
                                         reason="needs triton and a CUDA GPU (or TRITON_INTERPRET=1)")
ROWS, HIDDEN, INNER = (300, 768, 3072) if DEVICE == "cuda" else (37, 48, 40)
# one bf16 rounding step at the output's magnitude; float32 agrees to accumulation order
TOLERANCE = {torch.float32: 1e-4, torch.bfloat16: 6e-2}
# the model tests: TF32 dot products in the attention kernel on the GPU
MODEL_ATOL = 2e-3 if DEVICE == "cuda" else 1e-5


def _grads(out, inputs, grad):
    return torch.autograd.grad(out, inputs, grad)


def _assert_grads_close(out, ref, inputs, grad, dtype):
    for a, b in zip(_grads(out, inputs, grad), _grads(ref, inputs, grad)):
        assert a.dtype == b.dtype
        # weight/bias gradients sum over rows: scale the tolerance with the row count
        atol = TOLERANCE[dtype] * (ROWS if a.dim() == 1 else 1) ** 0.5
        assert torch.allclose(a.float(), b.float(), atol=atol, rtol=TOLERANCE[dtype])


def _close(a, b, dtype):
    return torch.allclose(a.float(), b.float(), atol=TOLERANCE[dtype], rtol=TOLERANCE[dtype])


def _assert_attention_close(out, ref, qkv, g):
    """Attention output and its gradient in ``qkv`` against the reference's."""
    dtype = qkv.dtype
    # float32 dot products run as TF32 on the GPU
    tol = TOLERANCE[dtype] if DEVICE == "cpu" or dtype == torch.bfloat16 else 1e-2
    assert torch.allclose(out.float(), ref.float(), atol=tol, rtol=tol)
    grad = torch.randn(out.shape, device=DEVICE, generator=g).to(dtype)
    (a,), (b,) = _grads(out, [qkv], grad), _grads(ref, [qkv], grad)
    assert torch.allclose(a.float(), b.float(), atol=2 * tol, rtol=2 * tol)


@needs_triton_device
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("with_residual", [False, True])
def test_add_layer_norm_matches_reference(dtype, with_residual):
    g = torch.Generator(device=DEVICE).manual_seed(0)
    x = torch.randn(ROWS, HIDDEN, device=DEVICE, generator=g).to(dtype).requires_grad_()
    residual = torch.randn(ROWS, HIDDEN, device=DEVICE, generator=g).to(dtype).requires_grad_() if with_residual else None
    weight = (1 + 0.1 * torch.randn(HIDDEN, device=DEVICE, generator=g)).requires_grad_()
    bias = (0.1 * torch.randn(HIDDEN, device=DEVICE, generator=g)).requires_grad_()
    out = add_layer_norm(x, weight, bias, 1e-12, residual)
    ref = add_layer_norm_reference(x, weight, bias, 1e-12, residual)
    assert out.dtype == dtype and _close(out, ref, dtype)
    inputs = [t for t in (x, residual, weight, bias) if t is not None]
    grad = torch.randn(out.shape, device=DEVICE, generator=g).to(dtype)
    _assert_grads_close(out, ref, inputs, grad, dtype)


@needs_triton_device
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_add_layer_norm_and_sum_matches_reference_through_both_outputs(dtype):
    g = torch.Generator(device=DEVICE).manual_seed(7)
    x, residual = (torch.randn(ROWS, HIDDEN, device=DEVICE, generator=g).to(dtype).requires_grad_() for _ in range(2))
    weight = (1 + 0.1 * torch.randn(HIDDEN, device=DEVICE, generator=g)).requires_grad_()
    bias = (0.1 * torch.randn(HIDDEN, device=DEVICE, generator=g)).requires_grad_()
    out, total = add_layer_norm_and_sum(x, weight, bias, 1e-12, residual)
    ref, ref_total = add_layer_norm_and_sum_reference(x, weight, bias, 1e-12, residual)
    assert out.dtype == total.dtype == dtype and _close(out, ref, dtype) and _close(total, ref_total, dtype)
    # the sum's own gradient (a pre-LN residual stream's) joins the norm's
    dy, ds = (torch.randn(ROWS, HIDDEN, device=DEVICE, generator=g).to(dtype) for _ in range(2))
    _assert_grads_close([out, total], [ref, ref_total], [x, residual, weight, bias], [dy, ds], dtype)


@needs_triton_device
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("with_bias", [False, True])
def test_geglu_matches_reference(dtype, with_bias):
    g = torch.Generator(device=DEVICE).manual_seed(1)
    h = (2 * torch.randn(ROWS, 2 * INNER, device=DEVICE, generator=g)).to(dtype).requires_grad_()
    bias = torch.randn(2 * INNER, device=DEVICE, generator=g).requires_grad_() if with_bias else None
    out, ref = geglu(h, bias), geglu_reference(h, bias)
    assert out.shape == (ROWS, INNER) and out.dtype == dtype and _close(out, ref, dtype)
    inputs = [t for t in (h, bias) if t is not None]
    grad = torch.randn(out.shape, device=DEVICE, generator=g).to(dtype)
    _assert_grads_close(out, ref, inputs, grad, dtype)


@needs_triton_device
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("local", [False, True], ids=["alibi", "local-window-no-bias"])
def test_short_attention_matches_reference(dtype, local):
    if dtype == torch.bfloat16 and DEVICE == "cpu":
        pytest.skip("the Triton interpreter computes bf16 dot products wrongly")
    lengths = [128, 5, 77, 1, 128, 64, 100] if DEVICE == "cuda" else [20, 5, 17, 1, 32]
    heads, dim = (12, 64) if DEVICE == "cuda" else (3, 16)
    cu_seqlens = torch.tensor([0] + lengths, device=DEVICE).cumsum(0).int()
    g = torch.Generator(device=DEVICE).manual_seed(2)
    qkv = torch.randn(sum(lengths), 3 * heads * dim, device=DEVICE, generator=g).to(dtype).requires_grad_()
    # local: ModernBERT's sliding window (+-64 of 128 tokens; +-6 of the CPU's 32), rotary positions: no bias
    slopes = torch.zeros(heads, device=DEVICE) if local else alibi_slopes(heads).to(DEVICE)
    window = (64 if DEVICE == "cuda" else 6) if local else None
    out = short_attention(qkv, heads, cu_seqlens, slopes, max(lengths), window=window)
    ref = short_attention_reference(qkv, heads, cu_seqlens, slopes, window)
    _assert_attention_close(out, ref, qkv, g)


@needs_triton_device
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_short_attention_over_packed_rows_keeps_each_document_apart(dtype):
    if dtype == torch.bfloat16 and DEVICE == "cpu":
        pytest.skip("the Triton interpreter computes bf16 dot products wrongly")
    # rows of several documents (one full, one a single document, one of three 1-token ones)
    rows = ([[60, 5, 63], [128], [1, 1, 1], [30, 77, 21]] if DEVICE == "cuda"
            else [[9, 5, 3], [32], [1, 1, 1], [12, 20]])
    heads, dim = (12, 64) if DEVICE == "cuda" else (3, 16)
    documents = [n for row in rows for n in row]
    doc_cu = torch.tensor([0] + documents, device=DEVICE).cumsum(0).int()
    row_cu = torch.tensor([0] + [sum(row) for row in rows], device=DEVICE).cumsum(0).int()
    document_of = torch.repeat_interleave(torch.arange(len(documents), device=DEVICE),
                                          torch.tensor(documents, device=DEVICE))
    g = torch.Generator(device=DEVICE).manual_seed(6)
    qkv = torch.randn(sum(documents), 3 * heads * dim, device=DEVICE, generator=g).to(dtype).requires_grad_()
    slopes = alibi_slopes(heads).to(DEVICE)
    out = short_attention(qkv, heads, row_cu, slopes, max(sum(row) for row in rows), document_of)
    ref = short_attention_reference(qkv, heads, doc_cu, slopes)
    _assert_attention_close(out, ref, qkv, g)


@needs_triton_device
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cross_entropy_matches_reference(dtype):
    vocab = 30528 if DEVICE == "cuda" else 5000  # several column blocks and a ragged last one
    g = torch.Generator(device=DEVICE).manual_seed(5)
    logits = (8 * torch.randn(ROWS, vocab, device=DEVICE, generator=g)).to(dtype).requires_grad_()
    labels = torch.randint(0, vocab, (ROWS,), device=DEVICE, generator=g)
    labels[::7] = -100  # ignored rows
    labels[1], labels[2] = 0, vocab - 1
    per_row = cross_entropy(logits, labels, reduction="none")
    expected = cross_entropy_reference(logits, labels, reduction="none")
    assert per_row.dtype == torch.float32 and torch.allclose(per_row, expected, atol=1e-4, rtol=1e-5)
    assert torch.equal(per_row[::7], torch.zeros_like(per_row[::7]))
    loss, ref = cross_entropy(logits, labels), cross_entropy_reference(logits, labels)
    assert torch.allclose(loss, ref, atol=1e-5, rtol=1e-5)
    assert torch.allclose(cross_entropy(logits, labels, reduction="sum"), per_row.sum())
    (a,), (b,) = torch.autograd.grad(3 * loss, [logits]), torch.autograd.grad(3 * ref, [logits])
    assert a.dtype == dtype and torch.equal(a[::7], torch.zeros_like(a[::7]))
    # one rounding of the gradient to the logits' dtype
    assert torch.allclose(a.float(), b.float(), atol=1e-7 if dtype == torch.float32 else 1e-5, rtol=TOLERANCE[dtype])


def _triton_and_torch_models(**config):
    """A small Mosaic BERT on our Triton kernels and the same weights on torch kernels with eager attention."""
    from efficient_bert.model.mosaic_bert import MosaicBertConfig, MosaicBertForMaskedLM

    size = dict(vocab_size=500, hidden_size=48, num_hidden_layers=2, num_attention_heads=6, intermediate_size=40,
                hidden_dropout_prob=0.0, **config)
    torch.manual_seed(0)
    fused = MosaicBertForMaskedLM(MosaicBertConfig(kernels="triton", attention="triton", **size)).to(DEVICE)
    plain = MosaicBertForMaskedLM(MosaicBertConfig(kernels="torch", attention="eager", **size)).to(DEVICE)
    plain.load_state_dict(fused.state_dict())
    return fused, plain


@needs_triton_device
@pytest.mark.parametrize("prenorm", [False, True])
def test_model_with_triton_kernels_matches_torch_kernels(prenorm):
    fused, plain = _triton_and_torch_models(prenorm=prenorm)
    ids = torch.randint(5, 500, (3, 20), device=DEVICE)
    mask = (torch.arange(20, device=DEVICE)[None] < torch.tensor([[20], [7], [13]], device=DEVICE)).long()
    labels = torch.where(torch.rand(ids.shape, device=DEVICE) < 0.3, ids, -100)
    labels[:, 0] = ids[:, 0]
    losses = []
    for model in (fused, plain):
        loss = model(ids, mask, labels=labels).loss
        loss.backward()
        losses.append(loss)
    assert torch.allclose(losses[0], losses[1], atol=MODEL_ATOL)
    for (name, a), b in zip(fused.named_parameters(), plain.parameters()):
        assert torch.allclose(a.grad, b.grad, atol=MODEL_ATOL), name


@needs_triton_device
def test_model_with_the_triton_kernel_attends_within_each_packed_document():
    fused, plain = (model.eval() for model in _triton_and_torch_models())
    documents = [[9, 5, 3], [20], [1, 1, 6]]
    mask = torch.zeros(3, 20, dtype=torch.long)
    for r, row in enumerate(documents):  # documents numbered 1, 2, ... in their row, as the collator packs them
        mask[r, :sum(row)] = torch.repeat_interleave(torch.arange(1, len(row) + 1), torch.tensor(row))
    ids, mask = (torch.randint(5, 500, (3, 20)) * (mask > 0)).to(DEVICE), mask.to(DEVICE)
    info = fused.bert.locate_tokens(ids, mask, document_lengths=documents)
    assert info.max_row_tokens == 20 and info.row_cu_seqlens.tolist() == [0, 17, 37, 45]
    with torch.no_grad():
        out = fused.bert(ids, mask, document_lengths=documents).last_hidden_state
        ref = plain.bert(ids, mask, document_lengths=documents).last_hidden_state
    assert torch.allclose(out, ref, atol=MODEL_ATOL)


@pytest.mark.skipif(torch.cuda.is_available() or INTERPRETED or not triton_available(),
                    reason="runs the kernels through the interpreter only when there is no GPU")
def test_kernels_in_triton_interpreter(tmp_path):
    import xml.etree.ElementTree as ET

    env = {**os.environ, "TRITON_INTERPRET": "1"}
    report = tmp_path / "interpreted.xml"
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__,
                             "-k", "not interpreter", f"--junitxml={report}"], env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    outcomes: dict[str, list[str]] = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        skipped = case.find("skipped")
        outcome = "passed" if skipped is None else f"skipped: {skipped.get('message')}"
        outcomes.setdefault(case.get("name").split("[")[0], []).append(outcome)
    # every kernel test runs on the interpreted kernels; what skips is a test that needs a real GPU, or a
    # bf16 case the interpreter computes wrongly (its fp32 case passes)
    for name in ("test_add_layer_norm_matches_reference", "test_add_layer_norm_and_sum_matches_reference_through_both_outputs",
                 "test_geglu_matches_reference",
                 "test_short_attention_matches_reference", "test_short_attention_over_packed_rows_keeps_each_document_apart",
                 "test_cross_entropy_matches_reference",
                 "test_model_with_triton_kernels_matches_torch_kernels",
                 "test_model_with_the_triton_kernel_attends_within_each_packed_document"):
        assert "passed" in outcomes.get(name, []), (name, outcomes.get(name))
    skips = {o for results in outcomes.values() for o in results if o != "passed"}
    assert skips <= {"skipped: needs a CUDA GPU",
                     "skipped: the Triton interpreter computes bf16 dot products wrongly"}, skips


@needs_triton_device
def test_fused_dropout_is_consistent_between_forward_and_backward():
    g = torch.Generator(device=DEVICE).manual_seed(3)
    x = torch.randn(ROWS, HIDDEN, device=DEVICE, generator=g).requires_grad_()
    residual = torch.randn(ROWS, HIDDEN, device=DEVICE, generator=g).requires_grad_()
    weight = torch.ones(HIDDEN, device=DEVICE, requires_grad=True)
    bias = torch.zeros(HIDDEN, device=DEVICE, requires_grad=True)
    p = 0.25
    out = add_layer_norm(x, weight, bias, 1e-12, residual, dropout_p=p)
    grad = torch.randn(out.shape, device=DEVICE, generator=g)
    dx, dresidual = torch.autograd.grad(out, [x, residual], grad)
    kept = dx != 0
    # the branch's gradient is the residual's, masked and scaled by 1 / (1 - p)
    assert torch.allclose(dx[kept], dresidual[kept] / (1 - p), atol=1e-5)
    assert abs(1 - kept.float().mean().item() - p) < (0.03 if DEVICE == "cpu" else 0.005)
    # and the forward used that same mask
    ref = add_layer_norm_reference(torch.where(kept, x / (1 - p), 0.0), weight, bias, 1e-12, residual)
    assert torch.allclose(out, ref, atol=1e-4)
    again = add_layer_norm(x, weight, bias, 1e-12, residual, dropout_p=p)
    assert not torch.equal(out, again)  # a fresh mask on every call


@pytest.mark.skipif(not torch.cuda.is_available() or not triton_available(), reason="needs a CUDA GPU")
def test_training_step_with_host_counts_never_waits_for_the_gpu():
    from efficient_bert.model.mosaic_bert import MosaicBertConfig, MosaicBertForMaskedLM

    torch.manual_seed(0)
    model = MosaicBertForMaskedLM(MosaicBertConfig(vocab_size=500, hidden_size=64, num_hidden_layers=2,
                                                   num_attention_heads=4, intermediate_size=128)).cuda()
    optimizer = torch.optim.AdamW(model.parameters(), fused=True)
    lengths = [32, 9, 20]
    mask = (torch.arange(32)[None] < torch.tensor(lengths)[:, None]).long()
    labels = torch.where((torch.arange(32)[None] % 3 == 1) & mask.bool(), 7, -100)
    batch = dict(input_ids=torch.randint(5, 500, (3, 32)) * mask, attention_mask=mask, labels=labels)
    batch = {k: v.cuda() for k, v in batch.items()}
    counts = dict(seq_lengths=lengths, masked_counts=(labels != -100).sum(1).tolist())

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            model(**batch, **counts).loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    step()  # first call: kernel compilation and allocator warm-up may sync
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        step()
    finally:
        torch.cuda.set_sync_debug_mode("default")


def _model_and_copy():
    """A small Mosaic BERT on the GPU and a second model with the same weights."""
    from efficient_bert.model.mosaic_bert import MosaicBertConfig, MosaicBertForMaskedLM

    torch.manual_seed(0)
    config = MosaicBertConfig(vocab_size=500, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                              intermediate_size=128, hidden_dropout_prob=0.0)
    model, copy = MosaicBertForMaskedLM(config).cuda(), MosaicBertForMaskedLM(config).cuda()
    copy.load_state_dict(model.state_dict())
    return model, copy


def _mlm_batch(lengths: list[int], g: torch.Generator) -> dict[str, torch.Tensor]:
    """A right-padded GPU batch of rows of these lengths: random ids, two token-type segments per
    row and 30% of the real tokens labelled."""
    seq = max(lengths)
    mask = (torch.arange(seq)[None] < torch.tensor(lengths)[:, None]).long()
    ids = torch.randint(5, 500, mask.shape, generator=g) * mask
    types = (torch.arange(seq)[None] >= torch.tensor(lengths)[:, None] // 2).long() * mask
    labels = torch.where((torch.rand(mask.shape, generator=g) < 0.3) & mask.bool(), ids, -100)
    batch = dict(input_ids=ids, attention_mask=mask, token_type_ids=types, labels=labels)
    return {k: v.cuda() for k, v in batch.items()}


@pytest.mark.skipif(not torch.cuda.is_available() or not triton_available(), reason="needs a CUDA GPU")
def test_compiled_layers_match_eager_as_token_counts_and_tile_sizes_change():
    """Inductor launches our kernels (attention included) from generated code under dynamic shapes;
    batches of other token counts and other attention tile sizes give the eager model's results,
    the compiled embeddings (their gradients included) too."""
    eager, compiled = _model_and_copy()
    compiled.compile_regions()
    g = torch.Generator().manual_seed(4)
    for lengths in ([128, 77, 5], [100, 128, 128, 3], [60, 20], [128, 9, 31, 128, 64]):
        batch = _mlm_batch(lengths, g)
        masked_counts = (batch["labels"] != -100).sum(1).tolist()
        losses, grads = [], []
        for model in (eager, compiled):
            model.zero_grad()
            loss = model(**batch, seq_lengths=lengths, masked_counts=masked_counts).loss
            loss.backward()
            losses.append(loss.item())
            bert = model.bert
            grads.append([p.grad.clone() for p in (bert.layers[0].qkv.weight, bert.word_embeddings.weight,
                                                   bert.token_type_embeddings.weight, bert.embedding_norm.weight)])
        # TF32 dot products in the attention kernel
        assert abs(losses[0] - losses[1]) < 2e-3, (lengths, losses)
        for a, b in zip(*grads):
            assert torch.allclose(a, b, atol=2e-3, rtol=1e-2), lengths


@pytest.mark.skipif(not torch.cuda.is_available() or not triton_available(), reason="needs a CUDA GPU")
def test_compiled_layers_train_under_fsdp2(tmp_path):
    """Under FSDP the compiled layers get their parameters as graph inputs, so with dynamic shapes
    every size is symbolic. Our attention once reshaped its freshly written gradient there, and
    Inductor's backward compile failed (KeyError in compute_ancestors, pytorch/pytorch#189271).
    One rank shows it; the sharded, compiled model must match the eager one."""
    import torch.distributed as dist
    from torch.distributed.fsdp import fully_shard

    # an earlier test's Composer trainer may have left its one-process NCCL group: use it then
    owned = not dist.is_initialized()
    if owned:
        dist.init_process_group("nccl", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    assert dist.get_world_size() == 1 and dist.get_backend() == "nccl"
    try:
        eager, sharded = _model_and_copy()
        sharded.compile_regions()  # before sharding, as our builder and Composer's Trainer do it
        for layer in sharded.bert.layers:
            fully_shard(layer)
        fully_shard(sharded)
        g = torch.Generator().manual_seed(6)
        for lengths in ([128, 77, 5], [100, 128, 3, 64]):
            batch = _mlm_batch(lengths, g)
            losses, grads = [], []
            for model in (eager, sharded):
                model.zero_grad()
                loss = model(**batch).loss
                loss.backward()
                losses.append(loss.item())
                grad = model.bert.layers[0].qkv.weight.grad
                grads.append(grad.full_tensor() if hasattr(grad, "full_tensor") else grad)
            assert abs(losses[0] - losses[1]) < 2e-3, (lengths, losses)  # TF32 in the attention kernel
            assert torch.allclose(grads[0], grads[1], atol=2e-3, rtol=1e-2), lengths
    finally:
        if owned:
            dist.destroy_process_group()
