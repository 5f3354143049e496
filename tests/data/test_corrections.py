"""Reviewer decisions: the journal keeps what it acknowledged, refuses silent overwrites,
and the decisions apply to training labels; Label Studio export and import round-trip."""

from __future__ import annotations

import csv
import json
import multiprocessing
import os
import signal

import numpy as np
import pytest

from relabscope.data.corrections import apply_corrections, read_corrections
from relabscope.data.journal import CSV_NAME, JOURNAL_NAME, CorrectionJournal, DecisionConflict
from relabscope.data.labelstudio import Task, export_tasks, labeling_config, read_export, settle
from relabscope.errors import DataError

CLASSES = ["anger", "fear", "happy"]


def _csv_rows(folder):
    with open(folder / CSV_NAME, newline="") as fh:
        return {row["key"]: row for row in csv.DictReader(fh)}


def test_decisions_are_on_disk_when_decide_returns(tmp_path):
    journal = CorrectionJournal(tmp_path, CLASSES)
    first = journal.decide("a.png", 0, "relabel", "fear", reviewer="ann", base=0)
    journal.decide("b.png", 1, "drop", reviewer="ann", base=0)
    assert first.seq == 1
    rows = _csv_rows(tmp_path)
    assert rows["a.png"]["decision"] == "relabel" and rows["a.png"]["label"] == "fear"
    assert rows["b.png"]["decision"] == "drop" and rows["b.png"]["label"] == ""
    reopened = CorrectionJournal(tmp_path, CLASSES)  # a new process sees the same
    assert {k: (d.decision, d.label) for k, d in reopened.latest().items()} == {
        "a.png": ("relabel", "fear"), "b.png": ("drop", None)}


def test_a_stale_base_is_refused_and_names_who_decided(tmp_path):
    tab1, tab2 = CorrectionJournal(tmp_path, CLASSES), CorrectionJournal(tmp_path, CLASSES)
    seen = 0  # both tabs rendered the sample undecided
    mine = tab1.decide("a.png", 0, "keep", "anger", reviewer="ann", base=seen)
    with pytest.raises(DecisionConflict, match=r"decided meanwhile by ann \(keep anger, #1\)"):
        tab2.decide("a.png", 0, "relabel", "fear", reviewer="bob", base=seen)
    again = tab2.decide("a.png", 0, "relabel", "fear", reviewer="bob", base=mine.seq)  # after reloading
    assert again.seq == 2 and tab1.latest()["a.png"].reviewer == "bob"
    assert [d.reviewer for d in tab1.history()] == ["ann", "bob"]  # nothing lost, both in the journal
    tab1.decide("a.png", 0, "drop", base=None)  # Python's default: replace, knowingly
    assert tab2.latest()["a.png"].decision == "drop"


def test_bad_decisions_are_refused(tmp_path):
    journal = CorrectionJournal(tmp_path, CLASSES)
    for args, message in [(("x", 0, "maybe"), "decision must be one of"),
                          (("x", 0, "relabel"), "needs the new label"),
                          (("x", 0, "relabel", "joy"), "not a class")]:
        with pytest.raises(ValueError, match=message):
            journal.decide(*args)
    assert journal.history() == []


def test_a_torn_last_line_is_skipped_and_the_csv_rebuilt(tmp_path):
    journal = CorrectionJournal(tmp_path, CLASSES)
    journal.decide("a.png", 0, "keep", "anger")
    with open(tmp_path / JOURNAL_NAME, "ab") as fh:  # a kill inside the next write
        fh.write(b'{"key":"b.png","sample_id":1,"deci')
    (tmp_path / CSV_NAME).unlink()
    reopened = CorrectionJournal(tmp_path, CLASSES)
    assert list(reopened.latest()) == ["a.png"] and list(_csv_rows(tmp_path)) == ["a.png"]


def _decide_forever(folder, ready):
    journal = CorrectionJournal(folder, CLASSES)
    i = 0
    while True:
        journal.decide(f"s{i}", i, "relabel", CLASSES[i % 3], reviewer="p")
        if i == 20:
            ready.set()
        i += 1


