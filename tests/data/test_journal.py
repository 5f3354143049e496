"""The decisions journal as a log of record: every acknowledged decision is a whole line on
disk, a torn tail never swallows the next one, numbers are never reused, a batch is one
write and one fsync, and the files that hold decisions are fsynced with their folders.

Each test names what main at 0696aaf did instead."""

from __future__ import annotations

import errno
import json
import multiprocessing
import os
import signal

import pytest

from relabscope import atomic
from relabscope.data import journal as journal_module
from relabscope.data.journal import (CSV_NAME, JOURNAL_NAME, CorrectionJournal, DecisionConflict, Proposal,
                                     parse_journal)
from relabscope.errors import WriteError

CLASSES = ["anger", "fear", "happy"]


def _lines(folder) -> list[bytes]:
    return (folder / JOURNAL_NAME).read_bytes().split(b"\n")


def test_a_torn_tail_is_cut_before_the_next_decision(tmp_path) -> None:
    """On main the next decision was appended to the torn line, acknowledged with seq 2, and
    lost on the next open (the glued line did not parse); with a tail that parsed, two
    records carried seq 2."""
    journal = CorrectionJournal(tmp_path, CLASSES)
    journal.decide("a.png", 0, "keep", "anger")
    with open(tmp_path / JOURNAL_NAME, "ab") as fh:  # a write cut short: no newline
        fh.write(b'{"key":"b.png","sample_id":1,"decision":"drop","label":null,"reviewer":"","source":"x",'
                 b'"time":1.0,"seq":2}')
    made = CorrectionJournal(tmp_path, CLASSES).decide("c.png", 2, "drop", reviewer="bob")
    assert made.seq == 2
    reopened = CorrectionJournal(tmp_path, CLASSES)
    assert {k: d.seq for k, d in reopened.latest().items()} == {"a.png": 1, "c.png": 2}
    lines = _lines(tmp_path)
    assert lines[-1] == b"" and all(json.loads(line) for line in lines[:-1])  # whole lines only
    assert [d.seq for d in reopened.history()] == [1, 2]  # no number twice


