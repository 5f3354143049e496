"""Class compactness (paper Table 2) against per-class loops, on hand-made arrays and on the
real tiny runs' distances and labels read with h5py."""

from __future__ import annotations

import math
import statistics

import h5py
import numpy as np
import pytest

from relabscope.analysis.compactness import compactness


def reference(distances, labels, mask, k):
    per_class = {c: [] for c in range(k)}
    for i in range(len(labels)):
        c = int(labels[i])
        if mask[i] and 0 <= c < k and math.isfinite(float(distances[i][c])):
            per_class[c].append(float(distances[i][c]))
    out = {}
    for c, values in per_class.items():
        if values:
            out[c] = (len(values), statistics.fmean(values), statistics.pstdev(values))
        else:
            out[c] = (0, math.nan, math.nan)
    return out


def assert_matches(df, ref, names):
    assert list(df.columns) == ["n", "mean", "std"] and list(df.index) == names
    for c, name in enumerate(names):
        n, mean, std = ref[c]
        assert df.loc[name, "n"] == n
        if n == 0:
            assert math.isnan(df.loc[name, "mean"]) and math.isnan(df.loc[name, "std"])
        else:
            assert df.loc[name, "mean"] == pytest.approx(mean, rel=1e-9)
            assert df.loc[name, "std"] == pytest.approx(std, rel=1e-7, abs=1e-9)


def test_hand_made() -> None:
    names = ["A", "B", "C", "D"]
    d = np.array([
        [1.0, 9.0, 9.0, 9.0],
        [3.0, 9.0, 9.0, 9.0],
        [9.0, 2.0, 9.0, 9.0],
        [9.0, 9.0, np.nan, 9.0],   # C: no embedding -> left out
        [5.0, 9.0, 9.0, 9.0],      # masked out
        [9.0, 9.0, 9.0, 9.0],      # unseen (label -1)
    ], dtype=np.float32)
    labels = np.array([0, 0, 1, 2, 0, -1])
    mask = np.array([True, True, True, True, False, True])
    df = compactness(d, labels, mask, names)
    assert df["n"].tolist() == [2, 1, 0, 0]
    assert df.loc["A", "mean"] == 2.0 and df.loc["A", "std"] == 1.0  # population std: ddof=0
    assert df.loc["B", "std"] == 0.0
    assert df.index.name == "class"
    assert_matches(df, reference(d, labels, mask, 4), names)
    empty = compactness(d, labels, np.zeros(6, bool), names)
    assert empty["n"].tolist() == [0] * 4 and empty["mean"].isna().all()


def test_random_against_loops() -> None:
    rng = np.random.default_rng(3)
    n, k = 500, 5
    d = (rng.random((n, k)) * 20).astype(np.float32)
    d[rng.random((n, k)) < 0.05] = np.nan
    labels = rng.integers(-1, k - 1, n)  # class k-1 never used
    mask = rng.random(n) < 0.7
    names = [f"c{j}" for j in range(k)]
    assert_matches(compactness(d, labels, mask, names), reference(d, labels, mask, k), names)


@pytest.mark.parametrize("method", ["scn", "scn-c"])
def test_tiny_runs_against_h5py(tiny_runs, method: str) -> None:
    with h5py.File(tiny_runs[method] / "run.h5", "r") as f:
        n = f["epochs/done"].shape[0]
        dist = f["epochs/distance"][:n]
        labels = f["epochs/label"][:n].astype(np.int64)
        given = f["samples/given_label"][:].astype(np.int64)
        train = f["samples/split"][:] == 0
        names = [s.decode() if isinstance(s, bytes) else s for s in f["meta/class_names"][:]]
    for epoch in (0, n - 1):
        for lab, mask in ((labels[epoch], train), (given, train), (labels[epoch], ~train)):
            df = compactness(dist[epoch], lab, mask, names)
            assert_matches(df, reference(dist[epoch], lab, mask, len(names)), names)
            assert df["n"].sum() > 0
