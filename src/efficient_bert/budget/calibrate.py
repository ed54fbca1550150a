"""Measure this machine against the reference system, for budgets in Reference System Time (RST),
or measure the reference system's cost table, for budgets on the ``reference`` clock.

    efficient-bert calibrate --out runs/rst.json                  (budget.clock: rst)
    efficient-bert calibrate --cost-table --out runs/cost.json    (budget.clock: reference; on the reference GPU)

Both time the reference workload (:mod:`.reference_workload`): a fixed Mosaic BERT MLM training step.
Its time on the reference system is recorded there; the factor written is
``reference seconds per step / this machine's seconds per step``: RST seconds per wall-clock
second here. A YAML then sets ``budget.clock: rst`` and ``budget.calibration: runs/rst.json``.

What it costs (5 warm-up and 20 timed steps, a progress bar on stderr): the base workload takes about
1.5 s on an H100 and about 8 minutes on a 2-core CPU (some 17 s a step); ``--size tiny`` takes about
45 s on such a CPU.

``--cost-table`` times a training step and a forward pass of the same workload at ``--rows`` rows
of ``--seq`` tokens (256 and 128 by default) for every number of running layers, 3 warm-up and
``--steps`` (10) timed passes each; the table (:mod:`.cost_table`) prices every step of a
``reference`` budget. It takes seconds on a GPU; on a 2-core CPU use ``--size tiny --rows 8``.

``--optimizer-steps --table PATH`` adds to a table the price of one step of each optimizer (AdamW,
Lion, LAMB, Adafactor, Sophia-G) over the whole model. Each is timed beside a training step of the
table's workload on this machine and stored as that fraction of the table's own training price, so
a GPU other than the table's measures prices in the table's units.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Optional, Sequence


def load_rst_factor(path: str | Path) -> float:
    """The ``rst_factor`` of a calibration file, with a clear error when it is missing or malformed."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no RST calibration at {path}; run "
                                f"`efficient-bert calibrate --out {path}`")
    try:
        factor = float(json.loads(path.read_text())["rst_factor"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path} is not a calibration file (no numeric rst_factor); write it again with "
                         "`efficient-bert calibrate`") from exc
    if not factor > 0:
        raise ValueError(f"{path}: rst_factor must be positive, got {factor}")
    return factor


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="efficient-bert calibrate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", default="base", help="reference workload: base or tiny")
    p.add_argument("--steps", type=int, default=None, help="timed steps (default 20; 10 per pass with --cost-table)")
    p.add_argument("--out", default=None, help="write the calibration JSON (or the cost table) here")
    p.add_argument("--measure-only", action="store_true", help="print seconds per step (to record a reference)")
    p.add_argument("--cost-table", action="store_true", help="measure the reference clock's cost table instead")
    p.add_argument("--rows", type=int, default=256, help="--cost-table: rows per timed pass")
    p.add_argument("--seq", type=int, default=128, help="--cost-table: tokens per row")
    p.add_argument("--optimizer-steps", action="store_true",
                   help="add the price of each optimizer's step to the cost table --table")
    p.add_argument("--table", help="--optimizer-steps: the cost table to add the prices to (rewritten in place)")
    args = p.parse_args(argv)
    # the workload imports torch: only once the arguments are read, so that --help answers at once
    import torch

    from efficient_bert.budget.cost_table import CostTable
    from efficient_bert.budget.reference_workload import (WORKLOADS, calibrate, measure_cost_table,
                                                          measure_optimizer_steps, reference_step_seconds)

    if args.size not in WORKLOADS:
        p.error(f"--size: choose one of {', '.join(WORKLOADS)}, got {args.size!r}")
    if args.optimizer_steps:
        if not args.table:
            raise SystemExit("--optimizer-steps needs --table: the cost table whose workload it prices")
        table = CostTable.load(args.table)
        prices = measure_optimizer_steps(table, args.steps or 20)
        device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
        updated = replace(table, optimizer_steps={k: round(v, 6) for k, v in prices.items()},
                          measured_on={**table.measured_on, "optimizer_steps": f"{device}, torch {torch.__version__}, "
                                       f"{time.strftime('%Y-%m-%d')}"})
        partial = Path(args.table + ".partial")
        partial.write_text(updated.to_json())
        partial.replace(args.table)
        print(json.dumps(updated.optimizer_steps, indent=1))
        return 0
    if args.out and Path(args.out).exists():  # before minutes of measuring
        raise SystemExit(f"{args.out} exists; remove it or choose another --out")
    if args.cost_table:
        table = measure_cost_table(args.size, args.rows, args.seq, args.steps or 10)
        print(table.to_json(), end="")
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(table.to_json())
        return 0
    args.steps = args.steps or 20
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
