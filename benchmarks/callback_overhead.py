"""What RelabscopeCallback costs a Lightning fit: the same fit with and without it, in one
process.

Both arms train the same small CNN from the same seed on the same generated images (made
once, outside the timings); the arms alternate (on/off, off/on, ...) so drift in machine
load hits both. An epoch's time is the interval between two consecutive ends of a training
epoch, as a callback that runs after every other one sees them (the training and
validation passes and, in the "on" arm, everything the log adds: the embedding hook, the
per-batch records and the commit, which runs in the background); each trial's first epoch
is warm-up and not counted. The figure of merit is the ratio of the median epoch times,
on / off, and what it comes to per training batch.

Where the "on" arm's time goes, measured in the same trials: the training thread's CPU
time inside the callback's hooks and ``labels()`` per epoch (``thread_time``: what the
loop waits for), the writer's commit of each epoch (its background thread), and the
process's CPU time per epoch in both arms (on a machine whose cores training keeps busy,
the background work costs wall time too). On a small shared machine the wall ratio moves
by several percent from run to run; the CPU figures move less.

    python benchmarks/callback_overhead.py                           # CPU, the defaults
    python benchmarks/callback_overhead.py --device cuda --num-train 50000 --image-size 32 \\
        --batch-size 256                                             # a GPU setting

Prints a table and writes JSON next to this file under results/, rewritten after every
trial (temp file + rename; ``complete`` false until the last), so a run cut off by a time
limit keeps the trials that finished.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from relabscope.atomic import atomic_write
from relabscope.integrations.lightning import RelabscopeCallback


class SmallCNN(pl.LightningModule):
    """Two conv layers and a linear ``backbone`` (the embedding), a linear head."""

    def __init__(self, channels: int, classes: int, size: int, relabscope: RelabscopeCallback | None) -> None:
        super().__init__()
        self.backbone = torch.nn.Sequential(
            torch.nn.Conv2d(channels, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(2),
            torch.nn.Flatten(), torch.nn.Linear(128, 64), torch.nn.ReLU())
        self.head = torch.nn.Linear(64, classes)
        self.relabscope = relabscope

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        x, y, ids = batch
        labels = self.relabscope.labels(ids) if self.relabscope is not None else y
        logits = self.head(self.backbone(x))
        return {"loss": F.cross_entropy(logits, labels), "logits": logits}

    def validation_step(self, batch: list[torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        return {"logits": self.head(self.backbone(batch[0]))}

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)


class EpochClock(pl.Callback):
    """Host time and process CPU time at the end of each training epoch (placed after the
    logging callback)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.cpu: list[float] = []

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.times.append(time.perf_counter())
        self.cpu.append(time.process_time())


class TimedCallback(RelabscopeCallback):
    """RelabscopeCallback that adds up the training thread's CPU time in its hooks and in
    ``labels()`` (the step's call), per epoch."""

    HOOKS = ("labels", "on_train_batch_end", "on_validation_batch_end", "on_train_epoch_start",
             "on_train_epoch_end", "on_validation_end")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.hook_seconds: list[float] = [0.0]
        for name in self.HOOKS:
            setattr(self, name, self._timed(getattr(self, name)))

    def _timed(self, hook: Any) -> Any:
        def run(*args: Any, **kwargs: Any) -> Any:
            start = time.thread_time()
            try:
                return hook(*args, **kwargs)
            finally:
                self.hook_seconds[-1] += time.thread_time() - start
        return run

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.hook_seconds.append(0.0)  # before the timed body adds this hook's own time
        super().on_train_epoch_start(trainer, pl_module)


