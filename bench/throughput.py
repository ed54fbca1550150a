"""MLM training throughput: Mosaic BERT variants against HF BertForMaskedLM (eager and compiled), and the
ModernBERT architecture, ours against transformers' ModernBertForMaskedLM.

All models train on the same batches in one process: bf16 autocast, fused AdamW, seq 128, a fixed
length mix (by default 70% full rows, the rest uniform in [16, 128], seed 0) and 30% masking
(80/10/10). Prints real (non-pad) tokens/s, step time, peak memory, achieved TFLOP/s and MFU
(useful FLOPs on real tokens, ``efficient_bert.model.flops``) and each model's ratio to the HF
baselines. Each variant is timed over ``--repeats`` windows of ``--steps`` steps; the median
window is reported with the spread of all of them. A script, not a test: run it on a GPU.

    python bench/throughput.py                      # base size, every variant, batch 256
    python bench/throughput.py --variants mosaic-flex,hf-eager --steps 30
    python bench/throughput.py --profile mosaic-flex  # top CUDA kernels of one variant
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import statistics
import time
from dataclasses import asdict, dataclass

import torch

from efficient_bert.data.mlm_collator import host_counts
from efficient_bert.model.composer_mlm import model_inputs
from efficient_bert.model.flops import mlm_training_flops

# name -> (family, options); mosaic options: attention backend, kernels, regional compile
VARIANTS = {
    "hf-eager": ("hf", dict(compile=False)),
    "hf-compiled": ("hf", dict(compile=True)),
    "mosaic-triton": ("mosaic", dict(attention="triton", kernels="triton", compile=True)),
    "mosaic-triton-cpp": ("mosaic", dict(attention="triton", kernels="triton", compile=True, cpp_wrapper=True)),
    # CUDA graphs of the compiled layers and head (Inductor's cudagraph trees), one per token count:
    # the workload's few batches repeat, so this bounds what graphs over token-count buckets would gain
    "mosaic-triton-cudagraphs": ("mosaic", dict(attention="triton", kernels="triton", compile=True,
                                                mode="reduce-overhead")),
    # the budget recipe's model (pre-LN, no dropout) and the same without pre-LN: what pre-LN costs
    "mosaic-triton-prenorm": ("mosaic", dict(attention="triton", kernels="triton", compile=True, prenorm=True,
                                             hidden_dropout_prob=0.0)),
    "mosaic-triton-no-dropout": ("mosaic", dict(attention="triton", kernels="triton", compile=True,
                                                hidden_dropout_prob=0.0)),
    # the budget recipe's model without the layers' linear biases (cramming's and ModernBERT's choice)
    "mosaic-triton-prenorm-no-bias": ("mosaic", dict(attention="triton", kernels="triton", compile=True,
                                                     prenorm=True, hidden_dropout_prob=0.0, linear_bias=False)),
    "mosaic-triton-inductor": ("mosaic", dict(attention="triton", kernels="torch", compile=True)),
    "mosaic-flash-attn": ("mosaic", dict(attention="flash_attn", kernels="triton", compile=True)),
    "mosaic-flex": ("mosaic", dict(attention="flex", kernels="torch", compile=True)),
    "mosaic-flex-triton": ("mosaic", dict(attention="flex", kernels="triton", compile=True)),
    "mosaic-sdpa": ("mosaic", dict(attention="sdpa", kernels="torch", compile=True)),
    "mosaic-sdpa-triton-eager": ("mosaic", dict(attention="sdpa", kernels="triton", compile=False)),
    # the ModernBERT architecture at ModernBERT's own sizes (base: 22 layers, GLU 1152): transformers'
    # implementation as a user installs it (SDPA, padded, no flash-attn), and ours on the fast path
    "hf-modernbert-eager": ("hf_modernbert", dict(compile=False)),
    "hf-modernbert-compiled": ("hf_modernbert", dict(compile=True)),
    "modernbert-triton": ("modernbert", dict(attention="triton", kernels="triton", compile=True)),
}
SIZES = {
    "base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12),
    "large": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16),
}
MASK_ID, FIRST_REGULAR_ID = 4, 5


@dataclass
class Result:
    variant: str
    real_tokens_per_s: float
    step_ms: float  # of the median timing window
    spread: float  # (slowest - fastest window) / median
    host_ms: float  # the host's time to issue one step; near step_ms means host-bound
    peak_memory_gib: float
    tflops: float
    mfu: float


def length_mix(batch: int, seq: int, full_fraction: float, min_len: int, generator: torch.Generator) -> torch.Tensor:
    full = torch.rand(batch, generator=generator) < full_fraction
    short = torch.randint(min_len, seq + 1, (batch,), generator=generator)
    return torch.where(full, torch.full_like(short, seq), short)


def make_batches(n: int, batch: int, seq: int, vocab: int, args, device) -> list[dict]:
    """``n`` fixed MLM batches: random regular tokens, right padding, 30% of real tokens masked 80/10/10."""
    g = torch.Generator().manual_seed(args.seed)
    out = []
    for _ in range(n):
        lengths = length_mix(batch, seq, args.full_fraction, args.min_len, g)
        mask = (torch.arange(seq)[None] < lengths[:, None]).long()
        ids = torch.randint(FIRST_REGULAR_ID, vocab, (batch, seq), generator=g) * mask
        chosen = (torch.rand(batch, seq, generator=g) < args.mask_prob) & mask.bool()
        labels = torch.where(chosen, ids, torch.full_like(ids, -100))
        action = torch.rand(batch, seq, generator=g)
        inputs = torch.where(chosen & (action < 0.8), torch.full_like(ids, MASK_ID), ids)
        random_ids = torch.randint(FIRST_REGULAR_ID, vocab, (batch, seq), generator=g)
        inputs = torch.where(chosen & (action >= 0.8) & (action < 0.9), random_ids, inputs)
        tensors = dict(input_ids=inputs, attention_mask=mask, labels=labels)
        # with the host-side counts our collator adds to every batch
        out.append({**{k: v.to(device) for k, v in tensors.items()}, **host_counts(mask, labels)})
    return out


def build(variant: str, size: dict, vocab: int, seq: int) -> torch.nn.Module:
    family, opts = VARIANTS[variant]
    intermediate = 4 * size["hidden_size"]
    if family in ("hf_modernbert", "modernbert"):
        return build_modernbert(family, opts, "large" if size["num_hidden_layers"] > 12 else "base", vocab)
    if family == "hf":
        from transformers import BertConfig, BertForMaskedLM

        cfg = BertConfig(vocab_size=vocab, intermediate_size=intermediate, max_position_embeddings=max(512, seq),
                         attn_implementation="sdpa", **size)
        model = BertForMaskedLM(cfg)
        return torch.compile(model) if opts["compile"] else model
    from efficient_bert.model.mosaic_bert import MosaicBertConfig, MosaicBertForMaskedLM

    layer = {k: opts[k] for k in ("prenorm", "hidden_dropout_prob", "linear_bias") if k in opts}
    cfg = MosaicBertConfig(vocab_size=vocab, intermediate_size=intermediate, attention=opts["attention"],
                           kernels=opts["kernels"], attention_probs_dropout_prob=0.0, **layer, **size)
    model = MosaicBertForMaskedLM(cfg)
    if opts["compile"]:
        kwargs = {"options": {"cpp_wrapper": True}} if opts.get("cpp_wrapper") else {}
        model.compile_regions(**kwargs, **({"mode": opts["mode"]} if "mode" in opts else {}))
    return model


def build_modernbert(family: str, opts: dict, size: str, vocab: int) -> torch.nn.Module:
    from transformers import ModernBertConfig, ModernBertForMaskedLM

    from efficient_bert.model.modernbert import SIZES as MODERNBERT_SIZES, FastModernBertForMaskedLM

    cfg = ModernBertConfig(vocab_size=vocab, pad_token_id=0, cls_token_id=2, sep_token_id=3, bos_token_id=2,
                           eos_token_id=3, **MODERNBERT_SIZES[size])
    if family == "hf_modernbert":
        cfg._attn_implementation = "sdpa"
        model = ModernBertForMaskedLM(cfg)
        return torch.compile(model) if opts["compile"] else model
    cfg.attention, cfg.kernels = opts["attention"], opts["kernels"]
    model = FastModernBertForMaskedLM(cfg)
    if opts["compile"]:
        model.compile_regions()
    return model


def run_variant(variant: str, batches: list[dict], args, peak_tflops: float) -> Result:
    torch.manual_seed(0)
    model = build(variant, SIZES[args.size], args.vocab, args.seq).cuda().train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01, fused=True)

    graphed = VARIANTS[variant][1].get("mode") == "reduce-overhead"

    def step(batch):
        if graphed:  # a new iteration: the graphs' outputs from the last step may be overwritten
            torch.compiler.cudagraph_mark_step_begin()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(**model_inputs(model, batch)).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss

    start = time.perf_counter()
    for i in range(args.warmup):
        loss = step(batches[i % len(batches)])
    torch.cuda.synchronize()
    if not math.isfinite(loss.item()):
        raise RuntimeError(f"{variant}: non-finite loss during warm-up")
    print(f"  {variant}: warm-up (compile included) {time.perf_counter() - start:.1f} s", flush=True)
    torch.cuda.reset_peak_memory_stats()
    tokens = flops = 0.0
    # several timing windows over the same batches; the median window damps the GPU's clock and
    # memory-traffic swings, which moved single windows by up to 1-2% between runs
    windows = []
    for _ in range(args.repeats):
        begin = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        begin.record()
        for i in range(args.steps):
            step(batches[i % len(batches)])
        end.record()
        torch.cuda.synchronize()
        windows.append(begin.elapsed_time(end) / 1000)
    seconds = statistics.median(windows)
    spread = (max(windows) - min(windows)) / seconds
    for i in range(args.steps):
        batch = batches[i % len(batches)]
        tokens += float(batch["attention_mask"].sum())
        flops += mlm_training_flops(model, batch["attention_mask"], batch["labels"], batch["seq_lengths"],
                                    batch["masked_counts"])
    achieved = flops / seconds / 1e12
    # the host's time to issue one step onto an idle GPU: near step_ms, the host sets the pace
    host_seconds = 0.0
    for i in range(5):
        torch.cuda.synchronize()
        issue_start = time.perf_counter()
        step(batches[i % len(batches)])
        host_seconds += time.perf_counter() - issue_start
    torch.cuda.synchronize()
    result = Result(variant, tokens / seconds, 1000 * seconds / args.steps, spread, 1000 * host_seconds / 5,
                    torch.cuda.max_memory_allocated() / 2 ** 30, achieved, achieved / peak_tflops)
    if args.profile == variant:
        profile(step, batches)
    return result


def profile(step, batches) -> None:
    from torch.profiler import ProfilerActivity, profile as torch_profile

    with torch_profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for i in range(5):
            step(batches[i % len(batches)])
        torch.cuda.synchronize()
    print(prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=40), flush=True)


def matmul_peak_tflops(n: int = 8192, repeats: int = 20) -> float:
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    torch.cuda.synchronize()
    return 2 * n ** 3 * repeats / (time.perf_counter() - start) / 1e12


def add_workload_arguments(p: argparse.ArgumentParser) -> None:
    """The model size, batches and step counts every GPU benchmark here shares."""
    p.add_argument("--size", default="base", choices=sorted(SIZES))
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--vocab", type=int, default=30528)
    p.add_argument("--full_fraction", type=float, default=0.7)
    p.add_argument("--min_len", type=int, default=16)
    p.add_argument("--mask_prob", type=float, default=0.3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--steps", type=int, default=30)


def chosen(p: argparse.ArgumentParser, value: str, choices, what: str) -> list[str]:
    """The comma-separated names of ``value``, each one of ``choices`` (else a usage error)."""
    names = value.split(",")
    unknown = [n for n in names if n not in choices]
    if unknown:
        p.error(f"unknown {what}(s) {unknown}; choose from {', '.join(choices)}")
    return names


def workload_batches(args: argparse.Namespace, script: str) -> list[dict]:
    """After the CUDA check (with TF32 matmuls), the fixed batches of the shared workload."""
    if not torch.cuda.is_available():
        raise SystemExit(f"{script} needs a CUDA GPU")
    torch.backends.cuda.matmul.allow_tf32 = True
    return make_batches(4, args.batch, args.seq, args.vocab, args, "cuda")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, from: {', '.join(VARIANTS)}")
    add_workload_arguments(p)
    p.add_argument("--peak_tflops", type=float, default=None, help="default: measured 8192^3 bf16 matmul")
    p.add_argument("--repeats", type=int, default=5, help="timing windows of --steps steps; the median one counts")
    p.add_argument("--profile", default=None, help="variant to profile after timing")
    p.add_argument("--json", default=None, help="write the results here")
    args = p.parse_args(argv)
    variants = chosen(p, args.variants, VARIANTS, "variant")
    batches = workload_batches(args, "bench/throughput.py")
    peak = args.peak_tflops or matmul_peak_tflops()
    fill = sum(float(b["attention_mask"].float().mean()) for b in batches) / len(batches)
    print(f"{torch.cuda.get_device_name()} | torch {torch.__version__} | {args.size}, batch {args.batch}, seq "
          f"{args.seq}, fill {fill:.3f}, mask {args.mask_prob} | bf16 matmul peak {peak:.0f} TFLOP/s", flush=True)
    results = []
    for variant in variants:
        try:
            results.append(run_variant(variant, batches, args, peak))  # the model is freed on return
            print(f"  {variant}: {results[-1].real_tokens_per_s / 1e3:.0f}k real tokens/s, "
                  f"{results[-1].step_ms:.1f} ms a step", flush=True)
            gc.collect()
            torch.cuda.empty_cache()
        except Exception as exc:  # one broken variant must not hide the others' numbers
            print(f"  {variant}: FAILED {type(exc).__name__}: {str(exc)[:400]}", flush=True)
            torch.cuda.empty_cache()
    by_name = {r.variant: r for r in results}
    print("\n| variant | real tok/s | step ms | spread | host ms | peak GiB | TFLOP/s | MFU | vs HF eager | vs HF compiled |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        ratios = [f"{r.real_tokens_per_s / by_name[b].real_tokens_per_s:.2f}x" if b in by_name else "-"
                  for b in ("hf-eager", "hf-compiled")]
        print(f"| {r.variant} | {r.real_tokens_per_s / 1e3:.0f}k | {r.step_ms:.1f} | {100 * r.spread:.1f}% | {r.host_ms:.1f} | "
              f"{r.peak_memory_gib:.1f} | "
              f"{r.tflops:.0f} | {100 * r.mfu:.1f}% | {ratios[0]} | {ratios[1]} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(device=torch.cuda.get_device_name(), fill=fill, peak_tflops=peak, args=vars(args),
                           results=[asdict(r) for r in results]), f, indent=2)


if __name__ == "__main__":
    main()
