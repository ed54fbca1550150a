"""Data-parallel scaling of pretraining through `composer main.py`: tokens/s on 1, 2, 4 ... GPUs with
the same per-GPU batch, the efficiency against linear scaling, and optionally a two-node simulation
(two launchers on one host, node ranks 0 and 1, MASTER_ADDR=127.0.0.1; the second in its own mount
namespace with its own /dev/shm, which needs root).

    python bench/scaling.py --gpus 1,2 --two_node --json scaling.json

A script, not a test: it needs GPUs. It builds a tokenizer and MDS shards from data/sample (or takes
--tokenizer/--data), runs Mosaic BERT-Base (yamls/pretrain/mosaic-bert-base.yaml) for --steps steps
per configuration and reads Composer's SpeedMonitor throughput over the last --window steps.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLES_PER_SEC = re.compile(r"throughput/samples_per_sec: ([0-9.]+)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare_data(work: Path) -> tuple[Path, Path]:
    tok, mds = work / "tokenizer", work / "mds"
    subprocess.run([sys.executable, "-m", "efficient_bert", "train-tokenizer", "--in_root", "data/sample",
                    "--vocab_size", "30522", "--out", str(tok)], cwd=ROOT, check=True)
    # the sample 8 times over (53k rows): no epoch boundary, with its loader restart, inside a timed run
    files = [str(p) for p in sorted((ROOT / "data" / "sample").glob("c4-train.*.json.gz"))] * 8
    subprocess.run([sys.executable, "convert_c4.py", "--files", *files, "--out_root", str(mds), "--splits", "train",
                    "--tokenizer", str(tok), "--concat_tokens", "128"], cwd=ROOT, check=True)
    return tok, mds


def run_args(args: argparse.Namespace, world: int, tok: Path, mds: Path) -> list[str]:
    return ["main.py", "yamls/pretrain/mosaic-bert-base.yaml", f"variables.data_local={mds}",
            f"variables.tokenizer={tok}", f"global_train_batch_size={args.per_gpu_batch * world}",
            f"device_train_microbatch_size={args.per_gpu_batch}", f"max_duration={args.steps}ba", "eval_loader=null",
            "save_folder=null", "callbacks.hf_export=null", f"callbacks.speed_monitor.window_size={args.window}",
            f"console_log_interval={args.steps}ba", "train_loader.num_workers=4", f"seed={args.seed}"]


def throughput(output: str, what: str) -> float:
    values = SAMPLES_PER_SEC.findall(output)
    if not values:
        raise RuntimeError(f"{what}: no throughput in the output:\n{output[-3000:]}")
    return float(values[-1])


def launcher(nproc: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "composer.cli.launcher", "-n", str(nproc), *extra]


def single_node(args: argparse.Namespace, gpus: int, tok: Path, mds: Path, extra: tuple[str, ...] = ()) -> float:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ",".join(map(str, range(gpus)))}
    cmd = launcher(gpus, "--master_port", str(free_port())) + run_args(args, gpus, tok, mds) + list(extra)
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"{gpus} GPU(s) failed:\n{result.stderr[-4000:]}")
    return throughput(result.stdout + result.stderr, f"{gpus} GPU(s)")


def two_nodes(args: argparse.Namespace, gpus: int, tok: Path, mds: Path, extra: tuple[str, ...] = ()) -> float:
    """Two launchers, one per simulated node with gpus/2 GPUs each, meeting at 127.0.0.1."""
    per_node, port = gpus // 2, free_port()
    procs = []
    for node in range(2):
        visible = ",".join(str(node * per_node + i) for i in range(per_node))
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": visible}
        # as on real nodes, each reads the shards as a remote into its own local cache (two nodes that
        # share one local directory on one host collide in streaming's shared memory)
        cache = [f"variables.data_remote={mds}", f"variables.data_local={mds.parent / f'node{node}-cache'}"]
        cmd = launcher(per_node, "--world_size", str(gpus), "--node_rank", str(node), "--master_addr", "127.0.0.1",
                       "--master_port", str(port)) + run_args(args, gpus, tok, mds) + list(extra) + cache
        if node == 1:  # its own /dev/shm, as on a second machine: streaming's shared memory names are per host
            cmd = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                   'mount -t tmpfs none /dev/shm && exec "$@"', "sh"] + cmd
        procs.append(subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True))
    outputs = [p.communicate()[0] for p in procs]
    if any(p.returncode for p in procs):
        raise RuntimeError("two-node simulation failed:\n" + "\n".join(o[-3000:] for o in outputs))
    return throughput(outputs[0], "two-node simulation")  # node 0 holds global rank 0, which logs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpus", default="1,2", help="GPU counts to run, e.g. 1,2,4")
    parser.add_argument("--per_gpu_batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--window", type=int, default=30, help="steps at the end over which throughput is read")
    parser.add_argument("--two_node", action="store_true", help="also simulate 2 nodes with the largest GPU count")
    parser.add_argument("--no_single", action="store_true", help="skip the one-node runs (efficiency is then "
                        "relative to the first row that ran)")
    parser.add_argument("--fsdp", action="store_true", help="also run the largest GPU count with FSDP (version 1, "
                        "full shard) and FSDP2")
    parser.add_argument("--override", action="append", default=[],
                        help="a key=value override for every run, e.g. model.compile=false (repeatable)")
    parser.add_argument("--tokenizer")
    parser.add_argument("--data")
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--json")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="scaling-"))
    tok, mds = (Path(args.tokenizer), Path(args.data)) if args.tokenizer else prepare_data(work)
    counts = [int(g) for g in args.gpus.split(",")]
    setups = [(f"{g} GPU{'s' if g > 1 else ''}, 1 node", g, single_node, ()) for g in counts if not args.no_single]
    if args.two_node:
        setups.append((f"{max(counts)} GPUs as 2 nodes x {max(counts) // 2}", max(counts), two_nodes, ()))
    if args.fsdp:
        setups += [(f"{max(counts)} GPUs, FSDP full shard", max(counts), single_node,
                    ("fsdp={sharding_strategy: FULL_SHARD}",)),
                   (f"{max(counts)} GPUs, FSDP2", max(counts), single_node, ("fsdp={version: 2}",))]
    rows = []
    for name, gpus, run, extra in setups:
        extra = (*extra, *args.override)
        try:
            rows.append({"setup": name, "gpus": gpus, "samples_per_sec": run(args, gpus, tok, mds, extra)})
            print(f"{name}: {rows[-1]['samples_per_sec']:.0f} samples/s", flush=True)
        except RuntimeError as exc:  # report the others
            print(f"{name}: FAILED\n{exc}", flush=True)
    rows = [r for r in rows if r["samples_per_sec"]]
    base = rows[0]["samples_per_sec"] / rows[0]["gpus"]
    print(f"Mosaic BERT-Base, seq 128, {args.per_gpu_batch} rows per GPU per step, bf16, "
          f"throughput over the last {args.window} of {args.steps} steps")
    print(f"{'setup':<28} {'samples/s':>10} {'tokens/s':>10} {'speed-up':>9} {'efficiency':>10}")
    for row in rows:
        row["tokens_per_sec"] = row["samples_per_sec"] * 128
        row["speedup"] = row["samples_per_sec"] / rows[0]["samples_per_sec"]
        row["efficiency"] = row["samples_per_sec"] / (base * row["gpus"])
        print(f"{row['setup']:<28} {row['samples_per_sec']:>10.0f} {row['tokens_per_sec'] / 1e3:>9.0f}k "
              f"{row['speedup']:>8.2f}x {100 * row['efficiency']:>9.1f}%")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
