"""Flip-flop counts, the Fig. 3 table, the oscillation matrix, final labels and relabels per
epoch, each checked against a plain-Python walk over every sample's label history: on
hand-made logs with the edge cases, on random logs, and on the real tiny runs (h5py)."""

from __future__ import annotations

import h5py
import numpy as np
import pandas as pd
import pytest

from relabscope.analysis.flipflops import (count_flipflops, final_labels, flipflop_mask, flipflop_table,
                                           oscillation_matrix, relabels_per_epoch)
from relabscope.runlog.schema import RELABEL_DTYPE

NAMES = ["A", "B", "C"]


def make_events(rows: list[tuple[int, int, int, int, int]]) -> np.ndarray:
    """(epoch, step, sample, old, new) tuples -> the log's structured event table."""
    ev = np.zeros(len(rows), RELABEL_DTYPE)
    for i, (epoch, step, sample, old, new) in enumerate(rows):
        ev[i] = (epoch, step, sample, old, new, 0.1, 0.9)
    return ev


def random_log(seed: int, n: int = 40, epochs: int = 6, k: int = 4, multi: bool = True):
    """A consistent random log: given labels, label rows and time-ordered events (possibly
    several per sample and epoch), with some unseen (-1) entries in the label rows."""
    rng = np.random.default_rng(seed)
    given = rng.integers(0, k, n)
    cur = given.copy()
    labels = np.zeros((epochs, n), np.int64)
    rows = []
    for e in range(epochs):
        labels[e] = cur
        for step in range(3):
            for s in range(n):
                if rng.random() < (0.25 if multi else 0.25 * (step == 0)):
                    new = int((cur[s] + rng.integers(1, k)) % k)
                    rows.append((e, e * 10 + step, s, int(cur[s]), new))
                    cur[s] = new
    unseen = rng.random((epochs, n)) < 0.05
    labels_seen = np.where(unseen, -1, labels)
    return given, labels_seen, make_events(rows), cur


# ---------------------------------------------------------------------- references
def histories(events: np.ndarray) -> dict[int, list[tuple[int, int, int]]]:
    """sample -> [(epoch, old, new), ...] in time order."""
    out: dict[int, list[tuple[int, int, int]]] = {}
    for ev in sorted(events.tolist(), key=lambda r: (r[0], r[1])):
        out.setdefault(int(ev[2]), []).append((int(ev[0]), int(ev[3]), int(ev[4])))
    return out


def reference_table(labels, events, given, clean, sample_ids, k):
    hist = histories(events)
    rows = []
    for j, sid in enumerate(sample_ids):
        h = hist.get(int(sid), [])
        seen_labels = [h[0][1]] if h else [int(given[j])]
        flips = 0
        for _, _, new in h:
            if new in set(seen_labels):
                flips += 1
            seen_labels.append(new)
        final = seen_labels[-1]
        c = -1 if clean is None else int(clean[j])
        row = {
            "sample_id": int(sid), "given_label": int(given[j]), "clean_label": c,
            "final_label": final, "changes": len(h), "flipflops": flips,
            "labels_visited": len(set(seen_labels)),
        }
        for cls in range(k):
            row[f"epochs_{NAMES[cls] if k == 3 else cls}"] = sum(1 for e in range(labels.shape[0]) if labels[e, j] == cls)
        row["first_relabel_epoch"] = h[0][0] if h else -1
        row["last_relabel_epoch"] = h[-1][0] if h else -1
        row["final_is_clean"] = None if c < 0 else final == c
        rows.append(row)
    return rows


def reference_oscillation(events: np.ndarray, k: int) -> np.ndarray:
    m = np.zeros((k, k), int)
    for h in histories(events).values():
        labels = [h[0][1]] + [new for _, _, new in h]
        for i in range(1, len(labels) - 1):
            if labels[i - 1] == labels[i + 1]:
                m[labels[i - 1], labels[i]] += 1
    return m


def assert_table_matches(df: pd.DataFrame, ref: list[dict]) -> None:
    assert len(df) == len(ref)
    for got, want in zip(df.to_dict("records"), ref):
        for key, value in want.items():
            if key == "final_is_clean":
                assert pd.isna(got[key]) if value is None else (bool(got[key]) == value), (key, got, want)
            else:
                assert got[key] == value, (key, got, want)


# ---------------------------------------------------------------------- hand-made
def hand_log():
    """6 samples (5 train, 1 test), 4 epochs, classes A B C.

    0: A->B->A->B->A, one event every epoch (flip-flops at epochs 1, 2, 3)
    1: never relabelled
    2: one event, in the last epoch (B -> C)
    3: A -> B (epoch 1), B -> C (epoch 2): no flip-flop, three labels
    4: unseen in epoch 2; C -> A in epoch 0
    5: test sample
    """
    given = np.array([0, 1, 1, 0, 2, 2])
    clean = np.array([0, 1, -1, 2, 0, 2])
    events = make_events([
        (0, 0, 0, 0, 1), (0, 1, 4, 2, 0),
        (1, 5, 0, 1, 0), (1, 6, 3, 0, 1),
        (2, 10, 0, 0, 1), (2, 11, 3, 1, 2),
        (3, 15, 0, 1, 0), (3, 16, 2, 1, 2),
    ])
    labels = np.array([
        [0, 1, 1, 0, 2, 2],
        [1, 1, 1, 0, 0, 2],
        [0, 1, 1, 1, -1, 2],
        [1, 1, 1, 2, 0, 2],
    ])
    return given, clean, events, labels