def test_kill_minus_nine_loses_nothing_acknowledged(tmp_path):
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Event()
    child = ctx.Process(target=_decide_forever, args=(tmp_path, ready))
    child.start()
    assert ready.wait(60)
    os.kill(child.pid, signal.SIGKILL)
    child.join()
    latest = CorrectionJournal(tmp_path, CLASSES).latest()
    seqs = sorted(d.seq for d in latest.values())
    assert len(seqs) >= 21 and seqs == list(range(1, len(seqs) + 1))  # every decision up to the kill, in order
    assert all(latest[f"s{i}"].label == CLASSES[i % 3] for i in range(len(seqs)))


def test_apply_relabels_drops_and_leaves_out_ambiguous(tmp_path):
    journal = CorrectionJournal(tmp_path, CLASSES)
    journal.decide("k1", 1, "relabel", "happy")
    journal.decide("k2", 2, "drop")
    journal.decide("k3", 3, "ambiguous")
    journal.decide("k0", 0, "keep", "anger")
    journal.decide("other", 9, "drop")  # not in this data set's training split
    corrections = read_corrections(tmp_path / CSV_NAME)
    applied = apply_corrections(["k0", "k1", "k2", "k3", "k4"], np.array([0, 1, 1, 2, 0]), CLASSES, corrections)
    np.testing.assert_array_equal(applied.labels, [0, 2, 1, 2, 0])
    np.testing.assert_array_equal(applied.keep, [True, True, False, False, True])
    assert applied.counts == {"keep": 1, "relabel": 1, "ambiguous": 1, "drop": 1} and applied.unmatched == 1
    assert "1 relabel" in applied.summary() and "1 decisions name no training sample" in applied.summary()
    assert len(corrections.sha256) == 64
    with pytest.raises(DataError, match="names a training sample"):
        apply_corrections(["z"], np.array([0]), CLASSES, corrections)


def test_malformed_corrections_are_one_line(tmp_path):
    bad = tmp_path / "c.csv"
    for text, message in [("key,decision\nx,drop\n", "no column label"),
                          ("key,decision,label\nx,maybe,\n", r"c.csv:2: decision must be one of"),
                          ("key,decision,label\nx,keep,\ny,relabel,\n", r"c.csv:3: a relabel decision without")]:
        bad.write_text(text)
        with pytest.raises(DataError, match=message) as info:
            read_corrections(bad)
        assert "\n" not in str(info.value)
    with pytest.raises(DataError, match="cannot read"):
        read_corrections(tmp_path / "none.csv")


def test_label_studio_export_then_import(tmp_path):
    image = np.zeros((4, 4, 3), np.uint8)
    tasks = export_tasks([Task(5, "a.png", "anger", "fear", 0.9, image), Task(7, "b.png", "happy", "anger", 0.5)])
    assert tasks[0]["data"]["image"].startswith("data:image/png;base64,")
    assert tasks[0]["predictions"][0]["result"][0]["value"]["choices"] == ["fear"]
    config = labeling_config(CLASSES)
    assert all(f'value="{c}"' in config for c in [*CLASSES, "ambiguous", "drop"])
    # what Label Studio's JSON export looks like after two annotators (one task cancelled, one redone)
    exported = [
        {**tasks[0], "annotations": [
            {"id": 1, "created_at": "2026-01-01T10:00", "completed_by": {"email": "ann@lab"},
             "result": [{"from_name": "label", "type": "choices", "value": {"choices": ["anger"]}}]},
            {"id": 2, "created_at": "2026-01-01T11:00", "completed_by": {"email": "bob@lab"},
             "result": [{"from_name": "label", "type": "choices", "value": {"choices": ["fear"]}}]}]},
        {**tasks[1], "annotations": [{"id": 3, "was_cancelled": True, "result": []}]},
        {"data": {"key": "c.png", "sample_id": 8, "given": "fear"}, "annotations": [
            {"id": 4, "result": [{"from_name": "label", "type": "choices", "value": {"choices": ["drop"]}}]}]},
    ]
    (tmp_path / "export.json").write_text(json.dumps(exported))
    fmt, got = read_export(tmp_path / "export.json")
    assert fmt == "JSON" and [t.key for t in got] == ["a.png", "b.png", "c.png"]
    refused = settle(got)  # the two annotators of a.png disagree: the caller refuses
    assert refused.conflicts == [("a.png", ["anger", "fear"])] and [t.key for t, _, _ in refused.decided] == ["c.png"]
    latest = settle(got, "latest")
    assert [(t.key, a.choice, a.annotator, how) for t, a, how in latest.decided] == [
        ("a.png", "fear", "bob@lab", "latest"), ("c.png", "drop", "", "one annotator")]
    assert latest.counts["skipped"] == 1 and latest.counts["conflicting"] == 1
    (tmp_path / "notjson.json").write_text("{")
    with pytest.raises(DataError, match="not a Label Studio export"):
        read_export(tmp_path / "notjson.json")


