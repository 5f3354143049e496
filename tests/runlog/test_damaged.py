"""Damaged run files, made from one tiny finished run, met the ways a user meets them:
``rs.open_run`` and a read of every dataset, ``relabscope report``, ``relabscope train
--resume`` and a served dashboard. Each answers with a clean result or one line naming the
file and the problem within a deadline, never hangs, never deletes or changes the log.

Before these changes (main at 0696aaf) a flipped superblock byte or a chunk-index byte hung
every reader inside HDF5's SWMR retry loop (over an hour), 64 flipped data bytes read as
wrong numbers, resuming a run without checkpoints deleted its log, and a 10-byte log, a
truncated checkpoint and an empty or non-HDF5 log ended in tracebacks. Every process runs
in a child with a deadline (one child per fixture, running the commands one after another:
torch is imported once): a hang in HDF5 holds the GIL, so nothing in-process could stop it.
"""

from __future__ import annotations

import json
import re
import selectors
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import h5py
import pytest

from relabscope.dashboard import ids
from relabscope.dashboard.harness import ROUTER, answer, callback_key, payload, post_session, texts

DEADLINE_S = 20.0
#: what a resume trains to when it can
EPOCHS = 6



# ---------------------------------------------------------------------- the damage
def _log(run: Path) -> Path:
    return run / "run.h5"


def _cut(fraction: float | None, size: int = 0) -> Callable[[Path], None]:
    def damage(run: Path) -> None:
        data = _log(run).read_bytes()
        _log(run).write_bytes(data[:size] if fraction is None else data[:int(len(data) * fraction)])
    return damage


def _flip(offsets: Callable[[bytes, Path], list[int]]) -> Callable[[Path], None]:
    def damage(run: Path) -> None:
        data = bytearray(_log(run).read_bytes())
        for at in offsets(bytes(data), run):
            data[at] ^= 0xFF
        _log(run).write_bytes(bytes(data))
    return damage


def _superblock(data: bytes, run: Path) -> list[int]:
    return [20, 21, 22, 23]  # the base address and the superblock's own offsets: checksummed


def _chunk_indexes(data: bytes, run: Path) -> list[int]:
    """A byte inside every extensible-array index block (signature EAIB): the chunk index of
    every growing dataset, so any read of per-epoch data needs a damaged block."""
    found = [m.start() + 6 for m in re.finditer(b"EAIB", data)]
    assert found, "no extensible-array index block in the log"
    return found


def _data_bytes(data: bytes, run: Path) -> list[int]:
    """64 bytes in the middle of epoch 1's class probabilities."""
    with h5py.File(_log(run), "r") as f:
        chunk = f["epochs/prob"].id.get_chunk_info(1)
    middle = chunk.byte_offset + chunk.size // 2
    return list(range(middle, middle + 64))


def _write(content: bytes) -> Callable[[Path], None]:
    return lambda run: _log(run).write_bytes(content)


def _cut_checkpoint(run: Path) -> None:
    ckpt = run / "checkpoints" / "last.pt"
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])


LOG_DAMAGE = {
    "cut-10-bytes": _cut(None, 10),
    "cut-half": _cut(0.5),
    "cut-90": _cut(0.9),
    "superblock": _flip(_superblock),
    "chunk-index": _flip(_chunk_indexes),
    "data-bytes": _flip(_data_bytes),
    "empty": _write(b""),
    "text": _write(b"epoch,loss\n0,1.5\n" * 20),
}
#: what the reader's one line says for each (the file it names is checked separately)
LOG_PROBLEM = {
    "cut-10-bytes": "not a readable HDF5 run log", "cut-half": "truncated: the file ends at byte",
    "cut-90": "truncated: the file ends at byte", "superblock": "metadata checksum does not match",
    "chunk-index": "metadata checksum does not match", "data-bytes": "damaged at epoch 1, dataset epochs/prob",
    "empty": "not an HDF5 file", "text": "not an HDF5 file",
}
OTHER_DAMAGE = {
    "checkpoint-cut": _cut_checkpoint,
    "checkpoint-missing": lambda run: shutil.rmtree(run / "checkpoints"),
    "config-missing": lambda run: (run / "config.toml").unlink(),
}


