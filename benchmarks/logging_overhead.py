"""What the run log costs: training with the run-log hook on and off, in one process.

Both arms train the same config from the same seed on the same prepared data (decoded
once, outside the timings); the arms alternate (on/off, off/on, ...) so drift in machine
load hits both. An epoch's time is the interval between two consecutive "epoch complete"
events (training and test passes, checkpoint and, in the "on" arm, everything the log
adds, including its background commit); each trial's first epoch is warm-up and not
counted. The figure of merit is the ratio of the median epoch times, on / off.

A third arm, ``probe``, logs with the eval-mode probe pass every epoch (``--probe-every
1``: the training images again, without augmentation, in eval mode, whose embeddings then
define every distance the views read); its ratio to ``on`` is what that pass costs.

    python benchmarks/logging_overhead.py                       # CPU, the default config
    python benchmarks/logging_overhead.py --arms off,on,probe   # + the probe pass's cost
    python benchmarks/logging_overhead.py --device cuda --image-size 224 \\
        --batch-size 256 --amp --num-train 20000 --epochs 3     # the GPU setting

Prints a table and writes JSON next to this file under results/, rewritten after every
trial (temp file + rename; ``complete`` false until the last), so a run cut off by a time
limit keeps the trials that finished (the ratio then is over those).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from relabscope.atomic import atomic_write
from relabscope.config import resolve
from relabscope.data.pipeline import default_workers, load_images, prepare
from relabscope.methods import build_method
from relabscope.training.log_hook import RunLogHook
from relabscope.training.hooks import Hook
from relabscope.training.loop import Trainer
from relabscope.training.runner import pick_device, run_metadata


class EpochClock(Hook):
    """Host time at which each epoch is complete (log committed, checkpoint written)."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def on_epoch_complete(self, epoch: int, metrics: dict[str, float]) -> None:
        self.times.append(time.perf_counter())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--method", default="scn-c")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--image-size", type=int)
    ap.add_argument("--batch-size", type=int)
    ap.add_argument("--amp", action="store_true")
    ap.add_argument("--num-train", type=int, help="synthetic training images (default: the data set's)")
    ap.add_argument("--epochs", type=int, default=3, help="epochs per trial; the first is warm-up")
    ap.add_argument("--repeats", type=int, default=3, help="trials per arm")
    ap.add_argument("--arms", default="off,on", help="off (no log), on (the log), probe (the log + a probe pass "
                                                      "every epoch), comma-separated")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "logging_overhead.json")
    args = ap.parse_args()

    overrides = {"method": args.method, "device": args.device, "epochs": args.epochs, "amp": args.amp}
    if args.image_size:
        overrides["image_size"] = args.image_size
    if args.batch_size:
        overrides["batch_size"] = args.batch_size
    if args.num_train:
        overrides["dataset_options"] = {"num_train": args.num_train}
    cfg = resolve(overrides)
    device = pick_device(cfg.device)
    if device.type == "cuda":  # what the runner (relabscope train) sets: cuDNN autotuning, TF32 matmuls
        torch.backends.cudnn.benchmark = True
        torch.set_float32_matmul_precision("high")
    data, train_b, test_b = load_images(prepare(cfg), device, default_workers(), cfg.cache_gb, print)
    meta = run_metadata(cfg, device, data.fingerprint, len(data.train), len(data.test))

    def trial(arm: str) -> list[float]:
        arm_cfg = dataclasses.replace(cfg, probe_every=1 if arm == "probe" else 0)
        torch.manual_seed(cfg.seed)
        method = build_method(cfg.method, len(data.class_names), arm_cfg)
        clock = EpochClock()
        hooks: list[Hook] = [clock] + ([RunLogHook()] if arm != "off" else [])
        with tempfile.TemporaryDirectory() as tmp:
            Trainer(arm_cfg, data, train_b, test_b, method, device, hooks, Path(tmp), meta).fit()
        return [b - a for a, b in zip(clock.times, clock.times[1:])]

    arms = [a.strip() for a in args.arms.split(",")]
    if not {"on", "off"} <= set(arms) or set(arms) - {"on", "off", "probe"}:
        raise SystemExit("--arms: give on and off, and optionally probe")
    times: dict[str, list[float]] = {arm: [] for arm in arms}
    images = len(data.train)

    def summary(trials: int, complete: bool) -> dict[str, Any]:
        med = {arm: statistics.median(t) if t else None for arm, t in times.items()}
        on, off, probe = med["on"], med["off"], med.get("probe")
        result: dict[str, Any] = {
            "device": str(device),
            "device_name": meta["device_name"],
            "torch": torch.__version__,
            "platform": platform.platform(),
            "config": {k: getattr(cfg, k) for k in ("method", "image_size", "batch_size", "amp", "epochs")},
            "num_train": len(data.train),
            "num_test": len(data.test),
            "timed_epochs_per_trial": args.epochs - 1,
            "trials_done": trials,
            "complete": complete,
            "epoch_seconds": times,
            "median_epoch_on_s": on,
            "median_epoch_off_s": off,
            "ratio_on_off": on / off if on and off else None,
            "train_images_per_s_on": images / on if on else None,
            "train_images_per_s_off": images / off if off else None,
        }
        if probe is not None:
            result.update(median_epoch_probe_s=probe, ratio_probe_on=probe / on if on else None,
                          train_images_per_s_probe=images / probe)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(args.out) as fh:
            fh.write(json.dumps(result, indent=2).encode())
        return result

    done = 0
    for r in range(args.repeats):
        for arm in (arms if r % 2 == 0 else arms[::-1]):
            epochs = trial(arm)
            times[arm] += epochs
            done += 1
            summary(done, complete=False)
            print(f"trial {r + 1}/{args.repeats} {arm:>5}: epochs {', '.join(f'{t:.2f}' for t in epochs)} s", flush=True)

    result = summary(done, complete=True)
    on, off, probe = result["median_epoch_on_s"], result["median_epoch_off_s"], result.get("median_epoch_probe_s")
    print()
    print(f"{'arm':<8}{'median epoch s':>16}{'min':>8}{'max':>8}{'train img/s':>14}")
    for arm in arms:
        med = statistics.median(times[arm])
        print(f"{arm:<8}{med:>16.2f}{min(times[arm]):>8.2f}{max(times[arm]):>8.2f}{images / med:>14.1f}")
    print(f"ratio on/off: {on / off:.3f}  ({device}, {cfg.method}, {len(data.train)} train images, "
          f"{cfg.image_size}px, batch {cfg.batch_size}{', bf16' if cfg.amp else ''})")
    if probe is not None:
        print(f"ratio probe/on: {probe / on:.3f}  (the eval-mode probe pass over the training set, every epoch)")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
