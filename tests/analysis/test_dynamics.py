"""Training dynamics (forgetting, AUM, data maps), noise detection and noise recovery against
explicit per-sample, per-epoch loops: on hand-made arrays with unseen entries and on the
real tiny runs read with h5py."""

from __future__ import annotations

import math
import statistics

import h5py
import numpy as np
import pandas as pd
import pytest

from relabscope.analysis.dynamics import (area_under_margin, data_map, dynamics_table, forgetting_events,
                                          noise_detection, noise_recovery)
from relabscope.analysis.flipflops import final_labels, flipflop_table
from relabscope.runlog.schema import RELABEL_DTYPE

FLOOR = 2.0 ** -24


# ---------------------------------------------------------------------- references
def ref_forgetting(correct, seen=None):
    epochs, n = correct.shape
    out = []
    for i in range(n):
        prev, count, ever = None, 0, False
        for e in range(epochs):
            if seen is not None and not seen[e, i]:
                continue
            c = bool(correct[e, i])
            if prev is True and not c:
                count += 1
            prev = c
            ever = ever or c
        out.append(count if ever else epochs)
    return out


def label_at(labels, e, i):
    labels = np.asarray(labels)
    return int(labels[i]) if labels.ndim == 1 else int(labels[e, i])


def ref_aum(probs, labels):
    epochs, n, k = probs.shape
    out = []
    for i in range(n):
        margins = []
        for e in range(epochs):
            y = label_at(labels, e, i)
            p = [float(v) for v in probs[e, i]]
            if y < 0 or any(math.isnan(v) for v in p):
                continue
            logits = [math.log(max(v, FLOOR)) for v in p]  # log-probabilities: logits up to a shift
            margins.append(logits[y] - max(logits[j] for j in range(k) if j != y))
        out.append(sum(margins) / len(margins) if margins else math.nan)
    return out


def ref_data_map(probs, labels):
    epochs, n, _ = probs.shape
    conf, var = [], []
    for i in range(n):
        values = []
        for e in range(epochs):
            y = label_at(labels, e, i)
            if y >= 0 and not math.isnan(float(probs[e, i, 0])):
                values.append(float(probs[e, i, y]))
        conf.append(statistics.fmean(values) if values else math.nan)
        var.append(statistics.pstdev(values) if values else math.nan)
    return conf, var


def ref_auroc(score, noisy):
    pos = [s for s, y in zip(score, noisy) if y and not math.isnan(s)]
    neg = [s for s, y in zip(score, noisy) if not y and not math.isnan(s)]
    if not pos or not neg:
        return math.nan
    wins = sum(1.0 if p > q else 0.5 if p == q else 0.0 for p in pos for q in neg)
    return wins / (len(pos) * len(neg))


def ref_recovery(labels, final, events, given, clean, mask):
    ids = [i for i in range(len(mask)) if mask[i]]
    col = {sid: j for j, sid in enumerate(ids)}
    epochs = labels.shape[0]
    noisy = [clean[i] >= 0 and given[i] != clean[i] for i in ids]
    is_clean = [clean[i] >= 0 and given[i] == clean[i] for i in ids]
    evs = [ev for ev in events.tolist() if ev[2] in col]
    rows = []
    fixed = set()
    for e in range(epochs):
        mine = [ev for ev in evs if ev[0] == e]
        known = [ev for ev in mine if clean[ev[2]] >= 0]
        hits = [ev for ev in known if ev[4] == clean[ev[2]]]
        for ev in hits:
            if noisy[col[ev[2]]]:
                fixed.add(ev[2])
        after = labels[e + 1] if e + 1 < epochs else final
        nn = [j for j in range(len(ids)) if noisy[j] and after[j] >= 0]
        cc = [j for j in range(len(ids)) if is_clean[j] and after[j] >= 0]
        rows.append({
            "epoch": e, "relabels": len(mine),
            "relabel_precision": len(hits) / len(known) if known else math.nan,
            "relabel_recall": len(fixed) / sum(noisy) if sum(noisy) else math.nan,
            "noisy_corrected": sum(after[j] == clean[ids[j]] for j in nn) / len(nn) if nn else math.nan,
            "clean_corrupted": sum(after[j] != clean[ids[j]] for j in cc) / len(cc) if cc else math.nan,
        })
    return rows