@pytest.fixture(scope="module")
def damaged(tiny_runs, tmp_path_factory) -> dict[str, Path]:
    """Every case as its own copy of the tiny SCN run (4 finished epochs, checkpoint kept)."""
    root = tmp_path_factory.mktemp("damaged")
    runs = {}
    for name, damage in {**LOG_DAMAGE, **OTHER_DAMAGE}.items():
        run = root / name
        shutil.copytree(tiny_runs["scn"], run, ignore=shutil.ignore_patterns("*.npz", "corrections.*"))
        damage(run)
        runs[name] = run
    return runs


# ---------------------------------------------------------------------- running a user's commands
#: the commands of one fixture, run one after another in one child process (torch imported
#: once): each prints a start line, then its exit code, output and seconds, as JSON
BATCH = r"""
import json, sys, time, traceback
from click.testing import CliRunner
import relabscope as rs
from relabscope.cli import main
from relabscope.errors import RelabscopeError

def read_everything(path):
    run = rs.open_run(path)
    log = run.log
    for name in ("label", "pred", "prob", "loss", "distance", "class_mean", "test_acc", "relabel_end"):
        log.epoch_array(name)
    run.relabel_events(), run.samples, run.config, [log.embeddings(int(e)) for e in log.embedding_epochs()]
    run.dynamics(), run.flipflops()
    return f"read {run.num_epochs} epochs"

for job in json.loads(sys.argv[1]):
    print(json.dumps({"start": job["name"]}), flush=True)
    started = time.monotonic()
    if job["argv"][0] == "read":
        try:
            out = {"rc": 0, "stdout": read_everything(job["argv"][1]), "stderr": ""}
        except RelabscopeError as exc:
            out = {"rc": 1, "stdout": "", "stderr": f"relabscope: error: {exc}\n"}
        except BaseException:
            out = {"rc": 2, "stdout": "", "stderr": traceback.format_exc()}
    else:
        result = CliRunner().invoke(main, job["argv"])
        trace = "" if result.exception is None or isinstance(result.exception, SystemExit) else \
            "".join(traceback.format_exception(result.exception))
        out = {"rc": result.exit_code, "stdout": result.stdout, "stderr": result.stderr + trace}
    print(json.dumps({**out, "name": job["name"], "seconds": time.monotonic() - started}), flush=True)
"""


@dataclass
class Done:
    """How one command ended: its exit code, output and seconds."""

    returncode: int
    stdout: str
    stderr: str
    seconds: float


