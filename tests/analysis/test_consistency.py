"""Relabel consistency: "after" is read once the new label has trained, from the same kind of
pass as "before"; the control group and the lag view. Checked against per-event loops on
hand-made distances, random logs and the real tiny runs read with h5py, and as properties:
an embedding that follows its relabel only after training on it counts as following it,
and a drift that the nearly-relabelled samples show too is not credited to relabelling."""

from __future__ import annotations

import math

import h5py
import numpy as np
import pandas as pd
import pytest

from relabscope.analysis.consistency import (COLUMNS, CONTROL_COLUMNS, FIRST_TRAINED_LAG, LAG_COLUMNS, SUMMARY,
                                             after_epochs, consistency_by_lag, consistency_control,
                                             consistency_events, consistency_summary, matched)
from relabscope.analysis.run import Run
from relabscope.runlog.schema import RELABEL_DTYPE
from tests.conftest import TINY


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


def reference_after(e: int, sources: list[str]) -> int | None:
    """The "after" epoch by the definition, as a plain loop."""
    a = e + (2 if sources[e] == "train" else 1)
    while a < len(sources):
        if sources[a] == sources[e]:
            return a
        a += 1
    return None


def reference(events: np.ndarray, distances: np.ndarray, sources: list[str]) -> list[dict]:
    rows = []
    evs = events.tolist()
    for j, (e, _, s, old, new, _, _) in enumerate(evs):
        before = distances[e][s]
        a = reference_after(e, sources)
        after = distances[a][s] if a is not None else None
        d_ob, d_nb = float(before[old]), float(before[new])
        d_oa = float(after[old]) if after is not None else math.nan
        d_na = float(after[new]) if after is not None else math.nan
        defined = not (math.isnan(d_oa) or math.isnan(d_na))
        rows.append({
            "epoch": e, "sample_id": s, "old": old, "new": new,
            "before_pass": sources[e], "after_epoch": a, "after_pass": None if a is None else sources[a],
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
    assert str(df["closer_to_new"].dtype) == "boolean" and str(df["after_epoch"].dtype) == "Int64"
    for got, want in zip(df.to_dict("records"), ref):
        for key, value in want.items():
            if key in ("closer_to_new", "closer_before", "after_epoch", "after_pass"):
                assert pd.isna(got[key]) if value is None else got[key] == value, key
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
    assert list(s.index) == SUMMARY
    for key, value in want.items():
        if isinstance(value, float) and math.isnan(value):
            assert math.isnan(s[key]), key
        else:
            assert s[key] == pytest.approx(value), key


# ---------------------------------------------------------------------- when "after" is read
def test_after_is_the_first_epoch_trained_on_new() -> None:
    assert FIRST_TRAINED_LAG == {"train": 2, "probe": 1}
    assert after_epochs(np.arange(5), ["train"] * 5).tolist() == [2, 3, 4, -1, -1]
    assert after_epochs(np.arange(5), ["probe"] * 5).tolist() == [1, 2, 3, 4, -1]
    # probe every 2nd epoch: each pass is compared only with its own kind
    sources = ["train", "probe", "train", "probe", "train", "probe"]
    assert after_epochs(np.arange(6), sources).tolist() == [2, 3, 4, 5, -1, -1]
    assert after_epochs(np.arange(6), sources).tolist() == [reference_after(e, sources) or -1 for e in range(6)]
    assert after_epochs(np.array([0, 7]), ["train"] * 3).tolist() == [2, -1]  # an epoch outside the log: NA


def test_hand_made() -> None:
    """4 samples, 3 classes, 4 training-pass epochs. Sample 0 flips A->B (epoch 0) and back
    (epoch 1); sample 1 relabels in epoch 2 (no epoch 4: NA); sample 2 is unseen at its after."""
    d = np.full((4, 4, 3), 5.0)
    d[0, 0] = [1.0, 3.0, 9.0]   # before A->B: near A
    d[1, 0] = [1.2, 3.0, 9.0]   # one epoch later, not yet trained on B: still near A (the old definition's "after")
    d[2, 0] = [4.0, 2.0, 9.0]   # trained on B once: near B; after of A->B
    d[3, 0] = [1.5, 2.5, 9.0]   # after of B->A (epoch 1 + 2)
    d[2, 1] = [6.0, 7.0, 1.0]
    d[3, 2] = np.nan             # sample 2 not seen in epoch 3
    events = make_events([(0, 0, 0, 0, 1), (1, 3, 0, 1, 0), (1, 4, 2, 2, 0), (2, 6, 1, 1, 2)])
    sources = ["train"] * 4
    rows = CountingRows(d)
    df = consistency_events(events, rows, sources)
    assert sorted(rows.calls) == [0, 1, 2, 3]  # each epoch read once
    assert df["after_epoch"].tolist() == [2, 3, 3, pd.NA]
    assert df["d_new_after"].tolist()[:2] == [2.0, 1.5]
    assert df["closer_to_new"].tolist() == [True, True, pd.NA, pd.NA]
    assert df["gap_change"].tolist()[:2] == [(2 - 4) - (3 - 1), (1.5 - 2.5) - (1.2 - 3.0)]
    assert df["undone"].tolist() == [True, False, False, False]
    assert df["before_pass"].tolist() == ["train"] * 4 and df["after_pass"].tolist()[:3] == ["train"] * 3
    assert_matches(df, reference(events, d, sources))
    s = consistency_summary(df)
    assert s["events"] == 4 and s["evaluated"] == 2 and s["closer_to_new"] == 1.0 and s["undone"] == 1
    assert s["undone_fraction"] == 0.25 and s["control"] == 0 and math.isnan(s["closer_vs_control"])
    assert_summary(s, reference_summary(reference(events, d, sources)))


def test_empty_and_too_late() -> None:
    rows = CountingRows(np.ones((2, 3, 3)))
    df = consistency_events(make_events([]), rows, ["train"] * 2)
    assert list(df.columns) == COLUMNS and len(df) == 0 and rows.calls == []
    s = consistency_summary(df)
    assert s["events"] == 0 and s["evaluated"] == 0 and s["undone"] == 0
    assert math.isnan(s["closer_to_new"]) and math.isnan(s["mean_gap_change"]) and math.isnan(s["undone_fraction"])
    assert_summary(consistency_summary(pd.DataFrame(columns=COLUMNS)), reference_summary([]))

    d = np.arange(3 * 3 * 3, dtype=float).reshape(3, 3, 3)
    events = make_events([(1, 0, 2, 0, 1)])  # epoch 1 of 3 training-pass epochs: epoch 3 would be "after"
    rows = CountingRows(d)
    df = consistency_events(events, rows, ["train"] * 3)
    assert rows.calls == [1]
    assert df["closer_to_new"].isna().all() and np.isnan(df["d_old_after"]).all() and df["after_epoch"].isna().all()
    s = consistency_summary(df)
    assert s["events"] == 1 and s["evaluated"] == 0 and math.isnan(s["closer_to_new"])


def random_log(seed: int, n: int = 30, epochs: int = 6, k: int = 4):
    rng = np.random.default_rng(seed)
    cur = rng.integers(0, k, n)
    rows_ = []
    for e in range(epochs):
        for s in range(n):
            if rng.random() < 0.3:
                new = int((cur[s] + rng.integers(1, k)) % k)
                rows_.append((e, e * 10 + int(rng.integers(0, 5)), s, int(cur[s]), new))
                cur[s] = new
    rows_.sort(key=lambda r: (r[0], r[1]))
    d = rng.random((epochs, n, k)) * 10
    d[rng.random((epochs, n, k)) < 0.03] = np.nan
    sources = [str(x) for x in rng.choice(["train", "probe"], epochs)]
    return make_events(rows_), d, sources


@pytest.mark.parametrize("seed", range(4))
def test_random_against_loops(seed: int) -> None:
    events, d, sources = random_log(seed)
    counting = CountingRows(d)
    df = consistency_events(events, counting, sources)
    assert len(counting.calls) == len(set(counting.calls))
    ref = reference(events, d, sources)
    assert_matches(df, ref)
    assert_summary(consistency_summary(df), reference_summary(ref))


# ---------------------------------------------------------------------- the control group
def test_matched_difference_weights_strata_by_the_events() -> None:
    # stratum 0: 2 events both closer (1.0), controls 1 of 2 (0.5); stratum 1: 1 event (0.0),
    # controls 0 of 2 (0.0); stratum 2 has no control and is left out
    control, count, diff = matched(np.array([0, 0, 1, 2]), np.array([1.0, 1.0, 0.0, 1.0]),
                                   np.array([0, 0, 1, 1]), np.array([1.0, 0.0, 0.0, 0.0]))
    assert control == pytest.approx((2 * 0.5 + 1 * 0.0) / 3) and count == 3
    assert diff == pytest.approx((2 * 1.0 + 1 * 0.0) / 3 - control)
    # undefined values (NaN) are left out; no shared stratum: NaN
    assert matched(np.array([0, 1]), np.array([np.nan, 1.0]), np.array([0]), np.array([1.0]))[1] == 0
    assert math.isnan(matched(np.array([0]), np.array([1.0]), np.array([1]), np.array([0.0]))[2])


def test_a_control_like_the_relabelled_gives_no_difference() -> None:
    """Relabelled samples and controls of the same class pairs behaving alike (in any mix
    of pairs): the compared figure is 0 even where the raw fractions differ."""
    rng = np.random.default_rng(0)
    rate = {0: 0.9, 1: 0.2}  # fraction closer to new per stratum, for both groups
    rel_s = np.r_[np.zeros(900, int), np.ones(100, int)]  # mostly stratum 0
    ctrl_s = np.r_[np.zeros(100, int), np.ones(900, int)]  # mostly stratum 1
    rel_c = np.r_[np.ones(810), np.zeros(90), np.ones(20), np.zeros(80)]
    ctrl_c = np.r_[np.ones(90), np.zeros(10), np.ones(180), np.zeros(720)]
    rng.shuffle(rel_c[:900]), rng.shuffle(ctrl_c[100:])
    control, count, diff = matched(rel_s, rel_c, ctrl_s, ctrl_c)
    assert rel_c.mean() - ctrl_c.mean() > 0.5  # unmatched, relabelling would look like a big effect
    assert control == pytest.approx(0.9 * rate[0] + 0.1 * rate[1]) and count == 1000
    assert diff == pytest.approx(0.0, abs=1e-12)


def test_control_candidates_from_hand_made_probabilities() -> None:
    """3 samples, 2 epochs, threshold 0.3, band 0.1: margins just below the threshold are controls."""
    labels = np.array([[0, 0, 1], [0, 0, 1]])
    probs = np.array([[[0.39, 0.61], [0.30, 0.70], [0.62, 0.38]],    # margins 0.22 (control), 0.4 (above), 0.24 (control)
                      [[0.36, 0.64], [0.50, 0.50], [0.10, 0.90]]])   # 0.28 (control), 0 (none), label is argmax
    events = make_events([(1, 0, 0, 0, 1)])  # sample 0 relabelled in epoch 1: no control there
    d = np.ones((4, 3, 2))
    table = consistency_control(events, lambda e: labels[e], lambda e: probs[e], np.ones(3, bool), [0, 1],
                                lambda e: d[e], ["train"] * 4, threshold=0.3, band=0.1)
    assert list(table.columns) == CONTROL_COLUMNS
    assert table[["epoch", "sample_id", "old", "new"]].to_numpy().tolist() == [[0, 0, 0, 1], [0, 2, 1, 0]]
    assert table["margin"].to_numpy() == pytest.approx([0.22, 0.24])
    assert table["after_epoch"].tolist() == [2, 2]
    with pytest.raises(ValueError, match="band"):
        consistency_control(events, lambda e: labels[e], lambda e: probs[e], np.ones(3, bool), [0], lambda e: d[e],
                            ["train"] * 4, threshold=0.3, band=-1)


def test_relabelled_minus_control_separates_the_artefact_from_the_effect() -> None:
    """The property the figure exists for. Two worlds over the same events and controls:
    in one every followed sample (relabelled or not) drifts to its argmax class by lag 2:
    regression to the mean, no effect of relabelling; in the other only the relabelled ones
    move. closer_vs_control is ~0 in the first and large in the second."""
    k, n, epochs = 3, 200, 5
    rng = np.random.default_rng(1)
    relabelled = np.arange(0, 100)
    controls = np.arange(100, 200)
    events = make_events([(1, i, int(s), 0, 1) for i, s in enumerate(relabelled)])
    control = pd.DataFrame({"epoch": np.ones(100, np.int64), "sample_id": controls, "old": np.zeros(100, np.int64),
                            "new": np.ones(100, np.int64)})
    sources = ["train"] * epochs
    for drift_all, want in ((True, 0.0), (False, 1.0)):
        d = np.full((epochs, n, k), 5.0)
        d[:, :, 0] = 1.0  # near the old class...
        movers = np.arange(n) if drift_all else relabelled
        d[3:, movers, 1] = 0.5  # ...until the epoch after the first update under new
        d += rng.random(d.shape) * 1e-3
        lag = consistency_by_lag(events, control, lambda e: d[e], sources, num_classes=k)
        assert list(lag.columns) == LAG_COLUMNS
        after = lag[lag["lag"] == FIRST_TRAINED_LAG["train"]].iloc[0]
        assert after["closer_to_new"] == 1.0 and after["trained_on_new"]
        assert after["closer_vs_control"] == pytest.approx(want)
        # lag 1 (the old "after"): nothing has trained on new yet, nobody moved
        assert lag.loc[lag["lag"] == 1, "closer_to_new"].item() == 0.0


# ---------------------------------------------------------------------- the lag view
@pytest.mark.parametrize("seed", range(3))
def test_lag_table_against_loops(seed: int) -> None:
    events, d, sources = random_log(seed, epochs=7)
    rng = np.random.default_rng(seed + 10)
    m = 40
    control = pd.DataFrame({"epoch": rng.integers(0, 7, m), "sample_id": rng.integers(0, 30, m),
                            "old": rng.integers(0, 2, m), "new": rng.integers(2, 4, m)})
    counting = CountingRows(d)
    lag = consistency_by_lag(events, control, counting, sources, num_classes=4, max_lag=3)
    assert len(counting.calls) == len(set(counting.calls))  # each epoch read once

    def closer(e, s, old, new, k):
        a = e + k
        if a >= len(sources) or sources[a] != sources[e]:
            return None
        dn, do = d[a, s, new], d[a, s, old]
        return None if (np.isnan(dn) or np.isnan(do)) else float(dn < do)

    evs = events.tolist()
    for row in lag.to_dict("records"):
        k, kind = row["lag"], row["pass"]
        assert row["trained_on_new"] == (k >= FIRST_TRAINED_LAG[kind])
        rel = [(old * 4 + new, c) for (e, _, s, old, new, _, _) in evs if sources[e] == kind
               if (c := closer(e, s, old, new, k)) is not None]
        ctrl = [(r.old * 4 + r.new, c) for r in control.itertuples() if sources[r.epoch] == kind
                if (c := closer(r.epoch, r.sample_id, r.old, r.new, k)) is not None]
        assert row["events"] == len(rel) and row["control"] == len(ctrl)
        if rel:
            assert row["closer_to_new"] == pytest.approx(np.mean([c for _, c in rel]))
        shared = {s for s, _ in rel} & {s for s, _ in ctrl}
        assert row["matched_events"] == sum(s in shared for s, _ in rel)
        if shared:
            w = {s: sum(x == s for x, _ in rel) for s in shared}
            ctrl_frac = {s: np.mean([c for x, c in ctrl if x == s]) for s in shared}
            rel_frac = {s: np.mean([c for x, c in rel if x == s]) for s in shared}
            total = sum(w.values())
            want_ctrl = sum(w[s] * ctrl_frac[s] for s in shared) / total
            assert row["control_closer"] == pytest.approx(want_ctrl)
            assert row["closer_vs_control"] == pytest.approx(sum(w[s] * rel_frac[s] for s in shared) / total - want_ctrl)


# ---------------------------------------------------------------------- real runs
def _log_arrays(path):
    with h5py.File(path / "run.h5", "r") as f:
        n_epochs = f["epochs/done"].shape[0]
        return {
            "d": f["epochs/distance"][:n_epochs], "events": f["relabels"][:],
            "source": f["epochs/embed_source"][:n_epochs], "label": f["epochs/label"][:n_epochs],
            "prob": f["epochs/prob"][:n_epochs].astype(np.float64), "split": f["samples/split"][:],
        }


@pytest.mark.parametrize("method", ["scn", "scn-c", "baseline"])
def test_tiny_runs_against_h5py(tiny_runs, method: str) -> None:
    """Training-pass embeddings: every evaluated event's after_epoch is epoch + 2 and its
    distances are that epoch's logged distances."""
    a = _log_arrays(tiny_runs[method])
    n_epochs = len(a["d"])
    assert (a["source"] == 0).all()
    sources = ["train"] * n_epochs
    counting = CountingRows(a["d"])
    df = consistency_events(a["events"], counting, sources)
    assert len(counting.calls) == len(set(counting.calls)) <= n_epochs
    assert_matches(df, reference(a["events"], a["d"], sources))
    evaluated = df[df["closer_to_new"].notna()]
    assert (evaluated["after_epoch"] == evaluated["epoch"] + 2).all()
    rows = evaluated.to_dict("records")
    assert all(r["d_new_after"] == a["d"][r["epoch"] + 2, r["sample_id"], r["new"]] for r in rows)
    assert all(r["d_old_after"] == a["d"][r["epoch"] + 2, r["sample_id"], r["old"]] for r in rows)
    if method != "baseline":
        assert len(evaluated) > 0


@pytest.fixture(scope="module")
def probed_scn(tmp_path_factory) -> Run:
    """A tiny SCN run with an eval-mode probe pass after every epoch."""
    from relabscope.training.runner import train

    out = tmp_path_factory.mktemp("probed-scn") / "scn"
    train({**TINY, "method": "scn", "out": str(out), "probe_every": 1, "epochs": 4}, progress=False,
          log=lambda line: None)
    with Run(out) as run:
        yield run


def test_probe_pass_after_is_the_next_epoch(probed_scn: Run) -> None:
    assert probed_scn.embedding_sources() == ["probe"] * 4
    df = probed_scn.consistency_events()
    d = probed_scn.distances(None)
    evaluated = df[df["closer_to_new"].notna()]
    assert len(evaluated) > 0, "the eager tiny SCN run relabels in its first epochs"
    assert (evaluated["after_epoch"] == evaluated["epoch"] + 1).all()
    assert (evaluated["after_pass"] == "probe").all() and (evaluated["before_pass"] == "probe").all()
    for r in evaluated.to_dict("records"):
        assert r["d_new_after"] == d[r["epoch"] + 1, r["sample_id"], r["new"]]
    assert df.loc[df["epoch"] == 3, "after_epoch"].isna().all()  # the last epoch has no after
    lag = probed_scn.consistency_by_lag()
    assert lag.loc[lag["lag"] == 1, "trained_on_new"].item()


@pytest.mark.parametrize("method", ["scn", "scn-c"])
def test_control_group_recounted_from_the_log(tiny_runs, method: str) -> None:
    """Every control, and nothing else, recounted with plain loops over the log's arrays."""
    a = _log_arrays(tiny_runs[method])
    delta, band = TINY["delta"], 0.04
    relabelled = {(int(e), int(s)) for e, s in zip(a["events"]["epoch"], a["events"]["sample"])}
    want = []
    for e in range(TINY["relabel_epoch"] - 1, len(a["d"])):
        for s in np.flatnonzero(a["split"] == 0):
            if (e, int(s)) in relabelled:
                continue
            p, y = a["prob"][e, s], int(a["label"][e, s])
            margin = p.max() - p[y]
            if int(p.argmax()) != y and 0 < margin <= delta and margin >= delta - band:
                want.append((e, int(s), y, int(p.argmax())))
    with Run(tiny_runs[method]) as run:
        control = run.consistency_control(band=band)
        got = [tuple(int(v) for v in r) for r in control[["epoch", "sample_id", "old", "new"]].to_numpy()]
        assert got == want and len(want) > 0
        assert (control["margin"] <= delta).all() and (control["margin"] >= delta - band).all()
        summary = run.consistency(band=band)
        assert summary["control"] == control["closer_to_new"].notna().sum()
        events = run.consistency_events()
        # the compared figure recomputed from both tables
        control_closer, count, diff = matched(
            (events["old"] * 7 + events["new"]).to_numpy(),
            events["closer_to_new"].astype("Float64").to_numpy(np.float64, na_value=np.nan),
            (control["old"] * 7 + control["new"]).to_numpy(),
            control["closer_to_new"].astype("Float64").to_numpy(np.float64, na_value=np.nan))
        assert summary["matched_events"] == count
        if count:
            assert summary["closer_vs_control"] == pytest.approx(diff)
            assert summary["control_closer"] == pytest.approx(control_closer)
        # lag 2 of the training pass is the summary's "after"
        lag = run.consistency_by_lag(band=band).set_index("lag")
        assert lag.loc[2, "events"] == summary["evaluated"]
        if summary["evaluated"]:
            assert lag.loc[2, "closer_to_new"] == pytest.approx(summary["closer_to_new"])
