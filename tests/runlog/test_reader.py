"""Readers of one log in one process: every read returns the right rows.

HDF5's dataset refresh with two open handles of a dataset makes reads return rows of the
wrong epoch (h5py 3.16 / HDF5 2.0); the reader shares one handle per file and dataset."""

from __future__ import annotations

import os
import threading

import h5py
import numpy as np

from relabscope.runlog import RunLogReader


def _reference(log) -> np.ndarray:
    with h5py.File(log, "r") as f:  # a plain, separate process-level view before any reader
        return f["epochs/distance"][:]


def test_two_readers_and_a_hard_link_read_the_right_rows(tiny_runs, tmp_path) -> None:
    log = tiny_runs["scn"] / "run.h5"
    want = _reference(log)
    link = tmp_path / "run.h5"
    os.link(log, link)  # another path to the same file
    a, b, c = RunLogReader(log), RunLogReader(tiny_runs["scn"]), RunLogReader(link)
    try:
        for k in range(3 * len(want)):
            e = k % len(want)
            for reader in (a, b, c):
                np.testing.assert_array_equal(reader.epoch_array("distance", e), want[e])
    finally:
        a.close()
    np.testing.assert_array_equal(b.epoch_array("distance"), want)  # closing one leaves the others
    b.close()
    c.close()


def test_threads_sharing_a_reader_read_the_right_rows(tiny_runs) -> None:
    log = tiny_runs["scn-c"] / "run.h5"
    want = _reference(log)
    reader, wrong = RunLogReader(log), []

    def work(i: int) -> None:
        for k in range(20):
            e = (i + k) % len(want)
            if not np.array_equal(reader.epoch_array("distance", e), want[e], equal_nan=True):  # an empty class: NaN
                wrong.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    reader.close()
    assert wrong == []


def test_a_reader_collected_while_another_log_opens_does_not_deadlock(tiny_runs, tmp_path, monkeypatch) -> None:
    """A reader dropped without close() gives its share back from ``__del__``; the garbage
    collector may run that inside the opening of another log, on the same thread, while
    the shared-file registry's lock is held (the dashboard hung every request that way)."""
    import gc
    import shutil

    from relabscope.runlog import hdf5

    first, second = tmp_path / "a", tmp_path / "b"
    shutil.copytree(tiny_runs["scn"], first)
    shutil.copytree(tiny_runs["scn"], second)
    dropped = RunLogReader(first / "run.h5")
    dropped.cycle = dropped  # freed only by the collector, not by reference counting
    del dropped
    opening = hdf5.open_log

    def collect_then_open(path):
        gc.collect()  # the dropped reader's __del__ runs here, inside acquire
        return opening(path)

    monkeypatch.setattr(hdf5, "open_log", collect_then_open)
    opened: list[int] = []
    worker = threading.Thread(target=lambda: opened.append(RunLogReader(second / "run.h5").num_epochs), daemon=True)
    worker.start()
    worker.join(timeout=20)
    assert not worker.is_alive(), "opening a log deadlocked while another reader was collected"
    assert opened and opened[0] > 0