def run_commands(jobs: dict[str, list[str]]) -> dict[str, Done]:
    """Run each ``name: argv`` (a ``relabscope`` command line, or ``["read", RUN]``: open the
    run and read every dataset) in one child process; a command that takes more than
    :data:`DEADLINE_S` (after the child's imports) is a hang: the child is killed and the
    test fails naming it."""
    proc = subprocess.Popen([sys.executable, "-c", BATCH, json.dumps([{"name": k, "argv": v} for k, v in jobs.items()])],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    results: dict[str, Done] = {}
    current, since = None, time.monotonic()
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    try:
        while len(results) < len(jobs):
            limit = (DEADLINE_S if current else 120.0) - (time.monotonic() - since)  # 120 s: the child's imports
            if limit <= 0:
                pytest.fail(f"{current or 'the child process'} did not end within {DEADLINE_S:.0f} s: a hang")
            if not sel.select(timeout=min(limit, 1.0)):
                continue
            line = proc.stdout.readline()
            if not line:
                pytest.fail(f"the child process died in {current}: {proc.stderr.read()[-2000:] if proc.stderr else ''}")
            record = json.loads(line)
            if "start" in record:
                current, since = record["start"], time.monotonic()
                continue
            results[record["name"]] = Done(record["rc"], record["stdout"], record["stderr"], record["seconds"])
            current = None
    finally:
        proc.kill()
        proc.wait()
    return results


def _one_line(done: Done, *, names: Path, says: str = "") -> str:
    """The failed command's stderr: exactly one line, relabscope's, naming ``names``."""
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 1, done.stderr[-2000:]
    assert "Traceback" not in done.stderr and "Segmentation" not in done.stderr, done.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("relabscope: error: "), done.stderr[-2000:]
    assert str(names) in lines[0], lines[0]
    assert says in lines[0], lines[0]
    assert done.seconds < DEADLINE_S
    return lines[0]


def _fingerprint(run: Path) -> dict[str, bytes | None]:
    return {name: (run / name).read_bytes() if (run / name).is_file() else None
            for name in ("run.h5", "config.toml", "checkpoints/last.pt")}


# ---------------------------------------------------------------------- open_run and report
@pytest.fixture(scope="module")
def reads(damaged, tmp_path_factory) -> dict[str, Done]:
    """Every damaged run opened and read, and reported on, as a user would."""
    out = tmp_path_factory.mktemp("reports")
    before = {case: _fingerprint(run) for case, run in damaged.items()}
    jobs = {f"read {case}": ["read", str(run)] for case, run in damaged.items()}
    jobs.update({f"report {case}": ["report", str(damaged[case]), "--out", str(out / case), "--no-png"]
                 for case in LOG_DAMAGE})
    done = run_commands(jobs)
    assert {case: _fingerprint(run) for case, run in damaged.items()} == before  # nothing changed, nothing gone
    return done


@pytest.mark.parametrize("case", sorted(LOG_DAMAGE))
def test_reading_a_damaged_log_is_one_line(damaged, reads, case) -> None:
    _one_line(reads[f"read {case}"], names=_log(damaged[case]), says=LOG_PROBLEM[case])
    _one_line(reads[f"report {case}"], names=_log(damaged[case]), says=LOG_PROBLEM[case])


@pytest.mark.parametrize("case", sorted(OTHER_DAMAGE))
def test_reading_needs_no_checkpoint_and_no_config(reads, case) -> None:
    read = reads[f"read {case}"]
    assert read.returncode == 0 and read.stdout == "read 4 epochs", read.stderr[-2000:]


def test_check_lists_the_damage_and_the_intact_epochs(damaged) -> None:
    from click.testing import CliRunner

    from relabscope.cli import main
    from relabscope.runlog.check import check_log

    found = check_log(damaged["data-bytes"])
    assert (found.epochs, found.intact, found.status) == (4, 1, "finished")
    assert [(d.where, d.epoch) for d in found.damage] == [("epochs/prob", 1)]
    assert "epochs/prob at epoch 1" in found.summary() and "epoch 0 intact (1 of 4)" in found.summary()
    index = check_log(damaged["chunk-index"])
    assert not index.ok and index.intact == 0
    cut = CliRunner().invoke(main, ["check", str(damaged["cut-90"])])
    assert cut.exit_code == 1 and "truncated" in cut.stdout and "no epoch is intact" in cut.stdout


# ---------------------------------------------------------------------- resume
RESUME_PROBLEM = {
    **{case: "the resume changed nothing" for case in ("data-bytes",)},
    "checkpoint-cut": "checkpoints/last.pt: cannot be read, damaged or cut short",
    "checkpoint-missing": "checkpoints/last.pt is missing and its log holds 4 committed epochs",
}
REFUSED = sorted(LOG_DAMAGE) + ["checkpoint-cut", "checkpoint-missing"]


@pytest.fixture(scope="module")
def resumes(damaged, tmp_path_factory) -> tuple[dict[str, Path], dict[str, dict[str, bytes | None]], dict[str, Done]]:
    """Every case resumed (each on its own copy), as a requeued job would: the copies, their
    files before, and how each resume ended; plus the restart of a run without checkpoint."""
    root = tmp_path_factory.mktemp("resumed")
    runs = {case: root / case for case in [*REFUSED, "config-missing"]}
    runs["restart"] = root / "restart"
    for case, run in runs.items():
        shutil.copytree(damaged["checkpoint-missing" if case == "restart" else case], run)
    before = {case: _fingerprint(run) for case, run in runs.items()}
    jobs = {case: ["train", "--resume", str(run), "--epochs", str(EPOCHS), "-q"] for case, run in runs.items()
            if case != "restart"}
    jobs["restart"] = ["train", "--resume", str(runs["restart"]), "--restart", "-q"]
    return runs, before, run_commands(jobs)


@pytest.mark.parametrize("case", REFUSED)
def test_resume_refuses_in_one_line_and_keeps_every_file(resumes, case) -> None:
    runs, before, done = resumes
    line = _one_line(done[case], names=runs[case],
                     says=RESUME_PROBLEM[case] if case in RESUME_PROBLEM else LOG_PROBLEM[case])
    if case == "checkpoint-missing":
        assert "--restart" in line
    assert _fingerprint(runs[case]) == before[case]  # the log, its config and its checkpoint as they were


def test_resume_without_config_takes_the_log_s_settings(resumes) -> None:
    runs, _, done = resumes
    run = runs["config-missing"]
    assert done["config-missing"].returncode == 0, done["config-missing"].stderr[-2000:]
    assert "config.toml was missing" in done["config-missing"].stderr
    from relabscope.rundir import stored_config

    with h5py.File(_log(run), "r") as f:
        assert f["epochs/done"].shape[0] == EPOCHS
        logged = json.loads(f["meta/config"][()])
    assert stored_config(run)["method"] == logged["method"] == "scn"
    assert stored_config(run)["epochs"] == EPOCHS


def test_restart_replaces_a_run_that_cannot_continue(resumes) -> None:
    runs, _, done = resumes
    run = runs["restart"]
    assert done["restart"].returncode == 0, done["restart"].stderr[-2000:]
    with h5py.File(_log(run), "r") as f:
        assert f["epochs/done"].shape[0] == 4 and int(f["status"][0]) == 1
    assert (run / "checkpoints" / "last.pt").is_file()


# ---------------------------------------------------------------------- the dashboard
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def served_damage(damaged, tiny_runs, tmp_path_factory):
    """``relabscope serve`` in a child process over the good run and every damaged log."""
    import requests

    root = tmp_path_factory.mktemp("served-damage")
    shutil.copytree(tiny_runs["scn"], root / "good")
    for case in LOG_DAMAGE:
        shutil.copytree(damaged[case], root / case)
    port = _free_port()
    # stderr to a file, not a pipe: a pipe nobody reads fills up (64 KiB of request log
    # lines) and then blocks the server in the middle of a request
    errors = open(root.parent / "serve-stderr.txt", "w+")
    proc = subprocess.Popen([sys.executable, "-m", "relabscope", "serve", str(root), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=errors, text=True)
    base = f"http://127.0.0.1:{port}"
    session = requests.Session()
    started = time.monotonic()
    while True:
        try:
            deps = session.get(base + "/_dash-dependencies", timeout=DEADLINE_S).json()
            break
        except requests.ConnectionError:
            assert proc.poll() is None, (errors.seek(0), errors.read())[1]
            assert time.monotonic() - started < 90, "the server did not answer within 90 s"
            time.sleep(0.2)
    callbacks = {d["output"]: d for d in deps}
    try:
        yield base, session, callbacks
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        errors.close()


def _call(served, outputs: list[str], values: dict) -> tuple[dict, float]:
    base, session, callbacks = served
    body = payload(callbacks, callback_key(callbacks, outputs, values), values)
    started = time.monotonic()
    reply = answer(*post_session(session, base, body, timeout=DEADLINE_S))
    return reply, time.monotonic() - started


def test_the_dashboard_lists_damaged_runs_and_serves_the_good_one(served_damage) -> None:
    overview = [f"{ids.OV_HEAD}.children", f"{ids.OV_NUMBERS}.children", f"{ids.OV_CONFIG}.children"]
    for case in sorted(LOG_DAMAGE):  # every damaged run answers, each with its one line
        reply, seconds = _call(served_damage, overview, {f"{ids.OV_ARGS}.data": {"run": case},
                                                         f"{ids.LIVE_VERSION}.data": None})
        assert seconds < DEADLINE_S
        assert LOG_PROBLEM[case] in texts(reply), (case, texts(reply)[:500])
    nav, seconds = _call(served_damage, [f"{ids.RUNS_NAV}.children"],
                         {f"{ids.URL}.pathname": "/", f"{ids.URL}.search": "", f"{ids.TICK}.n_intervals": None})
    shown = texts(nav)
    assert seconds < DEADLINE_S and all(LOG_PROBLEM[case] in shown for case in LOG_DAMAGE), shown[:2000]
    for page in ("/", "/flipflops", "/map", "/compactness", "/sample", "/review"):  # the good run, every page
        reply, seconds = _call(served_damage, list(ROUTER), {f"{ids.URL}.pathname": page,
                                                            f"{ids.URL}.search": "?run=good"})
        assert seconds < DEADLINE_S and ids.PAGE in reply, page
        assert "Cannot show this" not in texts(reply), (page, texts(reply)[:500])
    good, _ = _call(served_damage, overview, {f"{ids.OV_ARGS}.data": {"run": "good"}, f"{ids.LIVE_VERSION}.data": None})
    assert "test accuracy" in texts(good).lower()
