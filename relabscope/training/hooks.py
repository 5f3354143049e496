"""The trainer's event protocol.

The trainer knows nothing about files, terminals or HDF5: it emits events, and hooks act
on them. A hook subclasses :class:`Hook` and overrides what it needs:

==================  =====================================================================
``on_run_start``    once, before the first epoch (also after ``--resume``)
``on_batch_end``    every batch of every pass (train, test, probe), tensors on the device
``on_relabel``      every training batch once relabelling is active (``new_labels`` set)
``on_progress``     at most twice a second: host-side running numbers for displays
``on_epoch_end``    after an epoch's passes; may return a Future the trainer waits on
                    before it checkpoints and reports the epoch complete
``on_epoch_complete`` the epoch is on disk (hooks' futures done, checkpoint written)
``on_run_end``      once, with the result (also when training stops on an error)
==================  =====================================================================

Batch tensors stay on the device: a hook that needs them on the host copies them
asynchronously (see :class:`~relabscope.runlog.writer.RunLogWriter`) so that the training
step never waits for it.
"""

from __future__ import annotations

from concurrent.futures import Future
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch


@dataclass
class BatchRecord:
    """One batch's per-sample results. ``sample_ids`` are run-log rows (test samples come
    after the training samples). ``labels`` are the labels in effect the loss used (train)
    or the given labels (test, probe). Once relabelling is active, ``new_labels`` are the
    labels in effect after the batch and ``proposed`` the labels the method proposed
    before the relabel guards refused any (``relabscope.training.guards``; the same labels
    when no guard is on)."""

    phase: str
    epoch: int
    step: int
    sample_ids: torch.Tensor
    labels: torch.Tensor
    logits: torch.Tensor
    embeddings: torch.Tensor
    loss: torch.Tensor | None = None
    fields: dict[str, torch.Tensor] = field(default_factory=dict)
    new_labels: torch.Tensor | None = None
    proposed: torch.Tensor | None = None

    def as_mapping(self) -> dict[str, Any]:
        """The fields by name, the tensors themselves (no copies): what
        ``RunLogWriter.log_record`` takes."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


@dataclass
class RunInfo:
    """What a run is, for hooks that set up outputs. ``guards``: the relabel guards
    switched on, in the order they apply (empty when none is)."""

    config: Any
    run_dir: Path
    class_names: tuple[str, ...]
    samples: Any  # relabscope.runlog.schema.SampleTable
    method: Any  # relabscope.methods.Method
    device: torch.device
    start_epoch: int
    steps_per_epoch: int
    metadata: dict[str, Any]
    skipped: list[str]
    guards: tuple[str, ...] = ()


@dataclass
class EpochSummary:
    """An epoch's end: host-side metrics plus arrays a log may keep (learned centers), and
    with relabel guards on the relabels each refused this epoch, per class left (``vetoed``:
    guards x classes, every rank's, in ``RunInfo.guards``' order)."""

    epoch: int
    metrics: dict[str, float]
    arrays: dict[str, torch.Tensor]
    save_embeddings: bool
    unreadable: int = 0
    vetoed: torch.Tensor | None = None


@dataclass
class RunResult:
    """How a run ended."""

    run_dir: Path
    status: str  # finished | diverged | interrupted
    epochs_done: int
    last_metrics: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0


class Hook:
    """Base class: every event is a no-op until overridden."""

    def on_run_start(self, run: RunInfo) -> None:
        pass

    def on_batch_end(self, record: BatchRecord) -> None:
        pass

    def on_relabel(self, record: BatchRecord) -> None:
        pass

    def on_progress(self, epoch: int, done: int, total: int, stats: dict[str, float]) -> None:
        pass

    def on_epoch_end(self, summary: EpochSummary) -> Future | None:
        return None

    def on_epoch_complete(self, epoch: int, metrics: dict[str, float]) -> None:
        pass

    def on_run_end(self, result: RunResult) -> None:
        pass


class HookList(Hook):
    """Several hooks as one; ``on_epoch_end`` returns the futures of all of them."""

    def __init__(self, hooks: list[Hook]):
        self.hooks = list(hooks)

    def on_run_start(self, run: RunInfo) -> None:
        for h in self.hooks:
            h.on_run_start(run)

    def on_batch_end(self, record: BatchRecord) -> None:
        for h in self.hooks:
            h.on_batch_end(record)

    def on_relabel(self, record: BatchRecord) -> None:
        for h in self.hooks:
            h.on_relabel(record)

    def on_progress(self, epoch: int, done: int, total: int, stats: dict[str, float]) -> None:
        for h in self.hooks:
            h.on_progress(epoch, done, total, stats)

    def epoch_end(self, summary: EpochSummary) -> list[Future]:
        return [f for h in self.hooks if (f := h.on_epoch_end(summary)) is not None]

    def on_epoch_complete(self, epoch: int, metrics: dict[str, float]) -> None:
        for h in self.hooks:
            h.on_epoch_complete(epoch, metrics)

    def on_run_end(self, result: RunResult) -> None:
        errors = []
        for h in self.hooks:
            try:
                h.on_run_end(result)
            except Exception as exc:  # every hook gets to close; the first error wins
                errors.append(exc)
        if errors:
            raise errors[0]
