"""Relabel consistency (distances before/after each relabel) against per-event loops, on
hand-made distances, random logs and the real tiny runs read with h5py."""

from __future__ import annotations

import math

import h5py
import numpy as np
import pandas as pd
import pytest

from relabscope.analysis.consistency import consistency_events, consistency_summary
from relabscope.runlog.schema import RELABEL_DTYPE

COLUMNS = ["epoch", "sample_id", "old", "new", "d_old_before", "d_new_before", "d_old_after",
           "d_new_after", "closer_before", "closer_to_new", "gap_change", "rel_gap_change", "undone"]


def make_events(rows):
    ev = np.zeros(len(rows), RELABEL_DTYPE)
    for i, (epoch, step, sample, old, new) in enumerate(rows):
        ev[i] = (epoch, step, sample, old, new, 0.2, 0.8)
    return ev


class CountingRows:
    """``distance_at`` that records which epochs were read."""

    def __init__(self, distances: np.ndarray):
        self.distances = distances
        self.calls: list[int] = []

    def __call__(self, e: int) -> np.ndarray:
        self.calls.append(e)
        return self.distances[e]


def reference(events: np.ndarray, distances: np.ndarray, num_epochs: int) -> list[dict]:
    rows = []
    evs = events.tolist()
    for j, (e, _, s, old, new, _, _) in enumerate(evs):
        before = distances[e][s]
        after = distances[e + 1][s] if e + 1 < num_epochs else None
        d_ob, d_nb = float(before[old]), float(before[new])
        d_oa = float(after[old]) if after is not None else math.nan
        d_na = float(after[new]) if after is not None else math.nan
        defined = not (math.isnan(d_oa) or math.isnan(d_na))
        rows.append({
            "epoch": e, "sample_id": s, "old": old, "new": new,
            "d_old_before": d_ob, "d_new_before": d_nb, "d_old_after": d_oa, "d_new_after": d_na,
            "closer_before": (d_nb < d_ob) if not (math.isnan(d_ob) or math.isnan(d_nb)) else None,
            "closer_to_new": (d_na < d_oa) if defined else None,
            "gap_change": (d_na - d_oa) - (d_nb - d_ob),
            "rel_gap_change": (d_na - d_oa) / (d_na + d_oa) - (d_nb - d_ob) / (d_nb + d_ob),
            "undone": any(evs[i][2] == s and evs[i][4] == old for i in range(j + 1, len(evs))),
        })
    return rows


def assert_matches(df: pd.DataFrame, ref: list[dict]) -> None:
    assert list(df.columns) == COLUMNS and len(df) == len(ref)
    assert str(df["closer_to_new"].dtype) == "boolean"
    for got, want in zip(df.to_dict("records"), ref):
        for key, value in want.items():
            if key in ("closer_to_new", "closer_before"):
                assert pd.isna(got[key]) if value is None else bool(got[key]) == value
            elif isinstance(value, float) and math.isnan(value):
                assert math.isnan(got[key]), key
            elif isinstance(value, float):
                assert got[key] == pytest.approx(value, rel=1e-6, abs=1e-9), key
            else:
                assert got[key] == value, key


def reference_summary(ref: list[dict]) -> dict:
    evaluated = [r for r in ref if r["closer_to_new"] is not None]
    gaps = [r["gap_change"] for r in evaluated if not math.isnan(r["gap_change"])]
    rel = [r["rel_gap_change"] for r in evaluated if not math.isnan(r["rel_gap_change"])]
    before = [r["closer_before"] for r in evaluated if r["closer_before"] is not None]
    undone = sum(r["undone"] for r in ref)
    return {
        "events": len(ref), "evaluated": len(evaluated),
        "closer_before": sum(before) / len(before) if before else math.nan,
        "closer_to_new": sum(r["closer_to_new"] for r in evaluated) / len(evaluated) if evaluated else math.nan,
        "mean_gap_change": sum(gaps) / len(gaps) if gaps else math.nan,
        "mean_rel_gap_change": sum(rel) / len(rel) if rel else math.nan,
        "undone": undone, "undone_fraction": undone / len(ref) if ref else math.nan,
    }


def assert_summary(s: pd.Series, want: dict) -> None:
    assert list(s.index) == ["events", "evaluated", "closer_before", "closer_to_new", "mean_gap_change",
                             "mean_rel_gap_change", "undone", "undone_fraction"]
    for key, value in want.items():
        if isinstance(value, float) and math.isnan(value):
            assert math.isnan(s[key]), key
        else:
            assert s[key] == pytest.approx(value), key


