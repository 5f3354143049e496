"""``kill -9`` at any moment of a ``relabscope train`` run leaves a run directory whose log
opens, holds at least every epoch the process reported complete, is internally consistent,
agrees row for row with an uninterrupted run, and can be resumed to the end.

One subprocess per kill. Kill moments are drawn from a seeded generator and spread over the
run's life: before the log exists, during start-up, just after an epoch line (mid-epoch),
while a checkpoint is being written, as soon as the log file changes (mid-commit), at a
random time, and after the end.
"""

from __future__ import annotations

import os
import queue
import random
import re
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from relabscope.runlog import RunLogReader

EPOCHS = 5
ARGS = [
    "train", "--method", "scn", "--noise", "0.3", "--relabel-epoch", "1", "--delta", "0.05",
    "--epochs", str(EPOCHS), "--embed-every", "1", "--seed", "0", "--device", "cpu",
    "-O", "num_train=96", "-O", "num_test=32", "-O", "size=32",
    "--image-size", "16", "--batch-size", "16", "--workers", "0",
]
EPOCH_LINE = re.compile(r"^epoch (\d+)/(\d+)  loss ")
RUN_TIMEOUT_S = 180


@dataclass
class Plan:
    name: str
    kind: str  # time | line | ckpt | logwrite | end
    at: float = 0.0  # seconds after start (time), or delay after the trigger (line)
    k: int = 0  # epoch lines to wait for (line, logwrite) or checkpoint write number (ckpt)


@dataclass
class Outcome:
    plan: Plan
    run_dir: Path
    returncode: int = 0
    stderr: list[str] = field(default_factory=list)
    stdout: str = ""
    killed_at: float = float("nan")

    @property
    def epoch_lines(self) -> int:
        return sum(1 for line in self.stderr if EPOCH_LINE.match(line))

    def describe(self) -> str:
        return f"{self.plan} rc={self.returncode} killed_at={self.killed_at:.2f}s\n" + "".join(self.stderr)


def _plans() -> list[Plan]:
    rng = random.Random(20240611)
    return [
        Plan("immediately", "time", 0.0),  # before the interpreter has imported anything
        Plan("start-up", "time", rng.uniform(0.5, 3.5)),  # imports, data, log creation
        Plan("after-line-1", "line", rng.uniform(0.0, 0.3), k=1),
        Plan("after-line-2", "line", rng.uniform(0.0, 0.3), k=2),
        Plan("after-line-4", "line", rng.uniform(0.0, 0.3), k=4),
        Plan("mid-checkpoint-1", "ckpt", k=1),  # while checkpoints/last.pt.tmp is written
        Plan("mid-checkpoint-3", "ckpt", k=3),
        Plan("mid-commit-2", "logwrite", k=1),  # run.h5 changes after the 1st epoch line
        Plan("random-a", "time", rng.uniform(3.0, 16.0)),
        Plan("random-b", "time", rng.uniform(3.0, 16.0)),
        Plan("after-end", "end"),  # uninterrupted: the reference run
    ]