def close(got, want, **tol) -> None:
    got = np.asarray(got, dtype=float)
    want = np.asarray(want, dtype=float)
    np.testing.assert_allclose(got, want, equal_nan=True, **(tol or {"rtol": 1e-5, "atol": 1e-5}))


# ---------------------------------------------------------------------- hand-made
def hand_arrays():
    """3 epochs, 4 samples, 3 classes. Sample 2 is unseen in epoch 1, sample 3 never seen."""
    probs = np.array([
        [[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4], [np.nan] * 3],
        [[0.2, 0.7, 0.1], [1.0, 0.0, 0.0], [np.nan] * 3, [np.nan] * 3],
        [[0.6, 0.3, 0.1], [0.2, 0.2, 0.6], [0.5, 0.25, 0.25], [np.nan] * 3],
    ], dtype=np.float16)
    preds = np.where(np.isnan(probs[..., 0]), -1, np.nan_to_num(probs.astype(np.float32), nan=-1).argmax(-1))
    effect = np.array([[0, 1, 2, -1], [0, 1, -1, -1], [1, 1, 0, -1]])
    given = np.array([0, 1, 2, 0])
    return probs, preds, effect, given


def test_forgetting_hand_made() -> None:
    correct = np.array([
        [1, 0, 1, 0, 1],
        [0, 0, 1, 1, 1],
        [1, 0, 0, 0, 1],
        [0, 0, 1, 1, 1],
    ], dtype=bool)
    assert forgetting_events(correct).tolist() == [2, 4, 1, 1, 0]  # sample 1 never learned: E = 4
    seen = np.ones_like(correct)
    seen[1, 0] = False  # skip epoch 1 for sample 0: 1 -> (skip) -> 1 -> 0 is one forgetting event
    assert forgetting_events(correct, seen=seen).tolist() == [1, 4, 1, 1, 0]
    assert forgetting_events(correct, seen=seen).tolist() == ref_forgetting(correct, seen)
    assert forgetting_events(np.zeros((0, 3), bool)).tolist() == [0, 0, 0]


def test_aum_and_data_map_hand_made() -> None:
    probs, preds, effect, given = hand_arrays()
    aum = area_under_margin(probs, given)
    # sample 1, label 1: margins log(.8/.1), log(2**-24 / 1.0) (clamped), log(.2/.6)
    want1 = (math.log(0.8 / 0.1) + math.log(FLOOR) + math.log(0.2 / 0.6)) / 3
    assert aum[1] == pytest.approx(want1, abs=2e-3)  # float16 probabilities
    assert math.isnan(aum[3])
    close(aum, ref_aum(probs, given))
    close(area_under_margin(probs, effect), ref_aum(probs, effect))
    conf, var = data_map(probs, effect)
    want_conf, want_var = ref_data_map(probs, effect)
    close(conf, want_conf)
    close(var, want_var)
    assert math.isnan(conf[3]) and math.isnan(var[3])
    # clipping: margins stay within log(2**24)
    extreme = np.array([[[1.0, 0.0]]], np.float16)
    assert area_under_margin(extreme, np.array([0]))[0] == pytest.approx(-math.log(FLOOR))
    assert area_under_margin(extreme, np.array([1]))[0] == pytest.approx(math.log(FLOOR))


def test_dynamics_table_hand_made() -> None:
    probs, preds, effect, given = hand_arrays()
    df = dynamics_table(probs=probs, preds=preds, effect=effect, given=given, sample_ids=np.array([0, 1, 2, 3]))
    assert list(df.columns) == ["sample_id", "forgetting_given", "forgetting_effect", "aum_given", "aum_effect",
                                "confidence_given", "variability_given", "confidence_effect", "variability_effect"]
    seen = preds >= 0
    assert df["forgetting_given"].tolist() == ref_forgetting(preds == given[None], seen)
    assert df["forgetting_effect"].tolist() == ref_forgetting(preds == effect, seen & (effect >= 0))
    assert df["forgetting_given"].tolist()[3] == 3  # never seen: never learned
    close(df["aum_given"], ref_aum(probs, given))
    close(df["aum_effect"], ref_aum(probs, effect))
    cg, vg = ref_data_map(probs, given)
    ce, ve = ref_data_map(probs, effect)
    close(df["confidence_given"], cg)
    close(df["variability_given"], vg)
    close(df["confidence_effect"], ce)
    close(df["variability_effect"], ve)


