"""Key epochs and one sample's distance profile (paper Fig. 1/4) against loops, on hand-made
events and the real tiny runs read with h5py."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from relabscope.analysis.distances import distance_profile, key_epochs
from relabscope.runlog.schema import RELABEL_DTYPE

COLUMNS = ["epoch", "class_id", "class_name", "distance", "relative_distance", "is_given", "is_effect", "is_clean",
           "label_in_effect"]


def make_events(rows):
    ev = np.zeros(len(rows), RELABEL_DTYPE)
    for i, (epoch, step, sample, old, new) in enumerate(rows):
        ev[i] = (epoch, step, sample, old, new, 0.3, 0.6)
    return ev


def test_key_epochs() -> None:
    events = make_events([(2, 0, 5, 0, 1), (4, 1, 5, 1, 0), (3, 2, 7, 2, 1), (5, 3, 8, 0, 2)])
    assert key_epochs(events, 5, 10) == [2, 3, 9]        # first relabel, after it, last
    assert key_epochs(events, 7, 4) == [3]               # relabel in the last epoch: no after
    assert key_epochs(events, 8, 7) == [5, 6]            # "after" is the last epoch
    assert key_epochs(events, 1, 10) == [0, 9]           # never relabelled
    assert key_epochs(events, 1, 1) == [0]
    assert key_epochs(events, 1, 0) == []
    assert key_epochs(make_events([]), 3, 5) == [0, 4]


def reference(epochs, rows, effect, given, clean, names, spreads=None):
    out = []
    n_epochs = len(effect)
    for e in epochs:
        e = e % n_epochs if e < 0 else e
        for c, name in enumerate(names):
            spread = spreads[e] if spreads is not None else float("nan")
            out.append({
                "epoch": e, "class_id": c, "class_name": name, "distance": float(rows[e][c]),
                "relative_distance": float(rows[e][c]) / spread,
                "is_given": c == given, "is_effect": c == effect[e],
                "is_clean": clean is not None and c == clean, "label_in_effect": int(effect[e]),
            })
    return out


def assert_matches(df, ref) -> None:
    assert list(df.columns) == COLUMNS and len(df) == len(ref)
    for got, want in zip(df.to_dict("records"), ref):
        for key, value in want.items():
            if key in ("distance", "relative_distance"):
                assert got[key] == pytest.approx(value, nan_ok=True)
            else:
                assert got[key] == value, key


def test_hand_made_profile() -> None:
    names = ["A", "B", "C"]
    rows = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, np.nan], [0.5, 0.5, 0.5]])
    effect = np.array([0, 0, 2, -1])  # unseen in the last epoch
    calls = []

    def row_at(e):
        calls.append(e)
        return rows[e]

    df = distance_profile(3, [0, 2, -1, -2], row_at, effect, given=0, clean=None, class_names=names)
    assert calls == [0, 2, 3]  # -2 is epoch 2 again: read once, listed once
    assert df["epoch"].tolist() == [0] * 3 + [2] * 3 + [3] * 3
    assert df["is_clean"].tolist() == [False] * 9
    assert df[df.epoch == 3]["is_effect"].tolist() == [False] * 3
    assert df[df.epoch == 2]["is_effect"].tolist() == [False, False, True]
    assert_matches(df, reference([0, 2, 3], rows, effect, 0, None, names))

    spreads = {1: 2.0}
    df = distance_profile(3, [1], lambda e: rows[e], effect, given=1, clean=2, class_names=names,
                          spread_at=spreads.__getitem__)
    assert_matches(df, reference([1], rows, effect, 1, 2, names, spreads))
    assert df["relative_distance"].tolist() == [2.0, 2.5, 3.0]
    assert df["is_clean"].tolist() == [False, False, True]
    with pytest.raises(IndexError):
        distance_profile(3, [4], lambda e: rows[e], effect, given=1, clean=2, class_names=names)
    empty = distance_profile(3, [], lambda e: rows[e], effect, given=1, clean=2, class_names=names)
    assert list(empty.columns) == COLUMNS and len(empty) == 0


def test_tiny_run_profiles_against_h5py(tiny_runs) -> None:
    with h5py.File(tiny_runs["scn-c"] / "run.h5", "r") as f:
        n = f["epochs/done"].shape[0]
        dist = f["epochs/distance"][:n]
        labels = f["epochs/label"][:n].astype(np.int64)
        given = f["samples/given_label"][:].astype(np.int64)
        clean = f["samples/clean_label"][:].astype(np.int64)
        events = f["relabels"][:]
        names = [s.decode() if isinstance(s, bytes) else s for s in f["meta/class_names"][:]]
    relabelled = sorted({int(s) for s in events["sample"]})
    never = sorted(set(range(len(given))) - set(relabelled))
    for sid in relabelled[:5] + never[:2]:
        firsts = [ev[0] for ev in events.tolist() if ev[2] == sid]
        want = sorted({firsts[0], firsts[0] + 1, n - 1} if firsts else {0, n - 1})
        want = [e for e in want if e < n]
        epochs = key_epochs(events, sid, n)
        assert epochs == want
        if firsts:  # before the first relabel the label in effect is still the old one
            first_old = [ev[3] for ev in events.tolist() if ev[2] == sid][0]
            assert labels[epochs[0], sid] == first_old
        df = distance_profile(sid, epochs, lambda e: dist[e][sid], labels[:, sid], int(given[sid]),
                              int(clean[sid]), names)
        assert_matches(df, reference(epochs, dist[:, sid], labels[:, sid], int(given[sid]), int(clean[sid]), names))


def test_center_spread_is_the_mean_distance_between_class_means() -> None:
    from relabscope.analysis.distances import center_spread

    means = np.array([[0.0, 0.0], [3.0, 4.0], [0.0, 8.0], [np.nan, np.nan]])  # the last class: no mean
    pairs = [5.0, 8.0, 5.0]  # |0-1|, |0-2|, |1-2|
    assert center_spread(means) == pytest.approx(sum(pairs) / 3)
    assert center_spread(means * 7.5) == pytest.approx(7.5 * sum(pairs) / 3)
    assert np.isnan(center_spread(means[:1]))