def test_a_write_that_fails_midway_is_taken_back(tmp_path, monkeypatch) -> None:
    """A disk that fills inside the write (simulated: half the line written, then ENOSPC):
    on main the half line stayed and swallowed the next decision."""
    journal = CorrectionJournal(tmp_path, CLASSES)
    journal.decide("a.png", 0, "keep", "anger")
    real_fsync = os.fsync

    class HalfWrite:
        def __init__(self, fh):
            self.fh = fh

        def __getattr__(self, name):
            return getattr(self.fh, name)

        def write(self, data):
            self.fh.write(bytes(data[: len(data) // 2]))
            raise OSError(errno.ENOSPC, "No space left on device")

    real_locked = journal._locked

    def locked(write=True):
        ctx = real_locked(write)

        class Wrapped:
            def __enter__(self):
                return HalfWrite(ctx.__enter__())

            def __exit__(self, *exc):
                return ctx.__exit__(*exc)

        return Wrapped()

    monkeypatch.setattr(journal, "_locked", locked)
    with pytest.raises(WriteError, match=r"corrections\.journal: disk full: saving the decision needs \d+ bytes"):
        journal.decide("b.png", 1, "drop")
    monkeypatch.undo()
    assert (tmp_path / JOURNAL_NAME).read_bytes().count(b"\n") == 1 and _lines(tmp_path)[-1] == b""
    assert journal.decide("c.png", 2, "drop").seq == 2
    assert [d.key for d in CorrectionJournal(tmp_path, CLASSES).history()] == ["a.png", "c.png"]
    assert real_fsync is os.fsync


def _killed_before_fsync(folder, after: int) -> None:
    """Decide until the ``after``-th decision, then die between its write and its fsync."""
    journal = CorrectionJournal(folder, CLASSES)
    calls = {"n": 0}
    real = os.fsync

    def fsync(fd):
        if os.readlink(f"/proc/self/fd/{fd}").endswith(JOURNAL_NAME):
            calls["n"] += 1
            if calls["n"] > after:
                os.kill(os.getpid(), signal.SIGKILL)
        real(fd)

    journal_module.os.fsync = fsync  # type: ignore[assignment]  # this child process only
    i = 0
    while True:
        journal.decide(f"s{i}", i, "drop", reviewer="p")
        i += 1


def test_a_process_killed_between_write_and_fsync_loses_only_that_decision(tmp_path) -> None:
    ctx = multiprocessing.get_context("fork")
    child = ctx.Process(target=_killed_before_fsync, args=(tmp_path, 6))
    child.start()
    child.join(60)
    assert child.exitcode == -signal.SIGKILL
    history = CorrectionJournal(tmp_path, CLASSES).history()
    # the acknowledged ones (fsynced before the call returned) are all there, numbered in order;
    # the one written but not fsynced may be there too (the page cache kept it), never half
    keys = [d.key for d in history]
    assert keys[:6] == [f"s{i}" for i in range(6)] and len(history) in (6, 7)
    assert [d.seq for d in history] == list(range(1, len(history) + 1))
    assert len(list(parse_journal((tmp_path / JOURNAL_NAME).read_bytes()))) == len(history)
    CorrectionJournal(tmp_path, CLASSES).decide("after", 99, "keep", "fear")
    assert CorrectionJournal(tmp_path, CLASSES).history()[-1].seq == len(history) + 1


def test_a_batch_is_one_write_one_fsync_and_one_csv(tmp_path, monkeypatch) -> None:
    """On main every decision of an import was its own fsync and rewrote corrections.csv:
    quadratic (3,000 took 39 s)."""
    journal = CorrectionJournal(tmp_path, CLASSES)
    journal.decide("first", 0, "keep", "anger")
    fsyncs, csvs = [], []
    real_fsync, real_write = os.fsync, journal_module.write_atomic
    def fsync(fd):
        if os.readlink(f"/proc/self/fd/{fd}").endswith(JOURNAL_NAME):
            fsyncs.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(journal_module.os, "fsync", fsync)
    monkeypatch.setattr(journal_module, "write_atomic", lambda *a: (csvs.append(a[0]), real_write(*a))[1])
    made = journal.record([Proposal(f"k{i}", i, "relabel", CLASSES[i % 3], "imp", "labelstudio") for i in range(500)])
    assert [d.seq for d in made] == list(range(2, 502))
    assert len(fsyncs) == 1 and len(csvs) == 1
    assert len(CorrectionJournal(tmp_path, CLASSES).latest()) == 501


def test_a_conflict_in_a_batch_keeps_the_decisions_before_it(tmp_path) -> None:
    journal = CorrectionJournal(tmp_path, CLASSES)
    journal.decide("b", 1, "drop", reviewer="ann")
    with pytest.raises(DecisionConflict, match="decided meanwhile by ann"):
        journal.record([Proposal("a", 0, "drop", base=0), Proposal("b", 1, "keep", "fear", base=0),
                        Proposal("c", 2, "drop", base=0)])
    assert [d.key for d in journal.history()] == ["b", "a"]


def test_the_journal_and_atomic_files_are_fsynced_with_their_folder(tmp_path, monkeypatch) -> None:
    """On main the journal's folder was never fsynced and atomic_write renamed a file it had
    not fsynced: a power cut could leave an acknowledged decision, or the CSV, empty."""
    folders: list[str] = []
    monkeypatch.setattr(journal_module, "fsync_folder", lambda f: folders.append(str(f)))
    CorrectionJournal(tmp_path / "run", CLASSES).decide("a.png", 0, "drop")
    assert folders == [str(tmp_path / "run")]  # once: when the journal was created
    CorrectionJournal(tmp_path / "run", CLASSES).decide("b.png", 1, "drop")
    assert folders == [str(tmp_path / "run")]
    order: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(atomic.os, "fsync", lambda fd: (order.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(atomic.os, "replace", lambda a, b: (order.append("rename"), real_replace(a, b))[1])
    atomic.write_atomic(tmp_path / "x.csv", "a,b\n")
    assert order[:2] == ["fsync", "rename"] and order.count("fsync") == 2  # the file, then its folder
    assert (tmp_path / "x.csv").read_text() == "a,b\n"


def test_the_csv_says_what_each_decision_was_made_on(tmp_path) -> None:
    journal = CorrectionJournal(tmp_path, CLASSES)
    journal.decide("a.png", 0, "relabel", "fear", given="anger", run="f00d")
    header, row = (tmp_path / CSV_NAME).read_text().splitlines()
    assert header == "key,sample_id,decision,label,given,reviewer,source,time,seq,run"
    assert row.startswith("a.png,0,relabel,fear,anger,") and row.endswith(",1,f00d")
    with pytest.raises(ValueError, match="'sad' is not a class"):
        journal.decide("b.png", 1, "keep", "anger", given="sad")
