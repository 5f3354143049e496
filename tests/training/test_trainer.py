"""``Trainer.fit`` driven directly, on a few random 16 px images and a real method, with a
hook that records events: the order in which an epoch completes (the hooks' commits, then
the checkpoint, then ``on_epoch_complete``) and what each way of stopping leaves behind.

No run log, CLI or subprocess: the loop's own guarantees, in a few seconds.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from relabscope.config import resolve
from relabscope.data.base import ArraySource, FERDataset
from relabscope.data.pipeline import PreparedData, load_images
from relabscope.errors import DivergedError, WriteError
from relabscope.methods import build_method
from relabscope.methods.base import StepOutput
from relabscope.rundir import checkpoint_path
from relabscope.training import checkpoint
from relabscope.training.hooks import BatchRecord, EpochSummary, Hook, HookList, RunInfo, RunResult
from relabscope.training.loop import EpochFinisher, Trainer

CLASSES = ("happy", "sad", "neutral")
COMMIT_DELAY_S = 0.2  # the recorder's "run log" commits this long after an epoch's end
OVERLAP_TIMEOUT_S = 10.0  # a trainer that does not train while completing makes a commit wait this long


def _split(split: str, n: int, seed: int) -> FERDataset:
    images = np.random.default_rng(seed).integers(0, 256, (n, 16, 16, 3), dtype=np.uint8)
    keys = [f"{split}/{i}" for i in range(n)]
    return FERDataset("tiny", CLASSES, split, keys, np.arange(n) % len(CLASSES), ArraySource(images),
                      native_size=16)


class Recorder(Hook):
    """Logs events in order (from the trainer's thread and the completion thread). Its
    ``on_epoch_end`` future is resolved by another thread after a delay, like the run log's
    commit; with ``overlap_epochs`` set, an epoch's commit also waits until the next epoch
    (of that many) trains, which only a trainer that trains while completing lets happen."""

    def __init__(self, run_dir: Path, fail_commit_of: int | None = None, overlap_epochs: int = 0):
        self.run_dir = run_dir
        self.fail_commit_of = fail_commit_of
        self.overlap_epochs = overlap_epochs
        self.events: list[tuple[Any, ...]] = []  # list.append is atomic: two threads may add
        self.commits: dict[int, Future] = {}
        self.training = {e: threading.Event() for e in range(overlap_epochs)}
        self.result: RunResult | None = None

    def on_run_start(self, run: RunInfo) -> None:
        self.events.append(("run_start", run.start_epoch, run.steps_per_epoch))

    def on_batch_end(self, record: BatchRecord) -> None:
        self.events.append(("batch", record.phase, record.epoch))
        if record.phase == "train" and record.epoch in self.training:
            self.training[record.epoch].set()

    def on_epoch_end(self, summary: EpochSummary) -> Future:
        self.events.append(("epoch_end", summary.epoch))
        future: Future = Future()
        self.commits[summary.epoch] = future
        threading.Thread(target=self._commit, args=(summary.epoch, future), daemon=True).start()
        return future

    def _commit(self, epoch: int, future: Future) -> None:
        time.sleep(COMMIT_DELAY_S)
        if epoch + 1 < self.overlap_epochs:
            self.training[epoch + 1].wait(timeout=OVERLAP_TIMEOUT_S)
        self.events.append(("commit", epoch))
        if epoch == self.fail_commit_of:
            future.set_exception(WriteError(f"{self.run_dir}/run.h5: could not be written (No space left on device)"))
        else:
            future.set_result(None)

    def on_epoch_complete(self, epoch: int, metrics: dict[str, float]) -> None:
        self.events.append(("complete", epoch, _checkpoint_epoch(self.run_dir)))

    def on_run_end(self, result: RunResult) -> None:
        self.events.append(("run_end",))
        self.result = result

    def of(self, name: str) -> list[tuple[Any, ...]]:
        return [e for e in self.events if e[0] == name]


def _checkpoint_epoch(run_dir: Path) -> int | None:
    """How many epochs the checkpoint on disk holds (None: no checkpoint yet)."""
    path = checkpoint_path(run_dir)
    return int(checkpoint.load(path)["epoch"]) if path.exists() else None


def _trainer(run_dir: Path, hooks: list[Hook], epochs: int, method: str = "baseline") -> Trainer:
    cfg = resolve({"method": method, "image_size": 16, "batch_size": 4, "epochs": epochs, "workers": 0,
                   "device": "cpu", "embed_every": 1, "relabel_epoch": 1, "seed": 0})
    device = torch.device("cpu")
    data = PreparedData(_split("train", 12, 0), _split("test", 8, 1), fingerprint="tiny")
    data, train_batches, test_batches = load_images(data, device, workers=0, cache_gb=1.0, log=lambda line: None)
    torch.manual_seed(0)
    return Trainer(cfg, data, train_batches, test_batches, build_method(method, len(CLASSES), cfg), device,
                   hooks, run_dir)


def _ended(rec: Recorder) -> tuple[str, int]:
    """``on_run_end`` came last; how the run ended and how many epochs completed."""
    assert rec.events[-1] == ("run_end",) and rec.result is not None
    return rec.result.status, rec.result.epochs_done


def test_an_epoch_completes_after_its_commits_and_then_its_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rec = Recorder(tmp_path, overlap_epochs=2)
    saves: list[tuple[int, bool]] = []  # (epochs in the checkpoint, were that epoch's commits done)
    save = checkpoint.save

    def recording_save(state: dict[str, Any], path: Path) -> None:
        saves.append((state["epoch"], rec.commits[state["epoch"] - 1].done()))
        save(state, path)

    monkeypatch.setattr(checkpoint, "save", recording_save)

    result = _trainer(tmp_path, [rec], epochs=2, method="scn-c").fit()

    assert rec.events[0] == ("run_start", 0, 3)
    assert rec.of("batch")[:5] == [("batch", "train", 0)] * 3 + [("batch", "test", 0)] * 2
    assert saves == [(1, True), (2, True)], "a checkpoint was written before its epoch's commits were done"
    for epoch in (0, 1):  # on_epoch_complete saw this epoch's checkpoint on disk
        assert (rec.events.index(("epoch_end", epoch)) < rec.events.index(("commit", epoch))
                < rec.events.index(("complete", epoch, epoch + 1)))
    assert rec.events.index(("batch", "train", 1)) < rec.events.index(("commit", 0)), \
        "epoch 2 did not train while epoch 1 was being completed"
    assert _ended(rec) == ("finished", 2) and rec.result == result
    assert _checkpoint_epoch(tmp_path) == 2


def test_a_failed_commit_keeps_the_last_checkpointed_epoch(tmp_path: Path) -> None:
    rec = Recorder(tmp_path, fail_commit_of=1)

    with pytest.raises(WriteError) as err:
        _trainer(tmp_path, [rec], epochs=3).fit()

    assert "No space left on device" in str(err.value)
    assert str(err.value).endswith("the last checkpoint written is after epoch 1: resume the run "
                                   "(relabscope train --resume) once the problem is fixed")
    assert rec.of("complete") == [("complete", 0, 1)]
    assert ("batch", "train", 2) in rec.events  # the failure surfaced as epoch 3 was handed over
    assert _ended(rec) == ("interrupted", 1)
    assert _checkpoint_epoch(tmp_path) == 1


def test_a_nan_loss_stops_training_and_keeps_the_last_good_epoch(tmp_path: Path) -> None:
    rec = Recorder(tmp_path)
    trainer = _trainer(tmp_path, [rec], epochs=3)
    step = trainer.method.training_step

    def nan_from_epoch_2(images: torch.Tensor, labels: torch.Tensor, epoch: int) -> StepOutput:
        out = step(images, labels, epoch)
        if epoch >= 1:
            out.loss, out.sample_loss = out.loss * torch.nan, out.sample_loss * torch.nan
        return out

    trainer.method.training_step = nan_from_epoch_2  # type: ignore[method-assign]

    with pytest.raises(DivergedError) as err:
        trainer.fit()

    assert "loss became NaN or infinite in epoch 2" in str(err.value)
    assert str(err.value).endswith(f"the log and {checkpoint_path(tmp_path)} keep the last good epoch (1 complete)")
    assert rec.of("epoch_end") == [("epoch_end", 0)]
    assert rec.of("complete") == [("complete", 0, 1)]
    assert _ended(rec) == ("diverged", 1)
    assert _checkpoint_epoch(tmp_path) == 1


def test_ctrl_c_inside_a_hook_still_ends_the_run(tmp_path: Path) -> None:
    rec = Recorder(tmp_path)

    class CtrlC(Hook):
        def on_epoch_complete(self, epoch: int, metrics: dict[str, float]) -> None:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _trainer(tmp_path, [rec, CtrlC()], epochs=2).fit()

    # epoch 1's checkpoint was written, but its completion was cut short: it does not count
    assert rec.of("complete") == [("complete", 0, 1)]
    assert _ended(rec) == ("interrupted", 0)


def test_finisher_close_settles_a_failed_epoch_without_raising(tmp_path: Path) -> None:
    """``wait`` raises an epoch's failure; ``close`` (another error is already ending the
    run) settles it quietly, and the failed epoch does not count."""
    completed: list[int] = []

    class Completed(Hook):
        def on_epoch_complete(self, epoch: int, metrics: dict[str, float]) -> None:
            completed.append(epoch)

    failed: Future = Future()
    failed.set_exception(WriteError("run.h5: could not be written"))
    with EpochFinisher(checkpoint_path(tmp_path), HookList([Completed()]), completed=0) as finisher:
        finisher.submit(0, [], {"epoch": 1}, {})
        finisher.submit(1, [failed], {"epoch": 2}, {})
    assert (finisher.completed, completed, _checkpoint_epoch(tmp_path)) == (1, [0], 1)

    finisher = EpochFinisher(checkpoint_path(tmp_path), HookList([Completed()]), completed=1)
    finisher.submit(1, [failed], {"epoch": 2}, {})
    with pytest.raises(WriteError):
        finisher.wait()
    assert finisher.close() == 1 and completed == [0]
