"""Training speed of each method: one timed epoch per method, images per second.

Every method trains the same synthetic data set with the same explicit batch size (the
method presets' batch sizes, e.g. DMUE's 72, are overridden so the methods are
comparable; the JSON keeps what the preset would have used) through ``relabscope.train``,
run log included, progress bar off, into a temporary run directory. ``relabel_epoch`` is
1, so the timed epoch of a relabelling method includes its relabelling.

Each method trains ``--epochs`` epochs; all but the last are warm-up (cuDNN autotuning,
allocator and caches) and only the LAST epoch is reported:

- epoch s: the loop's own ``seconds`` metric (training pass + test pass);
- train s: the training pass alone, from the epoch's start to the host sync that ends
  the pass (the last ``on_progress`` event). The start is taken as the time of the
  ``on_epoch_end`` event minus ``seconds``; the few host operations between the end of
  the timing and that event (scheduler step, queueing the run-log commit) make train s
  an underestimate by that much (sub-millisecond unless the log writer's queue is full);
- train img/s: training images / train s; vs base: that over baseline's in the same run;
- peak GiB: ``torch.cuda.max_memory_allocated`` over the method's whole run (reset per
  method); CUDA only.

Images are stored at ``--stored-size`` (default: 100 px, RAF-DB's aligned size, or the
image size if smaller) and resized on the device to ``--image-size``, as RAF-DB is. A
method that fails (out of memory, a diverging loss) is reported with its one-line error
and the others go on.

    python benchmarks/method_speed.py                     # all methods; CUDA if available
    python benchmarks/method_speed.py --device cuda --amp --image-size 224 \\
        --batch-size 64 --num-train 8192 --epochs 2     # the GPU setting (the defaults)
    python benchmarks/method_speed.py --device cpu --image-size 32 --batch-size 32 \\
        --num-train 128 --epochs 2 --methods baseline,rul,dmue \\
        --out benchmarks/results/method_speed_cpu_check.json   # a quick check on a CPU

Prints a table and writes JSON (default: results/method_speed.json next to this file),
rewritten after every method (temp file + rename; ``complete`` false until the last), so a
run cut off by a time limit keeps the methods that finished.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

import relabscope
from relabscope.atomic import atomic_write
from relabscope.config import resolve
from relabscope.data import load_dataset
from relabscope.methods import METHODS
from relabscope.training.hooks import EpochSummary, Hook, RunInfo
from relabscope.training.runner import pick_device, train

DEFAULT_METHODS = "baseline,scn,scn-c,rul,rul-c,dmue,dmue-c"
RAFDB_SIZE = 100  # RAF-DB's aligned images; the device upsamples them to the image size
GIB = float(1 << 30)


class EpochTimer(Hook):
    """Per epoch: the loop's ``seconds`` and the training pass's seconds."""

    def __init__(self) -> None:
        self.epochs: list[dict[str, float]] = []
        self.metadata: dict[str, Any] = {}
        self.steps_per_epoch = 0
        self.batch_size = 0
        self._train_end: float | None = None

    def on_run_start(self, run: RunInfo) -> None:
        self.metadata = dict(run.metadata)
        self.steps_per_epoch = run.steps_per_epoch
        self.batch_size = run.config.batch_size

    def on_progress(self, epoch: int, done: int, total: int, stats: dict[str, float]) -> None:
        if done == total:  # the training pass's closing report, right after a host sync
            self._train_end = time.perf_counter()

    def on_epoch_end(self, summary: EpochSummary) -> None:
        now = time.perf_counter()
        seconds = float(summary.metrics["seconds"])
        train_s = (self._train_end - (now - seconds)) if self._train_end is not None else float("nan")
        self.epochs.append({"epoch_s": seconds, "train_s": train_s})
        self._train_end = None
        return None


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".strip().rstrip(":")


def run_method(method: str, base: dict[str, Any], device: torch.device, num_train: int) -> dict[str, Any]:
    preset_batch = resolve({"method": method, "dataset": "synthetic"}).batch_size
    entry: dict[str, Any] = {"method": method, "ok": False, "preset_batch_size": preset_batch}
    timer = EpochTimer()
    lines: list[str] = []
    if device.type == "cuda":
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    try:
        with tempfile.TemporaryDirectory(prefix=f"method-speed-{method}-") as tmp:
            cfg = resolve({**base, "method": method, "out": str(Path(tmp) / "run")})
            entry["batch_size"] = cfg.batch_size
            result = train(cfg, progress=False, hooks=[timer], log=lines.append)
            entry["status"] = result.status
            if result.status != "finished":
                raise RuntimeError(f"run ended {result.status} after {result.epochs_done} epochs")
    except Exception as exc:  # e.g. torch.OutOfMemoryError, DivergedError: report, go on
        entry["error"] = one_line(exc)
    finally:
        if device.type == "cuda":
            entry["peak_gpu_gib"] = torch.cuda.max_memory_allocated(device) / GIB
            gc.collect()
            torch.cuda.empty_cache()
    entry["log"] = lines
    entry["steps_per_epoch"] = timer.steps_per_epoch
    entry["epochs"] = timer.epochs
    entry["device_name"] = timer.metadata.get("device_name")
    if "error" not in entry:
        if not timer.epochs:
            entry["error"] = "no epoch was timed"
        else:
            last = timer.epochs[-1]
            entry.update(ok=True, epoch_s=last["epoch_s"], train_s=last["train_s"],
                         train_images_per_s=num_train / last["train_s"],
                         epoch_images_per_s=num_train / last["epoch_s"])
    return entry


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None or value != value else format(value, spec)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", default=DEFAULT_METHODS, help=f"comma-separated (default: {DEFAULT_METHODS})")
    ap.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    ap.add_argument("--amp", action=argparse.BooleanOptionalAction, default=True,
                    help="bf16 autocast on CUDA (default: on; ignored on the CPU)")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--stored-size", type=int,
                    help=f"side of the stored synthetic images (default: min({RAFDB_SIZE}, image size))")
    ap.add_argument("--batch-size", type=int, default=64, help="for every method (presets are overridden)")
    ap.add_argument("--num-train", type=int, default=8192, help="synthetic training images")
    ap.add_argument("--num-test", type=int, default=512, help="synthetic test images (the test pass is in epoch s)")
    ap.add_argument("--epochs", type=int, default=2, help="per method; all but the last are warm-up")
    ap.add_argument("--workers", type=int, help="DataLoader workers (default: the project's)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "method_speed.json")
    args = ap.parse_args()

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        ap.error(f"unknown method(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(METHODS)}")
    if args.epochs < 1:
        ap.error("--epochs must be at least 1")
    if args.epochs == 1:
        print("warning: --epochs 1 times the warm-up epoch itself (cuDNN autotuning, caches)", file=sys.stderr)
    device = pick_device(args.device)
    amp = args.amp and device.type == "cuda"
    if args.amp and not amp:
        print(f"note: --amp only applies on CUDA; {device} trains in float32", file=sys.stderr)
    stored = args.stored_size or min(RAFDB_SIZE, args.image_size)
    options = {"num_train": args.num_train, "num_test": args.num_test, "size": stored}

    t = time.perf_counter()  # render (or read) the data once, outside every method's run
    load_dataset("synthetic", None, **options)
    print(f"synthetic data: {args.num_train} train / {args.num_test} test at {stored}px "
          f"({time.perf_counter() - t:.1f} s to render or read)", flush=True)

    base: dict[str, Any] = {
        "dataset": "synthetic", "dataset_options": options, "device": device.type, "amp": amp,
        "image_size": args.image_size, "batch_size": args.batch_size, "epochs": args.epochs,
        "relabel_epoch": 1, "probe_every": 0,
    }
    if args.workers is not None:
        base["workers"] = args.workers

    entries: list[dict[str, Any]] = []
    started = time.perf_counter()

    def write(complete: bool) -> dict[str, Any]:
        result = summary(entries, device, amp, stored, args, complete)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(args.out) as fh:
            fh.write(json.dumps(result, indent=2).encode())
        return result

    for method in methods:
        e = run_method(method, base, device, args.num_train)
        entries.append(e)
        write(complete=False)
        if e["ok"]:
            epochs = ", ".join(f"{x['epoch_s']:.2f}" for x in e["epochs"])
            print(f"{method}: epochs {epochs} s; last train pass {e['train_s']:.2f} s "
                  f"= {e['train_images_per_s']:.1f} img/s", flush=True)
        else:
            print(f"{method}: FAILED {e['error']}", flush=True)
    result = write(complete=True)
    _print_table(entries, device, result["device_name"], stored, args, amp)
    print(f"wrote {args.out} ({time.perf_counter() - started:.1f} s for {len(methods)} methods)")


def summary(entries: list[dict[str, Any]], device: torch.device, amp: bool, stored: int, args: argparse.Namespace,
            complete: bool) -> dict[str, Any]:
    """The JSON: the methods so far, each against baseline's speed when baseline ran."""
    baseline = next((e for e in entries if e["method"] == "baseline" and e["ok"]), None)
    for e in entries:
        e["vs_baseline"] = e["train_images_per_s"] / baseline["train_images_per_s"] if e["ok"] and baseline else None
    device_name = next((e["device_name"] for e in entries if e.get("device_name")), None)
    if device_name is None:
        device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    return {
        "device": str(device),
        "device_name": device_name,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if device.type == "cuda" else None,
        "relabscope": relabscope.__version__,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "amp": amp,
        "amp_dtype": "bfloat16" if amp else None,
        "image_size": args.image_size,
        "stored_size": stored,
        "batch_size": args.batch_size,
        "num_train": args.num_train,
        "num_test": args.num_test,
        "epochs": args.epochs,
        "timed_epoch": args.epochs,
        "complete": complete,
        "methods": entries,
    }


