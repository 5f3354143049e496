"""Terminal progress: a bar per epoch (loss, accuracy, relabels so far) and a line per
completed epoch. The bar only shows on a terminal; the epoch lines always print."""

from __future__ import annotations

import sys
from typing import TextIO

from tqdm.auto import tqdm

from relabscope.training.hooks import EpochSummary, Hook, RunInfo, RunResult


class ProgressHook(Hook):
    def __init__(self, stream: TextIO | None = None):
        self.stream = stream or sys.stderr
        self.bar: tqdm | None = None
        self.epochs = 0
        self.steps = 0

    def on_run_start(self, run: RunInfo) -> None:
        cfg = run.config
        self.epochs, self.steps = cfg.epochs, run.steps_per_epoch
        n_train = int(run.samples.train_mask.sum())
        verb = "resuming" if run.start_epoch else "training"
        self._write(
            f"{verb} {cfg.method} on {cfg.dataset} ({n_train} train / {len(run.samples) - n_train} test images, "
            f"{len(run.class_names)} classes) on {run.device} -> {run.run_dir}"
            + (f", from epoch {run.start_epoch + 1}" if run.start_epoch else "")
        )

    def on_progress(self, epoch: int, done: int, total: int, stats: dict[str, float]) -> None:
        if self.bar is None:
            self.bar = tqdm(total=total, desc=f"epoch {epoch + 1}/{self.epochs}", unit="batch",
                            file=self.stream, leave=False, dynamic_ncols=True, disable=None)
        self.bar.n = done
        self.bar.set_postfix(loss=f"{stats['loss']:.3f}", acc=f"{stats['acc']:.1%}",
                             relabels=stats["relabels"], refresh=True)

    def on_epoch_end(self, summary: EpochSummary) -> None:
        self._close_bar()

    def on_epoch_complete(self, epoch: int, metrics: dict[str, float]) -> None:
        self._write(
            f"epoch {epoch + 1}/{self.epochs}  loss {metrics['train_loss']:.3f}  "
            f"train acc {metrics['train_acc']:.1%}  test acc {metrics['test_acc']:.1%}  "
            f"relabels {metrics['relabels']}"
            + (f" (guards vetoed {metrics['vetoed']})" if "vetoed" in metrics else "")
            + f"  {metrics['seconds']:.1f}s"
        )

    def on_run_end(self, result: RunResult) -> None:
        self._close_bar()

    def _close_bar(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def _write(self, line: str) -> None:
        tqdm.write(line, file=self.stream)
