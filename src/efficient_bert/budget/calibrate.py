"""Measure this machine against the reference system, for budgets in Reference System Time (RST).

    python -m efficient_bert.budget.calibrate --out runs/rst.json        (or: efficient-bert calibrate ...)

The reference workload is a fixed Mosaic BERT MLM training step (seeded random tokens, full rows of
128, 30% masked; bf16 autocast with our kernels on a GPU, fp32 on the CPU), timed after warm-up.
Its time on the reference system is recorded below; the factor written is
``reference seconds per step / this machine's seconds per step``: RST seconds per wall-clock
second here. A YAML then sets ``budget.clock: rst`` and ``budget.calibration: runs/rst.json``.

What it costs (5 warm-up and 20 timed steps, a progress bar on stderr): the base workload takes about
1.5 s on an H100 and about 8 minutes on a 2-core CPU (some 17 s a step); ``--size tiny`` takes about
45 s on such a CPU.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import torch

# The reference system and its seconds per step of each workload: the mean of two runs of
# `--measure-only --steps 30` on a lent H100 (base 0.0524 and 0.0460, tiny 0.0118 and 0.0125:
# eager steps at this batch are partly host-bound, so runs differ by up to 7%); docs/benchmarks.md.
REFERENCE_SYSTEM = "NVIDIA H100 80GB HBM3, torch 2.11, bf16"
REFERENCE_SECONDS = {"base": 0.0492, "tiny": 0.0121}
WORKLOADS = {"base": dict(batch=64, seq=128), "tiny": dict(batch=32, seq=128)}


def reference_step_seconds(size: str, steps: int = 20, warmup: int = 5, device: Optional[str] = None,
                           progress: bool = True) -> float:
    """Seconds per training step of the reference workload on this machine."""
    from tqdm.auto import tqdm

    from efficient_bert.data.mlm_collator import host_counts
    from efficient_bert.model.mosaic_bert import SIZES, MosaicBertConfig, MosaicBertForMaskedLM

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    shape = WORKLOADS[size]
    torch.manual_seed(0)
    model = MosaicBertForMaskedLM(MosaicBertConfig(vocab_size=30528, **SIZES[size])).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 30528, (shape["batch"], shape["seq"]), generator=g)
    labels = torch.where(torch.rand(ids.shape, generator=g) < 0.3, ids, -100)
    mask = torch.ones_like(ids)
    batch = dict(input_ids=ids.to(device), attention_mask=mask.to(device), labels=labels.to(device),
                 **host_counts(mask, labels))
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device == "cuda")
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def step():
        with autocast:
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    bar = tqdm(total=warmup + steps, desc=f"calibrating ({size} workload on {device})", unit="step",
               disable=not progress)
    for _ in range(warmup):
        step()
        bar.update()
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        step()
        bar.update()
    sync()
    bar.close()
    return (time.perf_counter() - start) / steps


def calibrate(size: str = "base", steps: int = 20) -> dict[str, Any]:
    reference = REFERENCE_SECONDS[size]
    if not reference > 0:
        raise RuntimeError(f"no reference time is recorded for the {size!r} workload")
    measured = reference_step_seconds(size, steps)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    return {"rst_factor": reference / measured, "workload": size, "seconds_per_step": measured,
            "reference_seconds_per_step": reference, "reference_system": REFERENCE_SYSTEM, "device": device,
            "torch": torch.__version__}


def load_rst_factor(path: str | Path) -> float:
    """The ``rst_factor`` of a calibration file, with a clear error when it is missing or malformed."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no RST calibration at {path}; run "
                                f"`python -m efficient_bert.budget.calibrate --out {path}`")
    try:
        factor = float(json.loads(path.read_text())["rst_factor"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path} is not a calibration file (no numeric rst_factor); write it again with "
                         "`python -m efficient_bert.budget.calibrate`") from exc
    if not factor > 0:
        raise ValueError(f"{path}: rst_factor must be positive, got {factor}")
    return factor


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="efficient-bert calibrate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", default="base", choices=sorted(WORKLOADS), help="reference workload")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--out", default=None, help="write the calibration JSON here")
    p.add_argument("--measure-only", action="store_true", help="print seconds per step (to record a reference)")
    args = p.parse_args(argv)
    if args.out and Path(args.out).exists():  # before minutes of measuring
        raise SystemExit(f"{args.out} exists; remove it or choose another --out")
    if args.measure_only:
        print(json.dumps({"workload": args.size, "seconds_per_step": reference_step_seconds(args.size, args.steps)}))
        return 0
    result = calibrate(args.size, args.steps)
    print(json.dumps(result, indent=1))
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
