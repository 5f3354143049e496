"""Training on several ranks: 1 rank against 2 (or more) on the same data, in one command.

Each world size trains the same config from the same seed (``torch.multiprocessing``
ranks joined over gloo on the CPU, or NCCL with ``--device cuda``: the same code paths
torchrun drives). Reported per world size: the median epoch time and training images/s
(the first epoch is warm-up), the bytes of batch records the other ranks sent rank 0 per
training sample and epoch, the seconds rank 0 spent receiving and queueing them, and the
seconds the log writer took to commit an epoch. Speed-up and efficiency are against the
1-rank time measured in the same command.

    python benchmarks/distributed.py                          # CPU, gloo: 1 vs 2 ranks, tiny images
    python benchmarks/distributed.py --device cuda --ranks 1,2,4 --image-size 224 --batch-size 256 \\
        --num-train 20000 --amp                               # a multi-GPU machine

On a 2-core CPU two ranks share the cores, so their speed-up measures overhead, not
scaling; the gathered bytes and the writer's time are the numbers that carry over.
Prints a table and writes JSON to benchmarks/results/distributed.json, rewritten after
every world size (temp file + rename; ``complete`` false until the last), so a run cut off
by a time limit keeps the world sizes that finished.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from relabscope.atomic import atomic_write
from relabscope.config import resolve
from relabscope.data.pipeline import load_images, prepare
from relabscope.methods import build_method
from relabscope.training.distributed import RecordSender, World
from relabscope.training.hooks import Hook
from relabscope.training.log_hook import RunLogHook
from relabscope.training.loop import Trainer
from relabscope.training.runner import pick_device, run_metadata


class EpochClock(Hook):
    """Host time at which each epoch is complete."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def on_epoch_complete(self, epoch: int, metrics: dict[str, float]) -> None:
        self.times.append(time.perf_counter())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank(rank: int, size: int, port: int, options: dict[str, Any], out: str) -> None:
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // size) if options["device"] == "cpu" else 1)
    cfg = resolve(options)
    world = World(rank, size, rank)
    device = pick_device(cfg.device, world)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True  # what the runner (relabscope train) sets
        torch.set_float32_matmul_precision("high")
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", init_method=f"tcp://127.0.0.1:{port}",
                            rank=rank, world_size=size)
    try:
        data, train_b, test_b = load_images(prepare(cfg), device, cfg.workers or 0, cfg.cache_gb, lambda line: None)
        torch.manual_seed(cfg.seed)
        method = build_method(cfg.method, len(data.class_names), cfg)
        clock = EpochClock()
        log_hook = RunLogHook(world) if world.is_main else None
        hooks: list[Hook] = [clock, log_hook if log_hook is not None else RecordSender(world)]
        meta = run_metadata(cfg, device, data.fingerprint, len(data.train), len(data.test))
        with tempfile.TemporaryDirectory() as tmp:
            Trainer(cfg, data, train_b, test_b, method, device, hooks, Path(tmp), meta, world=world).fit()
        if log_hook is not None:
            assert log_hook.writer is not None
            result = {"epoch_seconds": [b - a for a, b in zip(clock.times, clock.times[1:])],
                      "gathered": log_hook.gathered, "commit_seconds": log_hook.writer.commit_seconds,
                      "num_train": len(data.train), "device_name": meta["device_name"]}
            Path(out).write_text(json.dumps(result))
    finally:
        dist.destroy_process_group()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--method", default="scn-c")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--ranks", default="1,2", help="world sizes to time, comma-separated")
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=64, help="the global batch")
    ap.add_argument("--num-train", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=3, help="the first is warm-up")
    ap.add_argument("--amp", action="store_true")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "distributed.json")
    args = ap.parse_args()
    options = {"method": args.method, "device": args.device, "epochs": args.epochs, "image_size": args.image_size,
               "batch_size": args.batch_size, "amp": args.amp, "workers": 0 if args.device == "cpu" else None,
               "dataset_options": {"num_train": args.num_train}}
    prepare(resolve(options))  # draw or cache the data once, before the ranks read it
    rows: list[dict[str, Any]] = []

    def write(complete: bool) -> None:
        base = rows[0]["median_epoch_s"]
        for row in rows:
            row["speedup"] = base / row["median_epoch_s"]
            row["efficiency"] = row["speedup"] / row["ranks"] * rows[0]["ranks"]
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(args.out) as fh:
            fh.write(json.dumps({"rows": rows, "complete": complete, "args": vars(args) | {"out": str(args.out)},
                                "torch": torch.__version__, "platform": platform.platform()}, indent=2).encode())

    for size in (int(r) for r in args.ranks.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "rank0.json"
            mp.spawn(_rank, args=(size, _free_port(), options, str(out)), nprocs=size, join=True)
            r = json.loads(out.read_text())
        epoch = statistics.median(r["epoch_seconds"])
        gathered = r["gathered"][1:] or r["gathered"]
        rows.append({
            "ranks": size, "median_epoch_s": epoch, "train_images_per_s": r["num_train"] / epoch,
            "gathered_bytes_per_sample": (statistics.median(b for b, _ in gathered) / r["num_train"]) if gathered else 0.0,
            "gather_s_per_epoch": statistics.median(s for _, s in gathered) if gathered else 0.0,
            "commit_s_per_epoch": statistics.median(r["commit_seconds"]), "device_name": r["device_name"],
        })
        write(complete=False)
        print(f"{size} rank(s): median epoch {epoch:.2f} s", flush=True)
    write(complete=True)
    print(f"{'ranks':>5} {'epoch s':>9} {'img/s':>9} {'speed-up':>9} {'efficiency':>11} {'B/sample sent':>14} "
          f"{'gather s':>9} {'commit s':>9}")
    for row in rows:
        print(f"{row['ranks']:>5} {row['median_epoch_s']:>9.2f} {row['train_images_per_s']:>9.1f} {row['speedup']:>9.2f} "
              f"{row['efficiency']:>11.0%} {row['gathered_bytes_per_sample']:>14.0f} {row['gather_s_per_epoch']:>9.3f} "
              f"{row['commit_s_per_epoch']:>9.3f}")
    print(f"({args.device}, {args.method}, {args.num_train} train images at {args.image_size} px, global batch "
          f"{args.batch_size}; B/sample sent: records of the ranks other than 0, per training sample of the data set)")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
