"""DMUE-C with and without the center-loss ramp, in float32 and in bf16 autocast.

Reproduces the finding behind ``dmue_center_ramp`` (docs/methods.md, DMUE and DMUE-C):
with the center loss at full weight from the first step, DMUE-C under bf16 autocast
stayed near chance on the synthetic data, while float32 recovered and the ramped loss
trained normally in both precisions.

Each arm trains DMUE-C with the synthetic preset (30 % noise by default, one seed) through
``relabscope.train`` and reports its test accuracy per epoch. ``--precision bf16`` uses
``--amp`` on CUDA. On a CPU, relabscope itself never autocasts (bf16 is slow on CPUs
without bf16 matrix units), so this script switches CPU autocast on for its own runs by
wrapping the trainer's constructor: the same autocast region as on CUDA, only the device
type differs.

    python benchmarks/dmue_center_ramp.py --device cuda              # all four arms
    python benchmarks/dmue_center_ramp.py --device cpu --precision bf16     # both ramps
    python benchmarks/dmue_center_ramp.py --device cpu --precision float32  # another process

Prints a table and writes JSON (default: results/dmue_center_ramp.json next to this file).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

import relabscope
from relabscope.config import resolve
from relabscope.training import loop
from relabscope.training.hooks import EpochSummary, Hook
from relabscope.training.runner import pick_device, train


class Accuracy(Hook):
    """Test accuracy of each epoch."""

    def __init__(self) -> None:
        self.test_acc: list[float] = []

    def on_epoch_end(self, summary: EpochSummary) -> None:
        self.test_acc.append(float(summary.metrics["test_acc"]))


def cpu_autocast() -> None:
    """Make every Trainer built from now on autocast to bf16 on the CPU."""
    build = loop.Trainer.__init__

    def init(self, *args: Any, **kwargs: Any) -> None:
        build(self, *args, **kwargs)
        self._autocast = lambda: torch.autocast("cpu", dtype=torch.bfloat16)

    loop.Trainer.__init__ = init


def run_arm(ramp: bool, bf16: bool, device: torch.device, args: argparse.Namespace) -> dict[str, Any]:
    hook = Accuracy()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="dmue-center-ramp-") as tmp:
        cfg = resolve({"method": "dmue-c", "dataset": "synthetic", "noise": args.noise, "seed": args.seed,
                       "device": device.type, "amp": bf16 and device.type == "cuda",
                       "dmue_center_ramp": ramp, "out": str(Path(tmp) / "run"),
                       **{k: v for k, v in (("epochs", args.epochs), ("limit", args.limit)) if v is not None}})
        train(cfg, progress=False, hooks=[hook], log=lambda line: None)
    return {"ramp": ramp, "precision": "bf16" if bf16 else "float32", "test_acc": hook.test_acc,
            "final_test_acc": hook.test_acc[-1], "seconds": time.perf_counter() - start}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    ap.add_argument("--precision", default="bf16,float32", help="comma-separated: bf16, float32")
    ap.add_argument("--ramp", default="on,off", help="comma-separated: on, off")
    ap.add_argument("--noise", type=float, default=0.3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, help="default: the synthetic preset's 8")
    ap.add_argument("--limit", type=int, help="train on the first N images only (a quick check)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "dmue_center_ramp.json")
    args = ap.parse_args()
    precisions = [p.strip() for p in args.precision.split(",")]
    ramps = [r.strip() for r in args.ramp.split(",")]
    if set(precisions) - {"bf16", "float32"} or set(ramps) - {"on", "off"}:
        ap.error("--precision takes bf16,float32 and --ramp takes on,off")

    device = pick_device(args.device)
    if "bf16" in precisions and device.type == "cpu":
        if "float32" in precisions:  # the CPU switch below holds for the whole process
            ap.error("on a CPU, run --precision bf16 and --precision float32 in separate processes")
        cpu_autocast()

    results = []
    for precision in precisions:
        for ramp in ramps:
            result = run_arm(ramp == "on", precision == "bf16", device, args)
            print(f"ramp {ramp:3s} {precision:7s}: test accuracy per epoch "
                  f"{' '.join(f'{a:.3f}' for a in result['test_acc'])} ({result['seconds']:.0f} s)", flush=True)
            results.append(result)

    print(f"\n{'ramp':5s} {'precision':9s} {'final test acc':>14s}")
    for r in results:
        print(f"{'on' if r['ramp'] else 'off':5s} {r['precision']:9s} {100 * r['final_test_acc']:13.1f}%")
    print(f"dmue-c, synthetic, noise {args.noise}, seed {args.seed}, {device.type}, relabscope {relabscope.__version__}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"device": device.type, "noise": args.noise, "seed": args.seed,
                                    "torch": torch.__version__, "results": results}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