def _env() -> dict[str, str]:
    # RELABSCOPE_CACHE comes from conftest's session fixture; one intra-op thread keeps
    # every process deterministic (identical numbers) and fast on a small shared machine.
    assert "RELABSCOPE_CACHE" in os.environ
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _run_and_kill(plan: Plan, run_dir: Path) -> Outcome:
    out = Outcome(plan, run_dir)
    proc = subprocess.Popen(
        [sys.executable, "-m", "relabscope.cli", *ARGS, "--out", str(run_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
    )
    lines: queue.Queue = queue.Queue()

    def pump() -> None:
        for line in proc.stderr:  # type: ignore[union-attr]
            lines.put(line)
        lines.put(None)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    t0 = time.monotonic()
    n_lines = 0
    fire_at: float | None = 0.0 if plan.kind == "time" and plan.at == 0.0 else None
    tmp = run_dir / "checkpoints" / "last.pt.tmp"
    tmp_seen, tmp_count = False, 0
    log = run_dir / "run.h5"
    log_stat: tuple | None = None
    try:
        while True:
            now = time.monotonic() - t0
            if fire_at is not None and now >= fire_at:
                proc.kill()
                out.killed_at = now
                break
            if proc.poll() is not None:
                break
            if now > RUN_TIMEOUT_S:
                proc.kill()
                pytest.fail(f"training did not end within {RUN_TIMEOUT_S}s")
            try:
                while True:
                    line = lines.get_nowait()
                    if line is None:
                        break
                    out.stderr.append(line)
                    n_lines += bool(EPOCH_LINE.match(line))
            except queue.Empty:
                pass
            if fire_at is None:
                if plan.kind == "time":
                    fire_at = plan.at
                elif plan.kind == "line" and n_lines >= plan.k:
                    fire_at = now + plan.at
                elif plan.kind == "ckpt":
                    exists = tmp.exists()
                    if exists and not tmp_seen:
                        tmp_count += 1
                        if tmp_count == plan.k:
                            fire_at = now
                    tmp_seen = exists
                elif plan.kind == "logwrite" and n_lines >= plan.k:
                    try:
                        st = log.stat()
                        current = (st.st_size, st.st_mtime_ns)
                    except FileNotFoundError:
                        current = None
                    if log_stat is None:
                        log_stat = current
                    elif current != log_stat:
                        fire_at = now + plan.at
            time.sleep(0.001)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(timeout=30)
    while True:  # whatever the process printed before it died
        try:
            line = lines.get_nowait()
        except queue.Empty:
            break
        if line is not None:
            out.stderr.append(line)
    out.stdout = proc.stdout.read()  # type: ignore[union-attr]
    proc.stdout.close()  # type: ignore[union-attr]
    proc.stderr.close()  # type: ignore[union-attr]
    out.returncode = proc.returncode
    return out


def _check_log(path: Path, why: str) -> dict[str, np.ndarray]:
    """Open a (possibly killed) log both ways; check its committed epochs are consistent.
    Returns the committed rows of what the comparisons need."""
    with h5py.File(path, "r", swmr=True) as f:  # plain h5py, as docs/run-log.md says
        n = f["epochs/done"].shape[0]
        split = f["samples/split"][:]
        given = f["samples/given_label"][:]
        train = split == 0
        label = f["epochs/label"][:n]
        pred = f["epochs/pred"][:n]
        relabel_end = f["epochs/relabel_end"][:n]
        raw_relabels = f["relabels"][:]
        status = int(f["status"][0])
        for name in ("epochs/pred", "epochs/prob", "epochs/loss", "epochs/test_acc", "epochs/lr"):
            assert f[name].shape[0] >= n, (name, why)
    assert status in (0, 1), why  # running (killed) or finished
    assert (label[:, train] >= 0).all(), f"-1 label of a training sample in a committed epoch: {why}"
    assert (label[:, ~train] == given[~train]).all(), why
    assert (pred >= 0).all(), why
    end = int(relabel_end[-1]) if n else 0
    assert (np.diff(relabel_end) >= 0).all(), why
    assert len(raw_relabels) >= end, why
    events = raw_relabels[:end]
    # the label in effect changes exactly by the logged events
    for e in range(n):
        lo = int(relabel_end[e - 1]) if e else 0
        ev = events[lo:int(relabel_end[e])]
        assert (ev["epoch"] == e).all(), why
        assert len(np.unique(ev["sample"])) == len(ev), why
        assert train[ev["sample"]].all(), why
        assert (label[e, ev["sample"]] == ev["old"]).all(), why
        assert (ev["old"] != ev["new"]).all(), why
        if e + 1 < n:
            expect = label[e].copy()
            expect[ev["sample"]] = ev["new"]
            assert np.array_equal(label[e + 1, train], expect[train]), why

    with RunLogReader(path) as log:
        assert log.num_epochs == n, why
        assert len(log.relabels()) == end, why
        assert np.array_equal(log.relabels(), events), why
        assert np.array_equal(log.epoch_array("label"), label), why
        assert log.status == ("finished" if status == 1 else "running"), why
    return {"n": np.int64(n), "label": label, "pred": pred, "events": events, "raw_relabels": raw_relabels,
            "status": np.int64(status)}


def test_kill_at_any_moment_then_resume(tmp_path: Path) -> None:
    from relabscope.data import load_dataset

    load_dataset("synthetic", None, num_train=96, num_test=32, size=32)  # render the cache once
    plans = _plans()
    with ThreadPoolExecutor(max_workers=2) as pool:  # two single-threaded trainers at a time
        outcomes = list(pool.map(lambda p: _run_and_kill(p[1], tmp_path / f"run{p[0]:02d}-{p[1].name}"),
                                 enumerate(plans)))

    ref = next(o for o in outcomes if o.plan.kind == "end")
    assert ref.returncode == 0, ref.describe()
    assert ref.epoch_lines == EPOCHS, ref.describe()
    assert "run.h5" in ref.stdout
    reference = _check_log(ref.run_dir / "run.h5", ref.describe())
    assert reference["status"] == 1 and reference["n"] == EPOCHS
    assert len(reference["events"]) > 0, "the configuration is meant to relabel"
    assert len(reference["raw_relabels"]) == len(reference["events"])

    summary = []
    resumable: list[tuple[tuple, Outcome]] = []
    for o in outcomes:
        why = o.describe()
        log = o.run_dir / "run.h5"
        ckpt = o.run_dir / "checkpoints" / "last.pt"
        if o.plan.kind != "end":
            assert o.returncode in (-9, 0), why
        if not log.exists():
            assert o.epoch_lines == 0, why
            assert not ckpt.exists(), why
            summary.append((o.plan.name, round(o.killed_at, 2), o.epoch_lines, None, None, None))
            continue
        got = _check_log(log, why)
        n = int(got["n"])
        assert n >= o.epoch_lines, why
        if o.returncode == 0:
            assert n == EPOCHS and got["status"] == 1, why
        # committed rows are the uninterrupted run's rows (same seed, one thread)
        assert np.array_equal(got["label"], reference["label"][:n]), why
        assert np.array_equal(got["pred"], reference["pred"][:n]), why
        assert np.array_equal(got["events"], reference["events"][:len(got["events"])]), why
        ckpt_epoch = None
        if ckpt.exists():
            state = torch.load(ckpt, map_location="cpu", weights_only=False)
            ckpt_epoch = int(state["epoch"])
            # the checkpoint never runs ahead of the log, and every reported epoch is in it
            assert o.epoch_lines <= ckpt_epoch <= n, why
            # its labels in effect are the log's: row c is what epoch c trains on
            current = state["labels"]["current"].numpy()
            n_train = len(current)
            if ckpt_epoch < n:
                expect = got["label"][ckpt_epoch, :n_train]
            else:
                expect = got["label"][n - 1, :n_train].astype(np.int64)
                last = got["events"][got["events"]["epoch"] == n - 1]
                expect[last["sample"]] = last["new"]
            assert np.array_equal(current, expect), why
            del state
        else:
            assert o.epoch_lines == 0, why
        uncommitted_events = len(got["raw_relabels"]) - len(got["events"])  # a commit cut short
        summary.append((o.plan.name, round(o.killed_at, 2), o.epoch_lines, n, ckpt_epoch, uncommitted_events))
        if o.returncode != 0 and (o.run_dir / "config.toml").exists():
            # resume the most interesting killed run: the log ahead of its checkpoint if any
            # (killed mid-checkpoint), else the one with the most committed epochs to go
            ahead = ckpt_epoch is not None and n > ckpt_epoch
            resumable.append(((ahead, n < EPOCHS, n), o))
    print("plan, killed at (s), epoch lines, committed epochs, checkpoint epoch, uncommitted relabels:",
          *summary, sep="\n  ")
    assert sum(1 for o in outcomes if o.returncode == -9) >= 8, "most runs should have been killed"

    assert resumable, "no killed run got far enough to be resumed"
    target = max(resumable, key=lambda r: r[0])[1]
    for o in outcomes:  # the checkpoints are big; keep only what is still needed
        if o is not target and o is not ref:
            shutil.rmtree(o.run_dir, ignore_errors=True)
    proc = subprocess.run([sys.executable, "-m", "relabscope.cli", "train", "--resume", str(target.run_dir)],
                          capture_output=True, text=True, env=_env(), timeout=RUN_TIMEOUT_S)
    why = target.describe() + "\n--- resume:\n" + proc.stderr
    assert proc.returncode == 0, why
    assert "Traceback" not in proc.stderr, why
    assert proc.stdout.startswith(f"finished: {EPOCHS} epochs"), proc.stdout
    resumed = _check_log(target.run_dir / "run.h5", why)
    assert resumed["status"] == 1 and resumed["n"] == EPOCHS, why
    # a resumed run's log is the uninterrupted run's log
    assert np.array_equal(resumed["label"], reference["label"]), why
    assert np.array_equal(resumed["pred"], reference["pred"]), why
    assert np.array_equal(resumed["events"], reference["events"]), why
    assert len(resumed["raw_relabels"]) == len(resumed["events"]), why
    with RunLogReader(target.run_dir) as log:
        assert log.status == "finished"
        assert list(log.embedding_epochs()) == list(range(EPOCHS))
    state = torch.load(target.run_dir / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)
    ref_state = torch.load(ref.run_dir / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)
    assert state["epoch"] == EPOCHS
    for key, value in ref_state["model"].items():
        assert torch.equal(state["model"][key], value), key