def _as_unprivileged(monkeypatch):
    """Root may write anything, so for root ``os.access`` answers by the owner's mode bits,
    as it would for the owner without privileges."""
    if os.geteuid() != 0:
        return
    real = os.access

    def access(path, mode, *args, **kwargs):
        if mode & os.W_OK and not os.stat(path).st_mode & 0o200:
            return False
        return real(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "access", access)


def test_a_read_only_run_folder_is_read_and_deciding_there_is_one_line(tmp_path, monkeypatch):
    from relabscope.errors import RelabscopeError

    journal = CorrectionJournal(tmp_path, CLASSES)
    journal.decide("a.png", 0, "relabel", "fear", reviewer="ann", base=0)
    (tmp_path / CSV_NAME).write_text("stale\n")  # e.g. copied with the run before the last decision
    _as_unprivileged(monkeypatch)
    for path, mode in ((tmp_path / JOURNAL_NAME, 0o444), (tmp_path / CSV_NAME, 0o444), (tmp_path, 0o555)):
        path.chmod(mode)
    try:
        shared = CorrectionJournal(tmp_path, CLASSES)  # opening must not try to rebuild the csv
        assert shared.latest()["a.png"].label == "fear"
        assert shared.read_only == f"{tmp_path / JOURNAL_NAME}: the journal is read-only, so no decision can be saved"
        with pytest.raises(RelabscopeError, match="read-only"):
            shared.decide("b.png", 1, "drop", base=0)
        assert (tmp_path / CSV_NAME).read_text() == "stale\n"
        assert [d.key for d in shared.history()] == ["a.png"]
    finally:
        tmp_path.chmod(0o755)
        for name in (JOURNAL_NAME, CSV_NAME):
            (tmp_path / name).chmod(0o644)


def test_opening_leaves_a_current_csv_alone(tmp_path):
    CorrectionJournal(tmp_path, CLASSES).decide("a.png", 0, "keep", base=0)
    before = (tmp_path / CSV_NAME).stat().st_mtime_ns
    os.utime(tmp_path / CSV_NAME, ns=(before - 10**9, before - 10**9))
    CorrectionJournal(tmp_path, CLASSES).latest()
    assert (tmp_path / CSV_NAME).stat().st_mtime_ns == before - 10**9
    (tmp_path / CSV_NAME).unlink()  # lost: rebuilt from the journal
    CorrectionJournal(tmp_path, CLASSES)
    assert _csv_rows(tmp_path)["a.png"]["decision"] == "keep"


def test_a_key_decided_twice_in_a_corrections_file_is_one_line(tmp_path):
    """On main the last of two rows deciding one key won, silently."""
    path = tmp_path / "corrections.csv"
    path.write_text("key,decision,label\na.png,keep,anger\nb.png,drop,\na.png,relabel,fear\n")
    with pytest.raises(DataError, match=rf"^{path}:4: 'a.png' is decided twice \(line 2 too\)"):
        read_corrections(path)
