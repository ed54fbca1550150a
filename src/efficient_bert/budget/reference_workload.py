"""The reference workload: a fixed Mosaic BERT MLM training step that both clocks of a budget are
measured with, and the measurements made of it (:mod:`.calibrate` is their command line).

The step: seeded random tokens, full rows of 128, 30% masked; bf16 autocast with our kernels on a GPU,
fp32 on the CPU, timed after warm-up. :data:`REFERENCE_SECONDS` holds its time on the reference system.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Optional

import torch

from efficient_bert.budget.cost_table import CostTable, model_shape

# The reference system and its seconds per step of each workload: the mean of two runs of
# `--measure-only --steps 30` on an H100 (base 0.0524 and 0.0460, tiny 0.0118 and 0.0125:
# eager steps at this batch are partly host-bound, so runs differ by up to 7%); docs/benchmarks.md.
REFERENCE_SYSTEM = "NVIDIA H100 80GB HBM3, torch 2.11, bf16"
REFERENCE_SECONDS = {"base": 0.0492, "tiny": 0.0121}
WORKLOADS = {"base": dict(batch=64, seq=128), "tiny": dict(batch=32, seq=128)}


class ReferenceWorkload:
    """A Mosaic BERT of ``size`` with AdamW and one fixed MLM batch of ``rows`` full rows of ``seq``
    tokens on ``device``: what both the RST factor and the cost table time."""

    def __init__(self, size: str, rows: int, seq: int, device: str):
        from efficient_bert.data.mlm_collator import host_counts
        from efficient_bert.model.mosaic_bert import SIZES, MosaicBertConfig, MosaicBertForMaskedLM

        torch.manual_seed(0)
        self.device = device
        self.model = MosaicBertForMaskedLM(MosaicBertConfig(vocab_size=30528, **SIZES[size])).to(device).train()
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-4)
        g = torch.Generator().manual_seed(0)
        ids = torch.randint(5, 30528, (rows, seq), generator=g)
        labels = torch.where(torch.rand(ids.shape, generator=g) < 0.3, ids, -100)
        mask = torch.ones_like(ids)
        self.batch = dict(input_ids=ids.to(device), attention_mask=mask.to(device), labels=labels.to(device),
                          **host_counts(mask, labels))
        self.autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device == "cuda")

    def train_step(self) -> None:
        with self.autocast:
            loss = self.model(**self.batch).loss
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    @torch.no_grad()
    def forward(self) -> None:
        with self.autocast:
            self.model(**self.batch)

    def seconds(self, work: Callable[[], None], steps: int, warmup: int, tick: Callable[[], None]) -> float:
        """Seconds per call of ``work``, timed over ``steps`` calls after ``warmup``."""
        sync = torch.cuda.synchronize if self.device == "cuda" else (lambda: None)
        for _ in range(warmup):
            work()
            tick()
        sync()
        start = time.perf_counter()
        for _ in range(steps):
            work()
            tick()
        sync()
        return (time.perf_counter() - start) / steps


def reference_step_seconds(size: str, steps: int = 20, warmup: int = 5, device: Optional[str] = None,
                           progress: bool = True) -> float:
    """Seconds per training step of the reference workload on this machine."""
    from tqdm.auto import tqdm

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    workload = ReferenceWorkload(size, WORKLOADS[size]["batch"], WORKLOADS[size]["seq"], device)
    with tqdm(total=warmup + steps, desc=f"calibrating ({size} workload on {device})", unit="step",
              disable=not progress) as bar:
        return workload.seconds(workload.train_step, steps, warmup, bar.update)


def measure_cost_table(size: str = "base", rows: int = 256, seq: int = 128, steps: int = 10, warmup: int = 3,
                       device: Optional[str] = None, progress: bool = True) -> CostTable:
    """The reference clock's prices on this machine: a training step and a forward pass of the
    reference workload at ``rows`` rows, for every number of running layers (set through the layer
    plan that layer stacking and layer drop use). Run it once on the reference GPU."""
    from tqdm.auto import tqdm

    from efficient_bert.model.layer_plan import attach_layer_plan

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    workload = ReferenceWorkload(size, rows, seq, device)
    plan = attach_layer_plan(workload.model)
    train, forward = [], []
    with tqdm(total=plan.total * 2 * (warmup + steps), desc=f"cost table ({size}, {rows} rows, {device})",
              unit="pass", disable=not progress) as bar:
        for layers in range(1, plan.total + 1):
            plan.set_depth(layers)
            train.append(workload.seconds(workload.train_step, steps, warmup, bar.update))
            forward.append(workload.seconds(workload.forward, steps, warmup, bar.update))
    name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    return CostTable(model=model_shape(workload.model), seq_len=seq, rows=rows,
                     train=tuple(train), forward=tuple(forward),
                     measured_on={"device": name, "torch": torch.__version__, "steps": steps, "warmup": warmup,
                                  "precision": "amp_bf16" if device == "cuda" else "fp32", "compiled": False})


def optimizer_classes() -> dict[str, Callable[[Any], torch.optim.Optimizer]]:
    """The optimizers a table prices, by class name, built with their defaults."""
    from efficient_bert.optim import Adafactor, Lamb, Lion, SophiaG

    return {"AdamW": lambda p: torch.optim.AdamW(p, lr=1e-4), "Lion": Lion, "Lamb": Lamb, "Adafactor": Adafactor,
            "SophiaG": SophiaG}


def measure_optimizer_steps(table: CostTable, steps: int = 20, warmup: int = 5, device: Optional[str] = None,
                            progress: bool = True) -> dict[str, float]:
    """Reference seconds of one step of each optimizer over the table's model, measured here as a
    fraction of this machine's training step of the table's workload (at all layers)."""
    from tqdm.auto import tqdm

    from efficient_bert.model.mosaic_bert import SIZES

    size = next((name for name, shape in SIZES.items() if shape.get("hidden_size") == table.model["hidden_size"]
                 and shape.get("num_hidden_layers") == table.model["num_hidden_layers"]), None)
    if size is None:
        raise ValueError(f"no Mosaic BERT size matches the table's model {table.model}")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    workload = ReferenceWorkload(size, table.rows, table.seq_len, device)
    classes = optimizer_classes()
    prices = {}
    with tqdm(total=(len(classes) + 1) * (warmup + steps), desc="optimizer steps", unit="step",
              disable=not progress) as bar:
        train = workload.seconds(workload.train_step, steps, warmup, bar.update)
        with workload.autocast:
            workload.model(**workload.batch).loss.backward()  # gradients for the optimizers to read
        for name, build in classes.items():
            optimizer = build(workload.model.parameters())
            prices[name] = workload.seconds(optimizer.step, steps, warmup, bar.update) / train * table.train[-1]
            del optimizer
    return prices


def calibrate(size: str = "base", steps: int = 20) -> dict[str, Any]:
    reference = REFERENCE_SECONDS[size]
    if not reference > 0:
        raise RuntimeError(f"no reference time is recorded for the {size!r} workload")
    measured = reference_step_seconds(size, steps)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    return {"rst_factor": reference / measured, "workload": size, "seconds_per_step": measured,
            "reference_seconds_per_step": reference, "reference_system": REFERENCE_SYSTEM, "device": device,
            "torch": torch.__version__}