def test_noise_detection_hand_made() -> None:
    dyn = pd.DataFrame({
        "sample_id": [0, 1, 2, 3, 4],
        "aum_given": [3.0, 2.0, -1.0, -2.0, np.nan],
        "confidence_given": [0.9, 0.8, 0.3, 0.2, np.nan],
        "variability_given": [0.1, 0.1, 0.3, 0.2, np.nan],
        "forgetting_given": [0, 1, 1, 4, 4],
    })
    flips = pd.DataFrame({"sample_id": [0, 1, 2, 3, 4], "changes": [0, 0, 2, 1, 0], "flipflops": [0, 0, 1, 0, 0]})
    noisy = np.array([False, False, True, True, False])
    df = noise_detection(dyn, flips, noisy)
    assert df["score"].tolist() == ["aum_given", "confidence_given", "variability_given", "forgetting_given",
                                    "relabelled", "changes", "flipflops"]
    assert {"score", "auroc", "direction"} <= set(df.columns)
    assert df.set_index("score").loc["aum_given", "auroc"] == 1.0  # NaN row left out
    assert df.set_index("score").loc["aum_given", "direction"] == "low"
    assert df.set_index("score").loc["flipflops", "direction"] == "high"
    scores = {
        "aum_given": -dyn["aum_given"], "confidence_given": -dyn["confidence_given"],
        "variability_given": dyn["variability_given"], "forgetting_given": dyn["forgetting_given"],
        "relabelled": (flips["changes"] > 0).astype(float), "changes": flips["changes"], "flipflops": flips["flipflops"],
    }
    for name, score in scores.items():
        got = df.set_index("score").loc[name, "auroc"]
        assert got == pytest.approx(ref_auroc(score.astype(float).tolist(), noisy.tolist())), name
    one_class = noise_detection(dyn, flips, np.zeros(5, bool))
    assert one_class["auroc"].isna().all()


def test_noise_recovery_hand_made() -> None:
    # 4 train samples + 1 test sample; samples 0, 1 noisy, 2 clean, 3 clean label unknown
    given = np.array([0, 1, 2, 0, 1])
    clean = np.array([1, 2, 2, -1, 1])
    mask = np.array([True, True, True, True, False])
    ev = np.zeros(4, RELABEL_DTYPE)
    for i, (epoch, sample, old, new) in enumerate([(0, 0, 0, 1), (0, 2, 2, 0), (1, 2, 0, 2), (2, 1, 1, 2)]):
        ev[i] = (epoch, i, sample, old, new, 0.4, 0.5)
    labels = np.array([[0, 1, 2, 0], [1, 1, 0, 0], [1, 1, 2, -1]])
    final = final_labels(labels[-1], ev, last_epoch=2)
    df = noise_recovery(labels, final, ev, given, clean, mask)
    assert list(df.columns) == ["epoch", "relabels", "relabel_precision", "relabel_recall", "noisy_corrected",
                                "clean_corrupted"]
    assert df["relabels"].tolist() == [2, 1, 1]
    assert df["relabel_precision"].tolist() == [0.5, 1.0, 1.0]
    assert df["relabel_recall"].tolist() == [0.5, 0.5, 1.0]
    assert df["noisy_corrected"].tolist() == [0.5, 0.5, 1.0]
    assert df["clean_corrupted"].tolist() == [1.0, 0.0, 0.0]
    ref = pd.DataFrame(ref_recovery(labels, final, ev, given, clean, mask))
    pd.testing.assert_frame_equal(df, ref, check_dtype=False)
    empty = noise_recovery(np.zeros((0, 4), int), given[:4], ev[:0], given, clean, mask)
    assert len(empty) == 0 and list(empty.columns) == list(df.columns)