def test_hand_made_table() -> None:
    given, clean, events, labels = hand_log()
    train = np.arange(5)
    df = flipflop_table(labels=labels[:, train], events=events, given=given[train], clean=clean[train],
                        sample_ids=train, class_names=NAMES)
    assert list(df.columns) == ["sample_id", "given_label", "clean_label", "final_label", "changes", "flipflops",
                                "labels_visited", "epochs_A", "epochs_B", "epochs_C", "first_relabel_epoch",
                                "last_relabel_epoch", "final_is_clean"]
    assert str(df["final_is_clean"].dtype) == "boolean"
    assert df["changes"].tolist() == [4, 0, 1, 2, 1]
    assert df["flipflops"].tolist() == [3, 0, 0, 0, 0]
    assert df["labels_visited"].tolist() == [2, 1, 2, 3, 2]
    assert df["final_label"].tolist() == [0, 1, 2, 2, 0]
    assert df["epochs_A"].tolist() == [2, 0, 0, 2, 2]
    assert df["epochs_B"].tolist() == [2, 4, 4, 1, 0]
    assert df["epochs_C"].tolist() == [0, 0, 0, 1, 1]  # sample 4's unseen epoch counts for no class
    assert df["first_relabel_epoch"].tolist() == [0, -1, 3, 1, 0]
    assert df["last_relabel_epoch"].tolist() == [3, -1, 3, 2, 0]
    assert df["final_is_clean"].tolist() == [True, True, pd.NA, True, True]
    assert_table_matches(df, reference_table(labels[:, train], events, given[train], clean[train], train, 3))


def test_hand_made_oscillation_final_and_counts() -> None:
    given, clean, events, labels = hand_log()
    m = oscillation_matrix(events, 3)
    # sample 0: A B A B A -> triples ABA, BAB, ABA
    assert m.tolist() == [[0, 2, 0], [1, 0, 0], [0, 0, 0]]
    np.testing.assert_array_equal(m, reference_oscillation(events, 3))
    final = final_labels(labels[-1], events, last_epoch=3)
    assert final.tolist() == [0, 1, 2, 2, 0, 2]
    # events of earlier epochs are already in the last row: not re-applied
    assert final_labels(labels[2], events, last_epoch=2).tolist() == [1, 1, 1, 2, -1, 2]
    assert relabels_per_epoch(events["epoch"], 4).tolist() == [2, 2, 2, 2]
    assert relabels_per_epoch(events["epoch"], 5).tolist() == [2, 2, 2, 2, 0]
    assert flipflop_mask(events["sample"], events["old"], events["new"]).tolist() == [
        False, False, True, False, True, False, True, False]
    assert count_flipflops(events["sample"], events["old"], events["new"]) == 3


def test_no_events() -> None:
    given, clean, _, labels = hand_log()
    empty = make_events([])
    df = flipflop_table(labels=labels[:, :5], events=empty, given=given[:5], clean=None,
                        sample_ids=np.arange(5), class_names=NAMES)
    assert df["changes"].tolist() == [0] * 5 and df["flipflops"].tolist() == [0] * 5
    assert df["labels_visited"].tolist() == [1] * 5
    assert df["final_label"].tolist() == given[:5].tolist()
    assert df["clean_label"].tolist() == [-1] * 5
    assert df["final_is_clean"].isna().all() and str(df["final_is_clean"].dtype) == "boolean"
    assert (df["first_relabel_epoch"] == -1).all() and (df["last_relabel_epoch"] == -1).all()
    assert oscillation_matrix(empty, 3).tolist() == [[0] * 3] * 3
    assert final_labels(labels[-1], empty, last_epoch=3).tolist() == labels[-1].tolist()
    assert final_labels(given, empty, last_epoch=-1).tolist() == given.tolist()
    assert relabels_per_epoch(empty["epoch"], 3).tolist() == [0, 0, 0]
    assert relabels_per_epoch(empty["epoch"], 0).tolist() == []


def test_only_event_in_last_epoch() -> None:
    events = make_events([(2, 7, 1, 0, 2)])
    labels = np.zeros((3, 3), np.int64)
    df = flipflop_table(labels=labels, events=events, given=np.zeros(3), clean=np.array([0, 2, -1]),
                        sample_ids=np.arange(3), class_names=NAMES)
    assert df["final_label"].tolist() == [0, 2, 0]
    assert df["first_relabel_epoch"].tolist() == [-1, 2, -1]
    assert df["final_is_clean"].tolist() == [True, True, pd.NA]
    assert final_labels(labels[-1], events, last_epoch=2).tolist() == [0, 2, 0]
    assert final_labels(labels[-1], events, last_epoch=3).tolist() == [0, 0, 0]