def test_hand_made() -> None:
    """4 samples, 3 classes, 3 epochs. Sample 0 flips A->B (epoch 0) and back (epoch 1);
    sample 1 relabels in the last epoch (no after); sample 2 is unseen after its relabel."""
    d = np.full((3, 4, 3), 5.0)
    d[0, 0] = [1.0, 3.0, 9.0]   # before: near A
    d[1, 0] = [4.0, 2.0, 9.0]   # after A->B: near B; before B->A
    d[2, 0] = [1.5, 2.5, 9.0]   # after B->A: near A
    d[1, 2] = [6.0, 7.0, 1.0]
    d[2, 2] = np.nan             # sample 2 not seen in epoch 2
    events = make_events([(0, 0, 0, 0, 1), (1, 3, 0, 1, 0), (1, 4, 2, 2, 0), (2, 6, 1, 1, 2)])
    rows = CountingRows(d)
    df = consistency_events(events, rows, 3)
    assert sorted(rows.calls) == [0, 1, 2]
    assert df["d_old_before"].tolist() == [1.0, 2.0, 1.0, 5.0]
    assert df["d_new_after"].tolist()[:2] == [2.0, 1.5]
    assert df["closer_to_new"].tolist() == [True, True, pd.NA, pd.NA]
    assert df["gap_change"].tolist()[:2] == [(2 - 4) - (3 - 1), (1.5 - 2.5) - (4 - 2)]
    assert df["undone"].tolist() == [True, False, False, False]
    assert df["rel_gap_change"].iloc[0] == pytest.approx((2 - 4) / (2 + 4) - (3 - 1) / (3 + 1))  # scale-free
    assert df["closer_before"].tolist()[:2] == [False, False]  # both were relabelled while nearer the old class
    assert_matches(df, reference(events, d, 3))
    s = consistency_summary(df)
    assert s["events"] == 4 and s["evaluated"] == 2 and s["closer_to_new"] == 1.0 and s["undone"] == 1
    assert s["undone_fraction"] == 0.25
    assert_summary(s, reference_summary(reference(events, d, 3)))


def test_empty_and_last_epoch_only() -> None:
    rows = CountingRows(np.ones((2, 3, 3)))
    df = consistency_events(make_events([]), rows, 2)
    assert list(df.columns) == COLUMNS and len(df) == 0 and rows.calls == []
    s = consistency_summary(df)
    assert s["events"] == 0 and s["evaluated"] == 0 and s["undone"] == 0
    assert math.isnan(s["closer_to_new"]) and math.isnan(s["mean_gap_change"]) and math.isnan(s["undone_fraction"])
    assert_summary(consistency_summary(pd.DataFrame(columns=COLUMNS)), reference_summary([]))

    d = np.arange(2 * 3 * 3, dtype=float).reshape(2, 3, 3)
    events = make_events([(1, 0, 2, 0, 1)])
    rows = CountingRows(d)
    df = consistency_events(events, rows, 2)
    assert rows.calls == [1]
    assert df["closer_to_new"].isna().all() and np.isnan(df["d_old_after"]).all()
    s = consistency_summary(df)
    assert s["events"] == 1 and s["evaluated"] == 0 and math.isnan(s["closer_to_new"])


@pytest.mark.parametrize("seed", range(4))
def test_random_against_loops(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, epochs, k = 30, 5, 4
    cur = rng.integers(0, k, n)
    rows_ = []
    for e in range(epochs):
        for s in range(n):
            if rng.random() < 0.3:
                new = int((cur[s] + rng.integers(1, k)) % k)
                rows_.append((e, e * 10 + int(rng.integers(0, 5)), s, int(cur[s]), new))
                cur[s] = new
    rows_.sort(key=lambda r: (r[0], r[1]))
    events = make_events(rows_)
    d = rng.random((epochs, n, k)) * 10
    d[rng.random((epochs, n, k)) < 0.03] = np.nan
    counting = CountingRows(d)
    df = consistency_events(events, counting, epochs)
    assert len(counting.calls) == len(set(counting.calls))
    ref = reference(events, d, epochs)
    assert_matches(df, ref)
    assert_summary(consistency_summary(df), reference_summary(ref))


@pytest.mark.parametrize("method", ["scn", "scn-c", "baseline"])
def test_tiny_runs_against_h5py(tiny_runs, method: str) -> None:
    with h5py.File(tiny_runs[method] / "run.h5", "r") as f:
        n_epochs = f["epochs/done"].shape[0]
        d = f["epochs/distance"][:n_epochs]
        events = f["relabels"][:]
    counting = CountingRows(d)
    df = consistency_events(events, counting, n_epochs)
    assert len(counting.calls) == len(set(counting.calls)) <= n_epochs
    ref = reference(events, d, n_epochs)
    assert_matches(df, ref)
    assert_summary(consistency_summary(df), reference_summary(ref))
    if method != "baseline":
        assert df["closer_to_new"].notna().sum() > 0
