"""A full disk, met by training, a resume, a report, an import and the review page: one line
naming the file, what it needed and what was free, nothing already written lost, never a
segfault. Each test mounts a small tmpfs (root only; CI runs as root) and fills it.

Before these changes (main at 0696aaf) training on a full disk ended in a segfault (rc 139)
after a dozen tracebacks from h5py's destructors, a report cut short kept a truncated
plotly.min.js that later reports reused (their figures blank), and a review decision
answered HTTP 500.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import h5py
import pytest

import relabscope as rs
from relabscope.errors import WriteError
from tests.conftest import TINY

DEADLINE_S = 120


@contextmanager
def small_disk(where: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``where`` for the block (skipped where it cannot be)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (CI runs as root)")
    where.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(folder: Path, leave: int) -> Path:
    """Fill the disk under ``folder`` so that ``leave`` bytes stay free."""
    filler = folder / "filler"
    stat = os.statvfs(folder)
    filler.write_bytes(b"\0" * max(0, stat.f_bavail * stat.f_frsize - leave))
    return filler


def _cli(*args: str, timeout: float = DEADLINE_S) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "relabscope", *args], capture_output=True, text=True,
                          timeout=timeout)


def _one_line(done: subprocess.CompletedProcess, *, names: str, says: str) -> str:
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 1, done.stderr[-3000:]  # not 139: no segfault
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr, done.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("relabscope: error: "), done.stderr[-3000:]
    assert names in lines[0] and says in lines[0] and " free" in lines[0], lines[0]
    return lines[0]


def _tiny_args() -> list[str]:
    args = [f"--{k.replace('_', '-')}={v}" for k, v in TINY.items() if k != "dataset_options"]
    return args + [f"-O{k}={v}" for k, v in TINY["dataset_options"].items()]


# ---------------------------------------------------------------------- training
def test_training_onto_a_full_disk_is_one_line_and_keeps_the_log(tmp_path) -> None:
    with small_disk(tmp_path / "disk", "4m") as disk:
        done = _cli("train", "--method", "scn", *_tiny_args(), "--out", str(disk / "run"), "-q")
        line = _one_line(done, names=str(disk / "run" / "checkpoints" / "last.pt"),
                         says="disk full: writing the checkpoint needs")
        assert "MB" in line
        found = rs.check_log(disk / "run")
        assert found.ok and found.epochs >= 1 and found.status == "interrupted", found.report()
        assert not (disk / "run" / "checkpoints" / "last.pt.tmp").exists()


WRITER = """
import os, sys
import numpy as np
import relabscope as rs
from relabscope.errors import WriteError
if sys.argv[2] == "no-fallocate":
    del os.posix_fallocate   # a system without it: the claim writes zeros instead
folder = sys.argv[1]
n, k, d = 3000, 4, 64
samples = rs.SampleTable(key=[f"k{i}" for i in range(n)], split=[0] * 2500 + [1] * 500, given_label=np.arange(n) % k)
rng = np.random.default_rng(0)
log = rs.RunLogWriter.create(folder, samples, "abcd", embed_dim=d)
def epoch():
    log.log_batch(np.arange(n), samples.given_label, rng.normal(size=(n, k)), rng.normal(size=(n, d)))
    return log.end_epoch()
epoch()
stat = os.statvfs(folder)
with open(os.path.join(folder, "filler"), "wb") as fh:
    fh.write(b"0" * (stat.f_bavail * stat.f_frsize - 200_000))
try:
    epoch()
except WriteError as exc:
    print("refused:", exc)
