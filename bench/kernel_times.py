"""Per-call GPU time of the hot-path kernels at base size, with the launch settings we chose and
their alternatives. A script, not a test: run it on a GPU.

    python bench/kernel_times.py

The tokens are one batch of ``bench/throughput.py``'s length mix (batch 256, seq 128: 70% full rows,
the rest uniform in 16..128, seed 0), bf16. Each row is one kernel launch timed with CUDA events
over 50 calls after 5 warm-up calls.
"""

from __future__ import annotations

import argparse
import importlib
import math

import torch
import torch.nn.functional as F

from efficient_bert.model.mosaic_bert.alibi import alibi_slopes
from efficient_bert.model.mosaic_bert.modeling import embed_tokens

# the modules, not the functions the package re-exports under the same names
attention = importlib.import_module("efficient_bert.kernels.short_attention")
layer_norm = importlib.import_module("efficient_bert.kernels.layer_norm")
cross_entropy = importlib.import_module("efficient_bert.kernels.cross_entropy")


def time_us(fn, calls: int = 50) -> float:
    for _ in range(5):
        fn()
    begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    begin.record()
    for _ in range(calls):
        fn()
    end.record()
    torch.cuda.synchronize()
    return begin.elapsed_time(end) / calls * 1000


def lengths_of_mix(batch: int, seq: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    full = torch.rand(batch, generator=g) < 0.7
    return torch.where(full, torch.full((batch,), seq), torch.randint(16, seq + 1, (batch,), generator=g))


def bench_attention(cu: torch.Tensor, total: int, heads: int, dim: int) -> None:
    qkv = torch.randn(total, 3, heads, dim, device="cuda", dtype=torch.bfloat16)
    slopes = alibi_slopes(heads).cuda()
    out = qkv.new_empty(total, heads * dim)
    lse = torch.empty(heads, total, device="cuda")
    dout, dqkv = torch.randn_like(out), torch.empty_like(qkv)
    grid = (cu.shape[0] - 1, heads)
    common = dict(scale=1 / math.sqrt(dim), BLOCK=128, BLOCK_D=dim)
    chosen = {False: attention._launch_args(dim, 128, backward=False)["num_warps"],
              True: attention._launch_args(dim, 128, backward=True)["num_warps"]}
    for warps in (4, 8):
        fwd = time_us(lambda: attention._forward_kernel[grid](qkv, cu, slopes, out, lse, total, heads, dim, **common,
                                                              num_warps=warps))
        bwd = time_us(lambda: attention._backward_kernel[grid](qkv, cu, slopes, out, dout, lse, dqkv, total, heads, dim,
                                                               **common, num_warps=warps))
        print(f"| short attention, {warps} warps | {fwd:.0f}{' (chosen)' * (chosen[False] == warps)} | "
              f"{bwd:.0f}{' (chosen)' * (chosen[True] == warps)} |")


def bench_layer_norm(total: int, hidden: int, dropout_p: float) -> None:
    x = torch.randn(total, hidden, device="cuda", dtype=torch.bfloat16)
    residual, y, s = torch.randn_like(x), torch.empty_like(x), torch.empty_like(x)
    weight = torch.ones(hidden, device="cuda")
    mean, rstd = torch.zeros(total, device="cuda"), torch.ones(total, device="cuda")
    seed = torch.tensor([123], device="cuda")
    threshold = layer_norm._threshold(dropout_p)
    block, warps = layer_norm._launch_config(hidden)
    fwd = time_us(lambda: layer_norm._forward_kernel[(total,)](
        x, residual, s, y, weight, weight, mean, rstd, seed, hidden, 1e-12, dropout_p, threshold, HAS_RESIDUAL=True,
        HAS_DROPOUT=dropout_p > 0, BLOCK=block, num_warps=warps))
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    dx, dx_branch = torch.empty_like(x), torch.empty_like(x)
    for per_sm in (4, 8, 16):
        programs = per_sm * sms
        dw = torch.empty(programs, hidden, device="cuda")
        db = torch.empty_like(dw)
        bwd = time_us(lambda: layer_norm._backward_kernel[(programs,)](
            x, s, weight, mean, rstd, seed, dx, dx_branch, dw, db, total, hidden, -(-total // programs), dropout_p,
            threshold, HAS_DROPOUT=dropout_p > 0, BLOCK=block, num_warps=warps))
        print(f"| add + LayerNorm, dropout {dropout_p}, backward with {per_sm} programs per SM | {fwd:.0f} | {bwd:.0f} |")


def bench_embeddings(total: int, hidden: int, vocab: int) -> None:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, vocab, (total,), generator=g)
    ids[torch.rand(total, generator=g) < 0.24] = 4  # 30% masked, 80% of those as [MASK]: one hot row
    ids, types = ids.cuda(), torch.zeros(total, dtype=torch.long, device="cuda")
    word = torch.randn(vocab, hidden, device="cuda", requires_grad=True)
    kind = torch.randn(2, hidden, device="cuda", requires_grad=True)
    norm_w, norm_b = torch.ones(hidden, device="cuda"), torch.zeros(hidden, device="cuda")
    grad = torch.randn(total, hidden, device="cuda")

    def eager():
        x = F.layer_norm(F.embedding(ids, word, 0) + F.embedding(types, kind), (hidden,), norm_w, norm_b, 1e-12)
        torch.autograd.backward(x, grad)

    compiled_embed = torch.compile(embed_tokens, dynamic=True)

    def compiled():
        x = compiled_embed(ids, types, word, kind, 0, norm_w, norm_b, 1e-12, 0.0, True)
        torch.autograd.backward(x, grad)

    print(f"| embeddings + LayerNorm, eager gathers (forward + backward) | {time_us(eager):.0f} | |")
    print(f"| embeddings + LayerNorm, compiled `embed_tokens` (forward + backward) | {time_us(compiled):.0f} | |")


def bench_cross_entropy(rows: int, vocab: int) -> None:
    """The MLM loss at the masked tokens: our kernels against compiled ``F.cross_entropy`` of the
    float32-cast logits (what the head ran before)."""
    g = torch.Generator(device="cuda").manual_seed(0)
    logits = torch.randn(rows, vocab, device="cuda", generator=g).to(torch.bfloat16).requires_grad_()
    labels = torch.randint(0, vocab, (rows,), device="cuda", generator=g)
    config = cross_entropy._launch_config(vocab)
    losses, lse = torch.empty(rows, device="cuda"), torch.empty(rows, device="cuda")
    dlosses, dlogits = torch.full((rows,), 1 / rows, device="cuda"), torch.empty_like(logits)
    fwd = time_us(lambda: cross_entropy._forward_kernel[(rows,)](logits, labels, losses, lse, vocab, -100, **config))
    bwd = time_us(lambda: cross_entropy._backward_kernel[(rows,)](dlosses, logits, labels, lse, dlogits, vocab, -100,
                                                                  **config))
    print(f"| cross-entropy, {rows} x {vocab} bf16 logits, our kernels | {fwd:.0f} | {bwd:.0f} |")
    compiled = torch.compile(lambda x, y: F.cross_entropy(x.float(), y), dynamic=True)
    both = time_us(lambda: compiled(logits, labels).backward())
    print(f"| cross-entropy, compiled `F.cross_entropy` of float32-cast logits (forward + backward) | {both:.0f} | |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    lengths = lengths_of_mix(args.batch, args.seq, args.seed)
    cu = F.pad(lengths.cumsum(0), (1, 0)).int().cuda()
    total = int(lengths.sum())
    print(f"{torch.cuda.get_device_name()} | torch {torch.__version__} | {total} tokens\n")
    print("| kernel | forward us | backward us |\n|---|---:|---:|")
    bench_attention(cu, total, heads=12, dim=64)
    bench_layer_norm(total, 768, dropout_p=0.1)
    bench_layer_norm(total, 768, dropout_p=0.0)
    bench_embeddings(total, 768, vocab=30528)
    bench_cross_entropy(int(0.3 * total), vocab=30528)


if __name__ == "__main__":
    main()