def test_unordered_events_and_foreign_samples() -> None:
    """Events out of time order are sorted first; events of samples that are not columns
    (test samples, other ids) are ignored; sample_ids need not be contiguous."""
    given, clean, events, labels = hand_log()
    shuffled = events[np.random.default_rng(1).permutation(len(events))]
    ids = np.array([4, 0, 3])
    df = flipflop_table(labels=labels[:, ids], events=shuffled, given=given[ids], clean=clean[ids],
                        sample_ids=ids, class_names=NAMES)
    assert df["sample_id"].tolist() == [4, 0, 3]
    assert df["changes"].tolist() == [1, 4, 2]
    assert df["flipflops"].tolist() == [0, 3, 0]
    np.testing.assert_array_equal(oscillation_matrix(shuffled, 3), oscillation_matrix(events, 3))
    assert final_labels(labels[-1], shuffled, last_epoch=3).tolist() == [0, 1, 2, 2, 0, 2]


@pytest.mark.parametrize("seed", range(5))
def test_random_logs_against_loops(seed: int) -> None:
    given, labels, events, cur = random_log(seed)
    n = len(given)
    rng = np.random.default_rng(seed + 100)
    clean = np.where(rng.random(n) < 0.3, -1, rng.integers(0, 4, n))
    names = [str(c) for c in range(4)]
    df = flipflop_table(labels=labels, events=events, given=given, clean=clean,
                        sample_ids=np.arange(n), class_names=names)
    ref = reference_table(labels, events, given, clean, np.arange(n), 4)
    assert_table_matches(df, ref)
    np.testing.assert_array_equal(oscillation_matrix(events, 4), reference_oscillation(events, 4))
    last = labels.shape[0] - 1
    want = labels[-1].copy()
    for ev in events.tolist():
        if ev[0] == last:
            want[ev[2]] = ev[4]
    np.testing.assert_array_equal(final_labels(labels[-1], events, last_epoch=last), want)
    # with every sample seen in the last epoch, final labels equal the end of the history
    seen_last = want >= 0
    np.testing.assert_array_equal(want[seen_last], cur[seen_last])
    counts = [sum(1 for ev in events.tolist() if ev[0] == e) for e in range(labels.shape[0])]
    assert relabels_per_epoch(events["epoch"], labels.shape[0]).tolist() == counts


# ---------------------------------------------------------------------- real runs
@pytest.mark.parametrize("method", ["scn", "scn-c", "baseline"])
def test_tiny_runs_against_h5py(tiny_runs, method: str) -> None:
    with h5py.File(tiny_runs[method] / "run.h5", "r") as f:
        n_epochs = f["epochs/done"].shape[0]
        labels = f["epochs/label"][:n_epochs].astype(np.int64)
        events = f["relabels"][:]
        given = f["samples/given_label"][:].astype(np.int64)
        clean = f["samples/clean_label"][:].astype(np.int64)
        train = f["samples/split"][:] == 0
        names = [s.decode() if isinstance(s, bytes) else s for s in f["meta/class_names"][:]]
    ids = np.flatnonzero(train)
    df = flipflop_table(labels=labels[:, train], events=events, given=given[train], clean=clean[train],
                        sample_ids=ids, class_names=names)
    hist = histories(events)
    for row in df.itertuples(index=False):
        h = hist.get(row.sample_id, [])
        held = [int(given[row.sample_id])]
        flips = 0
        for _, old, new in h:
            assert old == held[-1]  # the log's events chain: old = the label held
            flips += new in set(held)
            held.append(new)
        assert (row.changes, row.flipflops, row.labels_visited, row.final_label) == (len(h), flips, len(set(held)), held[-1])
        for c, name in enumerate(names):
            assert getattr(row, f"epochs_{name}") == int((labels[:, row.sample_id] == c).sum())
    if method == "baseline":
        assert len(events) == 0 and (df["changes"] == 0).all()
    else:
        assert len(events) > 0 and df["flipflops"].sum() > 0
    # every recorded relabel of epoch e shows in row e + 1
    for ev in events.tolist():
        if ev[0] + 1 < n_epochs:
            assert labels[ev[0] + 1, ev[2]] == ev[4]
    final = final_labels(labels[-1], events, last_epoch=n_epochs - 1)
    np.testing.assert_array_equal(final[train], df["final_label"].to_numpy())
    np.testing.assert_array_equal(oscillation_matrix(events, len(names)), reference_oscillation(events, len(names)))
    assert relabels_per_epoch(events["epoch"], n_epochs).tolist() == [
        sum(1 for ev in events.tolist() if ev[0] == e) for e in range(n_epochs)]