log.close("interrupted")
print("closed")
"""


@pytest.mark.parametrize("how", ["fallocate", "no-fallocate"])
def test_a_commit_that_does_not_fit_is_refused_before_writing(tmp_path, how) -> None:
    with small_disk(tmp_path / "disk", "8m") as disk:
        done = subprocess.run([sys.executable, "-c", WRITER, str(disk), how], capture_output=True, text=True,
                              timeout=DEADLINE_S)
        assert done.returncode == 0 and "Exception ignored" not in done.stderr, done.stderr[-3000:]
        assert f"refused: {disk / 'run.h5'}: disk full: committing epoch 1 needs" in done.stdout, done.stdout
        assert "closed" in done.stdout
        found = rs.check_log(disk)
        assert found.ok and found.epochs == 1 and found.status == "interrupted", found.report()
        (disk / "filler").unlink()
        with rs.RunLogWriter.resume(disk / "run.h5", keep_epochs=1) as log:  # room again: it goes on
            assert log.epoch == 1
        assert rs.check_log(disk).ok


def test_a_resume_without_room_for_its_copy_changes_nothing(tiny_runs, tmp_path) -> None:
    with small_disk(tmp_path / "disk", "160m") as disk:
        run = disk / "run"
        shutil.copytree(tiny_runs["scn"], run, ignore=shutil.ignore_patterns("*.npz"))
        before = (run / "run.h5").read_bytes(), (run / "config.toml").read_bytes()
        fill(disk, 100_000)
        done = _cli("train", "--resume", str(run), "--epochs", "6", "-q")
        _one_line(done, names=str(run / "run.h5.resuming"), says="disk full: copying its 4 kept epochs needs")
        assert ((run / "run.h5").read_bytes(), (run / "config.toml").read_bytes()) == before
        assert not (run / "run.h5.resuming").exists()


# ---------------------------------------------------------------------- report
def test_a_report_onto_a_full_disk_is_one_line(tiny_runs, tmp_path) -> None:
    with small_disk(tmp_path / "disk", "3m") as disk:  # plotly.js alone is 4.6 MB
        done = _cli("report", str(tiny_runs["scn"]), "--out", str(disk / "report"), "--no-png")
        _one_line(done, names=str(disk / "report" / "figures" / "plotly.min.js"), says="disk full: writing")
        assert not (disk / "report" / "figures" / "plotly.min.js").exists()


def test_a_report_replaces_a_truncated_plotly_js(tiny_runs, tmp_path) -> None:
    from plotly.offline import get_plotlyjs

    from relabscope.report import write_report

    out = tmp_path / "report"
    (out / "figures").mkdir(parents=True)
    (out / "figures" / "plotly.min.js").write_text(get_plotlyjs()[:1000])  # what a full disk left
    write_report(tiny_runs["scn"], out, png=False, projection=None)
    assert (out / "figures" / "plotly.min.js").read_text() == get_plotlyjs()


# ---------------------------------------------------------------------- decisions
def _bare_run(tiny_runs, folder: Path) -> Path:
    """The tiny SCN run without its 130 MB checkpoint (the review needs only the log)."""
    shutil.copytree(tiny_runs["scn"], folder, ignore=shutil.ignore_patterns("checkpoints", "*.npz"))
    return folder


def test_a_decision_on_a_full_disk_is_refused_and_leaves_no_torn_line(tiny_runs, tmp_path) -> None:
    with small_disk(tmp_path / "disk", "4m") as disk:
        run_dir = _bare_run(tiny_runs, disk / "run")
        with rs.open_run(run_dir) as run:
            filler = fill(disk, 0)  # no page left for the journal's first line
            with pytest.raises(WriteError, match=r"corrections\.journal: disk full: saving the decision needs \d+"):
                run.review(0, "drop", reviewer="ann", base=0)
            assert (run_dir / "corrections.journal").read_bytes() == b""  # what was written is taken back
            filler.unlink()
            run.review(1, "drop", reviewer="ann", base=0)
            assert [(d.sample_id, d.seq) for d in run.journal.history()] == [(1, 1)]
            assert run.corrections()["sample_id"].tolist() == [1]


def test_the_review_page_says_disk_full_on_the_tile(tiny_runs, tmp_path) -> None:
    from tests.dashboard.test_review import _decide

    from relabscope.dashboard import create_app

    with small_disk(tmp_path / "disk", "4m") as disk:
        _bare_run(tiny_runs, disk / "runs" / "ex")
        app = create_app([disk / "runs"], refresh_seconds=0, host="127.0.0.1")
        client = app.server.test_client()
        sid = int(app.relabscope.run("ex").suspects()["sample_id"].iloc[0])
        fill(disk, 0)
        text, seq = _decide(app, client, sid, {"decision": "drop", "n": 1}, 0)
        assert "disk full: saving the decision needs" in text and seq == 0
        assert str(disk) not in text  # the page names the run, not the server's folders


def test_an_import_onto_a_full_disk_is_one_line(tiny_runs, tmp_path) -> None:
    tasks_file = tmp_path / "tasks.json"
    done = _cli("suspects", str(tiny_runs["scn"]), "--top", "3", "--format", "labelstudio", "--out", str(tasks_file))
    assert done.returncode == 0, done.stderr
    tasks = json.loads(tasks_file.read_text())
    for task in tasks:
        task["annotations"] = [{"id": 1, "completed_by": {"email": "a@lab"},
                                "result": [{"from_name": "label", "type": "choices", "value": {"choices": ["drop"]}}]}]
    export = tmp_path / "export.json"
    export.write_text(json.dumps(tasks))
    with small_disk(tmp_path / "disk", "4m") as disk:
        run_dir = _bare_run(tiny_runs, disk / "run")
        fill(disk, 0)
        done = _cli("corrections", str(run_dir), "--import", str(export))
        _one_line(done, names=str(run_dir / "corrections.journal"), says="disk full: saving 3 decisions needs")
        assert not (run_dir / "corrections.journal").exists() or (run_dir / "corrections.journal").stat().st_size == 0
        with h5py.File(run_dir / "run.h5", "r") as f:  # the log is untouched
            assert f["epochs/done"].shape[0] == TINY["epochs"]