def make_data(n: int, classes: int, size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    templates = torch.randn(classes, 3, size, size, generator=g)
    y = torch.arange(n) % classes
    return templates[y] + torch.randn(n, 3, size, size, generator=g), y


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--num-train", type=int, default=4096)
    ap.add_argument("--num-test", type=int, default=1024)
    ap.add_argument("--classes", type=int, default=7)
    ap.add_argument("--image-size", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=4, help="epochs per trial; the first is warm-up")
    ap.add_argument("--repeats", type=int, default=3, help="trials per arm")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "callback_overhead.json")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")  # Lightning's advice about workers and loggers

    x_train, y_train = make_data(args.num_train, args.classes, args.image_size)
    x_test, y_test = make_data(args.num_test, args.classes, args.image_size, seed=1)
    train = DataLoader(TensorDataset(x_train, y_train, torch.arange(args.num_train)),
                       batch_size=args.batch_size, shuffle=True)
    test = DataLoader(TensorDataset(x_test, y_test, torch.arange(args.num_test)), batch_size=args.batch_size)
    batches = len(train)

    def trial(arm: str) -> list[float]:
        pl.seed_everything(0, verbose=False)
        clock = EpochClock()
        with tempfile.TemporaryDirectory() as tmp:
            log = TimedCallback(Path(tmp) / "run.h5", y_train, y_test, embedding_layer="backbone") \
                if arm == "on" else None
            model = SmallCNN(3, args.classes, args.image_size, log)
            trainer = pl.Trainer(max_epochs=args.epochs, accelerator=args.device, devices=1, logger=False,
                                 enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                                 num_sanity_val_steps=0, callbacks=[*([log] if log else []), clock])
            trainer.fit(model, train, test)
            if log is not None:  # epoch e's hooks: from its start to the next one's (the first is warm-up)
                hooks["on"] += log.hook_seconds[2:]
                commits["on"] += log.capture._writer.commit_seconds[1:]  # type: ignore[union-attr]
        cpu[arm] += [b - a for a, b in zip(clock.cpu, clock.cpu[1:])]
        return [b - a for a, b in zip(clock.times, clock.times[1:])]

    arms = ["off", "on"]
    times: dict[str, list[float]] = {arm: [] for arm in arms}
    cpu: dict[str, list[float]] = {arm: [] for arm in arms}
    hooks: dict[str, list[float]] = {"on": []}
    commits: dict[str, list[float]] = {"on": []}

    def med_ms(values: list[float]) -> float | None:
        return statistics.median(values) * 1e3 if values else None

    def summary(trials: int, complete: bool) -> dict[str, Any]:
        med = {arm: statistics.median(t) if t else None for arm, t in times.items()}
        on, off = med["on"], med["off"]
        result: dict[str, Any] = {
            "device": args.device,
            "device_name": torch.cuda.get_device_name() if args.device == "cuda" else platform.processor() or "cpu",
            "torch": torch.__version__,
            "lightning": pl.__version__,
            "platform": platform.platform(),
            "threads": torch.get_num_threads(),
            "config": {k: getattr(args, k) for k in ("num_train", "num_test", "classes", "image_size", "batch_size",
                                                    "epochs")},
            "train_batches_per_epoch": batches,
            "timed_epochs_per_trial": args.epochs - 1,
            "trials_done": trials,
            "complete": complete,
            "epoch_seconds": times,
            "median_epoch_on_s": on,
            "median_epoch_off_s": off,
            "ratio_on_off": on / off if on and off else None,
            "overhead_ms_per_train_batch": (on - off) / batches * 1e3 if on and off else None,
            "cpu_epoch_seconds": cpu,
            "median_cpu_epoch_ms": {arm: med_ms(values) for arm, values in cpu.items()},
            "cpu_ratio_on_off": statistics.median(cpu["on"]) / statistics.median(cpu["off"])
            if cpu["on"] and cpu["off"] else None,
            "where_on_arm_time_goes": {
                "training_thread_in_callback_ms_per_epoch": med_ms(hooks["on"]),
                "training_thread_in_callback_ms_per_train_batch": (med_ms(hooks["on"]) or 0) / batches
                if hooks["on"] else None,
                "writer_commit_ms_per_epoch": med_ms(commits["on"]),
            },
        }
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
            print(f"trial {r + 1}/{args.repeats} {arm:>4}: epochs {', '.join(f'{t:.3f}' for t in epochs)} s", flush=True)

    result = summary(done, complete=True)
    print()
    print(f"{'arm':<6}{'median epoch s':>16}{'min':>8}{'max':>8}{'train img/s':>14}")
    for arm in arms:
        med = statistics.median(times[arm])
        print(f"{arm:<6}{med:>16.3f}{min(times[arm]):>8.3f}{max(times[arm]):>8.3f}{args.num_train / med:>14.0f}")
    ratio, per_batch = result["ratio_on_off"], result["overhead_ms_per_train_batch"]
    print(f"ratio on/off: {ratio:.3f}, {per_batch:.2f} ms per training batch  ({args.device}, {args.num_train} train + "
          f"{args.num_test} val images, {args.image_size}px, batch {args.batch_size}, {batches} batches/epoch, "
          f"{args.epochs - 1} timed epochs x {args.repeats} trials per arm)")
    where = result["where_on_arm_time_goes"]
    if where["training_thread_in_callback_ms_per_epoch"] is not None:
        print(f"process CPU per epoch: on {result['median_cpu_epoch_ms']['on']:.0f} ms, off "
              f"{result['median_cpu_epoch_ms']['off']:.0f} ms (ratio {result['cpu_ratio_on_off']:.3f}); the callback's "
              f"hooks on the training thread {where['training_thread_in_callback_ms_per_epoch']:.1f} ms per epoch "
              f"({where['training_thread_in_callback_ms_per_train_batch']:.2f} ms per training batch), the writer's "
              f"commit {where['writer_commit_ms_per_epoch']:.1f} ms per epoch (background)")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
