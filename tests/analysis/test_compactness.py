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


def reference(distances, labels, mask, k, competitors=None):
    """Per class: n (seen samples of the class), n_without_mean (of those, the ones whose
    class has no finite distance anywhere), and over the measured samples the mean and std
    of the own distance and the means of the scale-free ratio, nearest_own and silhouette,
    recounted with plain loops (a NaN column - a class without a mean - and a class not in
    ``competitors`` are never the nearest other class)."""
    has_mean = [any(math.isfinite(float(distances[i][c])) for i in range(len(labels))) for c in range(k)]
    allowed = [has_mean[c] and (competitors is None or competitors[c]) for c in range(k)]
    per_class = {c: {"n": 0, "without": 0, "own": [], "ratio": [], "nearest": [], "sil": []} for c in range(k)}
    for i in range(len(labels)):
        c = int(labels[i])
        seen = any(math.isfinite(float(x)) for x in distances[i])
        if not (mask[i] and 0 <= c < k and seen):
            continue
        per_class[c]["n"] += 1
        per_class[c]["without"] += not has_mean[c]
        if not math.isfinite(float(distances[i][c])):
            continue
        a = float(distances[i][c])
        per_class[c]["own"].append(a)
        others = [float(distances[i][j]) for j in range(k)
                  if j != c and allowed[j] and math.isfinite(float(distances[i][j]))]
        if others:
            b = min(others)
            if b > 0:
                per_class[c]["ratio"].append(a / b)
            per_class[c]["nearest"].append(1.0 if a < b else 0.0)
            per_class[c]["sil"].append((b - a) / max(a, b) if max(a, b) > 0 else 0.0)
    out = {}
    for c, v in per_class.items():
        mean_of = lambda xs: statistics.fmean(xs) if xs else math.nan  # noqa: E731
        spread = statistics.pstdev(v["own"]) if v["own"] else math.nan
        out[c] = (v["n"], v["without"], mean_of(v["own"]), spread, mean_of(v["ratio"]), mean_of(v["nearest"]),
                  mean_of(v["sil"]))
    return out


def assert_matches(df, ref, names):
    assert list(df.columns) == ["n", "n_without_mean", "mean", "std", "ratio", "nearest_own", "silhouette"]
    assert list(df.index) == names
    for c, name in enumerate(names):
        n, without, mean, std, ratio, nearest, sil = ref[c]
        assert df.loc[name, "n"] == n and df.loc[name, "n_without_mean"] == without, name
        if math.isnan(mean):
            assert df.loc[name].drop(["n", "n_without_mean"]).isna().all()
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
        [np.nan] * 4,              # C: no embedding (unseen that epoch) -> not counted
        [5.0, 9.0, 9.0, 9.0],      # masked out
        [9.0, 9.0, 9.0, 9.0],      # no label (-1)
    ], dtype=np.float32)
    labels = np.array([0, 0, 1, 2, 0, -1])
    mask = np.array([True, True, True, True, False, True])
    df = compactness(d, labels, mask, names)
    assert df["n"].tolist() == [2, 1, 0, 0] and df["n_without_mean"].tolist() == [0] * 4
    assert df.loc["A", "mean"] == 2.0 and df.loc["A", "std"] == 1.0  # population std: ddof=0
    assert df.loc["B", "std"] == 0.0
    assert df.index.name == "class"
    assert_matches(df, reference(d, labels, mask, 4), names)
    empty = compactness(d, labels, np.zeros(6, bool), names)
    assert empty["n"].tolist() == [0] * 4 and empty["mean"].isna().all()


def test_a_class_without_a_mean_is_counted_and_never_a_competitor() -> None:
    """Class C was relabelled empty: its distance column is NaN for everyone. It is never
    the nearest other class, the other classes' scale-free numbers stay numbers, and the
    samples whose own class is C (under given labels, say) are counted in n and in
    n_without_mean, not dropped."""
    d = np.array([[1.0, 4.0, np.nan], [3.0, 2.0, np.nan], [6.0, 1.0, np.nan], [2.0, 5.0, np.nan]])
    df = compactness(d, np.array([0, 0, 1, 2]), np.ones(4, bool), ["A", "B", "C"])
    assert df.loc["A", "ratio"] == pytest.approx((1 / 4 + 3 / 2) / 2)
    assert df.loc["A", "nearest_own"] == 0.5 and df.loc["B", "nearest_own"] == 1.0
    assert df.loc["C", "n"] == 1 and df.loc["C", "n_without_mean"] == 1
    assert df.loc["C"].drop(["n", "n_without_mean"]).isna().all()
    assert df.loc[["A", "B"], ["ratio", "nearest_own", "silhouette"]].notna().all().all()
    alone = compactness(d[:, :1], np.array([0, 0, 0, 0]), np.ones(4, bool), ["A"])  # no other class: no ratio
    assert alone.loc["A", "n"] == 4 and np.isnan(alone.loc["A", "ratio"])


def test_competitors_restrict_the_nearest_other_class() -> None:
    """B is nearer than C to every A sample; with only C as competitor the ratio uses C."""
    d = np.array([[1.0, 2.0, 4.0], [1.0, 2.0, 5.0], [3.0, 0.5, 3.0], [3.0, 3.0, 0.5]])
    labels = np.array([0, 0, 1, 2])
    every = compactness(d, labels, np.ones(4, bool), ["A", "B", "C"])
    only_c = compactness(d, labels, np.ones(4, bool), ["A", "B", "C"], competitors=np.array([True, False, True]))
    assert every.loc["A", "ratio"] == pytest.approx((1 / 2 + 1 / 2) / 2)
    assert only_c.loc["A", "ratio"] == pytest.approx((1 / 4 + 1 / 5) / 2)
    assert only_c.loc["A", "n"] == every.loc["A", "n"] == 2
    assert_matches(only_c, reference(d, labels, np.ones(4, bool), 3, [True, False, True]), ["A", "B", "C"])


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
