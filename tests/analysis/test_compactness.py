"""Class compactness (paper Table 2) against per-class loops, on hand-made arrays and on the
real tiny runs' distances and labels read with h5py."""

from __future__ import annotations

import math
import statistics

import h5py
import numpy as np
import pandas as pd
import pytest

from relabscope.analysis.compactness import compactness


def reference(distances, labels, mask, k):
    """Per class: n, mean, std of the own distance, and the means of the scale-free ratio,
    nearest_own and silhouette, recounted with plain loops (a NaN column - a class without a
    mean - is never the nearest other class)."""
    per_class = {c: {"own": [], "ratio": [], "nearest": [], "sil": []} for c in range(k)}
    for i in range(len(labels)):
        c = int(labels[i])
        if not (mask[i] and 0 <= c < k and math.isfinite(float(distances[i][c]))):
            continue
        a = float(distances[i][c])
        per_class[c]["own"].append(a)
        others = [float(distances[i][j]) for j in range(k) if j != c and math.isfinite(float(distances[i][j]))]
        if others:
            b = min(others)
            if b > 0:
                per_class[c]["ratio"].append(a / b)
            per_class[c]["nearest"].append(1.0 if a < b else 0.0)
            per_class[c]["sil"].append((b - a) / max(a, b) if max(a, b) > 0 else 0.0)
    out = {}
    for c, v in per_class.items():
        mean_of = lambda xs: statistics.fmean(xs) if xs else math.nan  # noqa: E731
        if v["own"]:
            out[c] = (len(v["own"]), statistics.fmean(v["own"]), statistics.pstdev(v["own"]),
                      mean_of(v["ratio"]), mean_of(v["nearest"]), mean_of(v["sil"]))
        else:
            out[c] = (0, math.nan, math.nan, math.nan, math.nan, math.nan)
    return out


def assert_matches(df, ref, names):
    assert list(df.columns) == ["n", "mean", "std", "ratio", "nearest_own", "silhouette"]
    assert list(df.index) == names
    for c, name in enumerate(names):
        n, mean, std, ratio, nearest, sil = ref[c]
        assert df.loc[name, "n"] == n
        if n == 0:
            assert df.loc[name].drop("n").isna().all()
        else:
            assert df.loc[name, "mean"] == pytest.approx(mean, rel=1e-9)
            assert df.loc[name, "std"] == pytest.approx(std, rel=1e-7, abs=1e-9)
        for col, want in (("ratio", ratio), ("nearest_own", nearest), ("silhouette", sil)):
            assert df.loc[name, col] == pytest.approx(want, rel=1e-9, nan_ok=True), (name, col)


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


def test_a_class_without_a_mean_is_skipped_not_nan() -> None:
    """Class C was relabelled empty: its distance column is NaN for everyone. It is never
    the nearest other class, and the other classes' scale-free numbers stay numbers."""
    d = np.array([[1.0, 4.0, np.nan], [3.0, 2.0, np.nan], [6.0, 1.0, np.nan]])
    df = compactness(d, np.array([0, 0, 1]), np.ones(3, bool), ["A", "B", "C"])
    assert df.loc["A", "ratio"] == pytest.approx((1 / 4 + 3 / 2) / 2)
    assert df.loc["A", "nearest_own"] == 0.5 and df.loc["B", "nearest_own"] == 1.0
    assert df.loc["C", "n"] == 0 and df.loc[["A", "B"], ["ratio", "nearest_own", "silhouette"]].notna().all().all()
    alone = compactness(d[:, :1], np.array([0, 0, 0]), np.ones(3, bool), ["A"])  # no other class: no ratio
    assert alone.loc["A", "n"] == 3 and np.isnan(alone.loc["A", "ratio"])


@pytest.mark.parametrize("scale", [1e-3, 0.37, 12.0])
def test_scale_free_columns_do_not_change_when_every_distance_scales(scale) -> None:
    rng = np.random.default_rng(7)
    d = rng.random((300, 6)) * 5
    d[:, 5] = np.nan  # an emptied class
    labels = rng.integers(0, 5, 300)
    base = compactness(d, labels, np.ones(300, bool), list("abcdef"))
    scaled = compactness(d * scale, labels, np.ones(300, bool), list("abcdef"))
    free = ["ratio", "nearest_own", "silhouette"]
    pd.testing.assert_frame_equal(scaled[free], base[free], rtol=1e-12)
    np.testing.assert_allclose(scaled["mean"], base["mean"] * scale, rtol=1e-12)


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