def _print_table(entries: list[dict[str, Any]], device: torch.device, device_name: str, stored: int,
                 args: argparse.Namespace, amp: bool) -> None:
    print()
    on_cuda = device.type == "cuda"
    head = f"{'method':<10}{'batch':>6}{'epoch s':>9}{'train s':>9}{'train img/s':>13}{'vs base':>9}"
    print(head + (f"{'peak GiB':>10}" if on_cuda else ""))
    for e in entries:
        row = f"{e['method']:<10}{e.get('batch_size', '-')!s:>6}"
        if e["ok"]:
            row += (f"{e['epoch_s']:>9.2f}{e['train_s']:>9.2f}{e['train_images_per_s']:>13.1f}"
                    f"{fmt(e['vs_baseline'], '.2f'):>9}")
            row += f"{fmt(e.get('peak_gpu_gib'), '.2f'):>10}" if on_cuda else ""
        else:
            row += f"  FAILED: {e['error']}"
            row += f" (peak {fmt(e.get('peak_gpu_gib'), '.2f')} GiB)" if on_cuda else ""
        print(row)
    print(f"last of {args.epochs} epochs; {device} ({device_name}), torch {torch.__version__}, "
          f"{args.num_train} train / {args.num_test} test images, {args.image_size}px (stored {stored}px), "
          f"batch {args.batch_size}, {'bf16 autocast' if amp else 'float32'}")


if __name__ == "__main__":
    main()