# ---------------------------------------------------------------------- real runs
def read(path):
    with h5py.File(path / "run.h5", "r") as f:
        n = f["epochs/done"].shape[0]
        train = f["samples/split"][:] == 0
        return {
            "probs": f["epochs/prob"][:n], "preds": f["epochs/pred"][:n].astype(np.int64),
            "labels": f["epochs/label"][:n].astype(np.int64), "events": f["relabels"][:],
            "given": f["samples/given_label"][:].astype(np.int64),
            "clean": f["samples/clean_label"][:].astype(np.int64), "train": train,
            "names": [s.decode() if isinstance(s, bytes) else s for s in f["meta/class_names"][:]],
        }


@pytest.mark.parametrize("method", ["scn", "baseline"])
def test_tiny_runs_against_h5py(tiny_runs, method: str) -> None:
    r = read(tiny_runs[method])
    m = r["train"]
    probs, preds, effect, given = r["probs"][:, m], r["preds"][:, m], r["labels"][:, m], r["given"][m]
    df = dynamics_table(probs=probs, preds=preds, effect=effect, given=given, sample_ids=np.flatnonzero(m))
    assert df["sample_id"].tolist() == np.flatnonzero(m).tolist()
    seen = preds >= 0
    assert df["forgetting_given"].tolist() == ref_forgetting(preds == given[None], seen)
    assert df["forgetting_effect"].tolist() == ref_forgetting(preds == effect, seen & (effect >= 0))
    close(df["aum_given"], ref_aum(probs, given))
    close(df["aum_effect"], ref_aum(probs, effect))
    for which, lab in (("given", given), ("effect", effect)):
        conf, var = ref_data_map(probs, lab)
        close(df[f"confidence_{which}"], conf)
        close(df[f"variability_{which}"], var)
    if method == "baseline":  # nothing relabels: the label in effect is the given label
        pd.testing.assert_series_equal(df["aum_given"], df["aum_effect"], check_names=False)

    flips = flipflop_table(labels=effect, events=r["events"], given=given, clean=r["clean"][m],
                           sample_ids=np.flatnonzero(m), class_names=r["names"])
    noisy = given != r["clean"][m]
    assert 0 < noisy.sum() < len(noisy)
    det = noise_detection(df, flips, noisy).set_index("score")
    assert det.loc["aum_given", "auroc"] == pytest.approx(ref_auroc((-df["aum_given"]).tolist(), noisy.tolist()))
    assert det.loc["flipflops", "auroc"] == pytest.approx(ref_auroc(flips["flipflops"].astype(float).tolist(), noisy.tolist()))
    assert det.loc["relabelled", "auroc"] == pytest.approx(
        ref_auroc((flips["changes"] > 0).astype(float).tolist(), noisy.tolist()))

    final = final_labels(r["labels"][-1], r["events"], last_epoch=r["labels"].shape[0] - 1)
    rec = noise_recovery(effect, final[m], r["events"], r["given"], r["clean"], m)
    ref = pd.DataFrame(ref_recovery(effect, final[m], r["events"], r["given"], r["clean"], m))
    pd.testing.assert_frame_equal(rec, ref, check_dtype=False)
    if method == "baseline":
        assert (rec["relabels"] == 0).all() and (rec["clean_corrupted"] == 0).all()


def test_noise_detection_leaves_out_unknown_clean_labels() -> None:
    """A sample whose clean label is unknown (NA) is neither noisy nor clean: not scored."""
    dyn = pd.DataFrame({"sample_id": [0, 1, 2, 3], "aum_given": [3.0, -1.0, 2.0, -3.0],
                        "confidence_given": [0.9, 0.3, 0.8, 0.1], "variability_given": [0.1, 0.3, 0.1, 0.2],
                        "forgetting_given": [0, 2, 0, 3]})
    flips = pd.DataFrame({"sample_id": [0, 1, 2, 3], "changes": [0, 1, 0, 2], "flipflops": [0, 0, 0, 1]})
    noisy = pd.array([False, True, False, pd.NA], dtype="boolean")
    df = noise_detection(dyn, flips, noisy).set_index("score")
    assert (df["n"] == 3).all()
    assert df.loc["aum_given", "auroc"] == pytest.approx(ref_auroc([-3.0, 1.0, -2.0], [False, True, False]))
