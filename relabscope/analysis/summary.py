"""The few numbers that sum up a finished run, as printed after ``relabscope train``."""

from __future__ import annotations

from pathlib import Path
from typing import TypedDict

import numpy as np

from relabscope.analysis.flipflops import count_flipflops
from relabscope.analysis.run import Run
from relabscope.runlog.reader import RunLogReader


class RunNumbers(TypedDict):
    """A run's numbers: counts, the last test accuracy (NaN before the first epoch), its
    status ("running", "finished", ...) and the log's path."""

    epochs: int
    test_acc: float
    relabels: int
    flipflops: int
    relabelled_samples: int
    status: str
    log: str


def run_numbers(path: str | Path) -> RunNumbers:
    """Epochs, last test accuracy, relabel events and flip-flops of a run log."""
    with RunLogReader(path) as log:
        n = log.num_epochs
        events = log.relabels()
        return {
            "epochs": n,
            "test_acc": float(log.epoch_array("test_acc", -1)) if n else float("nan"),
            "relabels": len(events),
            "flipflops": count_flipflops(events["sample"], events["old"], events["new"]),
            "relabelled_samples": int(len(np.unique(events["sample"]))),
            "status": log.status,
            "log": str(log.path),
        }


def class_balance_lines(path: str | Path) -> list[str]:
    """One ``warning:`` line per class relabelling emptied or shrank below half its given
    size (``Run.class_warnings``)."""
    with Run(path) as run:
        return [f"warning: {m}" for m in run.class_warnings()["message"]]


def run_summary(path: str | Path, seconds: float | None = None) -> str:
    """What the run achieved, where its log is, and a warning line per class relabelling
    emptied or shrank below half its given size."""
    s = run_numbers(path)
    took = ""
    if seconds is not None:
        minutes, secs = divmod(int(round(seconds)), 60)
        took = f" in {minutes}m {secs:02d}s" if minutes else f" in {secs}s"
    return (
        f"{s['status']}: {s['epochs']} epochs{took} · test accuracy {s['test_acc']:.1%} · "
        f"{s['relabels']} relabel events on {s['relabelled_samples']} samples ({s['flipflops']} flip-flops)\n"
        f"run log: {s['log']}"
    ) + "".join("\n" + line for line in class_balance_lines(path))
