"""RelabscopeCallback across processes: DDP on two CPU ranks writes one log, and a run
killed with SIGKILL leaves a log holding its committed epochs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("lightning")

import relabscope as rs  # noqa: E402
from relabscope.errors import RunDirError  # noqa: E402

SCRIPT = Path(__file__).with_name("lightning_run.py")
N_TRAIN = 96


def _run_script(log: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    return subprocess.Popen([sys.executable, str(SCRIPT), str(log), *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_ddp_two_ranks_write_one_log_with_every_sample_and_both_ranks_relabels(tmp_path) -> None:
    log = tmp_path / "run.h5"
    proc = _run_script(log, "--epochs", "3", "--devices", "2")
    out, _ = proc.communicate(timeout=240)
    assert proc.returncode == 0, out[-3000:]
    ranks = [json.loads(Path(f"{log}.rank{r}.json").read_text()) for r in (0, 1)]
    with rs.open_run(log) as run:
        assert run.num_epochs == 3 and run.status == "finished" and run.meta["world_size"] == 2
        assert sorted(p.name for p in tmp_path.iterdir()) == ["run.h5", "run.h5.rank0.json", "run.h5.rank1.json"]
        for epoch in range(3):
            seen = ranks[0]["seen"][str(epoch)] + ranks[1]["seen"][str(epoch)]
            assert sorted(seen) == list(range(N_TRAIN))  # each sample trained once, on one rank
            assert (run.labels()[epoch, :N_TRAIN] >= 0).all() and (run.predictions()[epoch] >= 0).all()
        events = run.relabel_events()
        got = sorted(zip(events["epoch"], events["sample_id"], events["new"]))
        made = [sorted((e, i, n) for e, ids, new in rank["made"] for i, n in zip(ids, new)) for rank in ranks]
        assert made[0] and made[1]  # both ranks relabelled
        assert got == sorted(made[0] + made[1])
        # every rank trained on every rank's relabels: epoch 2 has epoch 1's new labels, on whichever rank
        first = events[events["epoch"] == 1]
        assert len(first) and (run.labels()[2, first["sample_id"]] == first["new"]).all()


def test_ddp_two_ranks_apply_the_guards_and_count_every_veto(tmp_path) -> None:
    """Guards on two ranks: every proposal either became a relabel event or a veto (summed
    over the ranks), no class fell below the floor in any epoch, and no sample returned to
    an earlier label twice."""
    log = tmp_path / "run.h5"
    proc = _run_script(log, "--epochs", "4", "--devices", "2", "--guards", "floor=0.9+hysteresis=1")
    out, _ = proc.communicate(timeout=240)
    assert proc.returncode == 0, out[-3000:]
    ranks = [json.loads(Path(f"{log}.rank{r}.json").read_text()) for r in (0, 1)]
    with rs.open_run(log) as run:
        assert run.num_epochs == 4 and run.status == "finished" and run.log.guards == ["hysteresis", "floor"]
        proposed = np.zeros(run.num_epochs, np.int64)
        for rank in ranks:
            for epoch, ids, _ in rank["made"]:
                proposed[epoch] += len(ids)
        granted = run.relabel_events().groupby("epoch").size().reindex(range(run.num_epochs), fill_value=0)
        vetoed = run.vetoes().groupby("epoch")["vetoed"].sum().reindex(range(run.num_epochs), fill_value=0)
        assert (vetoed.to_numpy() + granted.to_numpy() == proposed).all() and vetoed.sum() > 0 and granted.sum() > 0
        counts = run.class_counts()
        assert (counts["count"] >= np.ceil(0.9 * counts["given"] - 1e-9)).all()
        assert run.flipflops()["flipflops"].max() <= 1


def test_killed_run_keeps_its_committed_epochs(tmp_path) -> None:
    log = tmp_path / "run.h5"
    proc = _run_script(log, "--epochs", "1000")
    deadline = time.monotonic() + 120
    committed = 0
    try:
        while committed < 2 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
            try:
                with rs.open_run(log) as run:
                    committed = run.num_epochs
            except RunDirError:  # not created yet
                continue
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate(timeout=30)
    assert committed >= 2, out[-3000:]
    with rs.open_run(log) as run:
        assert run.status == "running" and run.num_epochs >= committed
        labels = run.labels()
        assert (labels[:, :N_TRAIN] >= 0).all() and (run.predictions()[:, N_TRAIN:] >= 0).all()
        events = run.relabel_events()
        assert (events["epoch"] < run.num_epochs).all()
        assert np.isfinite(run.distances(run.num_epochs - 1)).all()
