"""``relabscope demo``: SCN and SCN-C trained on the synthetic data set with the same
injected noise, ready to compare in the dashboard."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from relabscope.analysis.summary import run_numbers
from relabscope.config import resolve
from relabscope.errors import RunDirError
from relabscope.rundir import holds_run
from relabscope.training.runner import train

DEMO_METHODS = ("scn", "scn-c")


def demo_runs(out: str | Path = "runs/demo", *, noise: float = 0.2, epochs: int | None = None,
              progress: bool = True, log: Callable[[str], None] = print) -> list[Path]:
    """Train (or reuse, when already finished) ``OUT/scn-NN`` and ``OUT/scn-c-NN`` and
    return their directories. A run left unfinished (stopped, or killed) is resumed; one
    that cannot be (its log damaged, its checkpoint gone) is refused in one line, never
    replaced."""
    out = Path(out)
    dirs = []
    for method in DEMO_METHODS:
        run_dir = out / f"{method}-{round(noise * 100):02d}"
        options = {"method": method, "noise": noise, "out": str(run_dir)}
        if epochs is not None:
            options["epochs"] = epochs
        try:
            done = run_numbers(run_dir)["status"] == "finished"
        except RunDirError:
            done = False
        if done:
            log(f"demo: reusing {run_dir} (finished)")
        elif holds_run(run_dir):
            log(f"demo: resuming {run_dir} (unfinished)")
            train({"epochs": epochs} if epochs is not None else None, resume=run_dir, progress=progress, log=log)
        else:
            log(f"demo: training {method} on synthetic data with {noise:.0%} noise into {run_dir}")
            train(resolve(options), overwrite=True, progress=progress, log=log)
        dirs.append(run_dir)
    return dirs
