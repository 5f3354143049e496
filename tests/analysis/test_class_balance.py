"""Class balance under relabelling: counts per epoch, warnings, the given -> final flow,
on hand-made arrays and on the log in which relabelling empties a class."""

from __future__ import annotations

import warnings

import h5py
import numpy as np
import pandas as pd
import pytest

import relabscope as rs
from relabscope.analysis.class_balance import class_counts, class_warnings, label_flow
from relabscope.examples import EXAMPLE

NAMES = ["a", "b", "c"]


def _counts(labels, final, given, clean=None):
    return class_counts(np.asarray(labels), np.asarray(final), np.asarray(given),
                        None if clean is None else np.asarray(clean), NAMES)


def test_counts_are_the_labels_in_effect_per_epoch_then_the_final_ones() -> None:
    given = np.array([0, 0, 1, 1, 2, 2])
    labels = np.array([[0, 0, 1, 1, 2, 2], [0, 0, 1, 0, 2, -1]])  # -1: not seen in epoch 1
    final = np.array([0, 0, 0, 0, 2, 2])
    t = _counts(labels, final, given, clean=np.array([0, 1, 1, 1, 2, 2]))
    wide = t.pivot(index="epoch", columns="class_name", values="count")
    assert wide.loc[0].tolist() == [2, 2, 2]
    assert wide.loc[1].tolist() == [3, 1, 1]  # the unseen sample is not counted
    assert wide.loc[2].tolist() == [4, 0, 2]  # epoch E: after the last epoch's relabels
    assert (t["given"] == 2).all()
    assert t.set_index(["epoch", "class_name"]).loc[(0, "b"), "clean"] == 3
    assert t.set_index(["epoch", "class_name"]).loc[(2, "b"), "fraction_of_given"] == 0


def test_clean_counts_are_nan_when_unknown() -> None:
    t = _counts([[0, 1]], [0, 1], [0, 1], clean=[-1, -1])
    assert t["clean"].isna().all()
    assert _counts([[0, 1]], [0, 1], [0, 1])["clean"].isna().all()


def test_a_class_given_no_samples_has_no_fraction_and_no_warning() -> None:
    t = _counts([[0, 1]], [0, 0], [0, 1])
    assert t[t["class_name"] == "c"]["fraction_of_given"].isna().all()
    assert class_warnings(t)["class_name"].tolist() == ["b"]


def test_warnings_name_the_class_the_epoch_of_the_relabels_and_the_counts() -> None:
    given = np.repeat([0, 1, 2], 4)
    e0 = given.copy()
    e1 = given.copy()
    e1[[4, 5, 6]] = 0       # in epoch 0, three of b's four go to a: below half from epoch 1
    e2 = e1.copy()
    e2[[8, 9, 10, 11]] = 0  # in epoch 1, all of c goes: emptied
    final = e2.copy()
    final[[4, 5, 6]] = 1    # b recovers in the last epoch
    w = class_warnings(_counts([e0, e1, e2], final, given)).set_index("class_name")
    assert list(w.index) == ["b", "c"]
    assert w.loc["b", "kind"] == "shrunk" and w.loc["b", "below_epoch"] == 0 and w.loc["b", "lowest"] == 1
    assert w.loc["b", "final"] == 4 and w.loc["b", "emptied_epoch"] == -1
    assert w.loc["c", "kind"] == "emptied" and w.loc["c", "emptied_epoch"] == 1 and w.loc["c", "final"] == 0
    assert "'c' was emptied by relabelling in epoch 1: 4 given, 0 after the last epoch" in w.loc["c", "message"]
    assert "'b' shrank below 50%" in w.loc["b", "message"] and "as few as 1" in w.loc["b", "message"]


def test_the_threshold_is_a_share_of_the_given_size() -> None:
    given = np.repeat([0, 1], 10)
    labels = given.copy()
    labels[:4] = 1  # a keeps 6 of 10
    t = _counts([given, labels], labels, given)
    assert class_warnings(t).empty
    assert class_warnings(t, threshold=0.7)["class_name"].tolist() == ["a"]
    assert list(class_warnings(t).columns) == list(class_warnings(t, threshold=0.7).columns)


def test_label_flow_rows_are_given_sizes_and_columns_final_sizes() -> None:
    rng = np.random.default_rng(0)
    given, final = rng.integers(0, 3, 200), rng.integers(0, 3, 200)
    final[:5] = -1  # unseen samples are left out
    flow = label_flow(given, final, NAMES)
    ok = final >= 0
    assert flow.to_numpy().sum(axis=1).tolist() == np.bincount(given[ok], minlength=3).tolist()
    assert flow.to_numpy().sum(axis=0).tolist() == np.bincount(final[ok], minlength=3).tolist()
    assert flow.loc["a", "b"] == int(((given == 0) & (final == 1)).sum())


# ---------------------------------------------------------------------- the emptied log
def test_emptied_log_counts_agree_with_the_writers_class_counts(emptied_run) -> None:
    run = rs.open_run(emptied_run)
    t = run.class_counts()
    wide = t.pivot(index="epoch", columns="class_id", values="count").to_numpy()
    with h5py.File(emptied_run / "run.h5", "r") as f:
        logged = f["epochs/class_count"][:]  # every training sample has an embedding every epoch
    np.testing.assert_array_equal(wide[:-1], logged)
    assert wide.sum(axis=1).tolist() == [len(EXAMPLE["class_names"]) * EXAMPLE["per_class"]] * (run.num_epochs + 1)
    assert run.classes_without_mean(0) == [] and run.classes_without_mean(-1) == ["anger"]


def test_emptied_log_warns_about_both_classes(emptied_run) -> None:
    w = rs.open_run(emptied_run).class_warnings().set_index("class_name")
    assert w.loc["anger", "kind"] == "emptied" and w.loc["anger", "emptied_epoch"] == EXAMPLE["emptied_epoch"]
    assert w.loc["sadness", "kind"] == "shrunk" and w.loc["sadness", "final"] == EXAMPLE["shrunk_to"]


def test_comparison_summary_counts_and_warns(emptied_pair) -> None:
    comp = rs.compare(*emptied_pair)
    with pytest.warns(rs.ClassBalanceWarning) as record:
        summary = comp.summary()
    messages = [str(w.message) for w in record]
    assert len(messages) == 4 and "emptied: class 'anger' was emptied by relabelling in epoch 1" in messages[1]
    assert summary.loc["classes_emptied"].iloc[:2].tolist() == [1.0, 1.0]
    assert summary.loc["classes_below_half"].iloc[:2].tolist() == [1.0, 1.0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pd.testing.assert_frame_equal(comp.summary(warn=False), summary)
    counts = comp.class_counts()
    assert counts.loc["anger", ["given_a", "final_a", "lowest_b"]].tolist() == [16, 0, 0]


def test_balanced_runs_warn_about_nothing(tiny_runs) -> None:
    run = rs.open_run(tiny_runs["baseline"])  # never relabels
    assert run.class_warnings().empty
    t = run.class_counts()
    assert (t["count"] == t["given"]).all()
    flow = run.label_flow()
    assert (flow.to_numpy() == np.diag(np.diag(flow.to_numpy()))).all()


def test_the_end_of_run_summary_warns_about_each_class(emptied_run, tiny_runs) -> None:
    from relabscope.analysis.summary import run_summary

    lines = run_summary(emptied_run, seconds=3.0).splitlines()
    assert lines[-2:] == [
        "warning: class 'sadness' shrank below 50% of its given size in epoch 1: 16 given, as few as 6, "
        "6 after the last epoch",
        "warning: class 'anger' was emptied by relabelling in epoch 1: 16 given, 0 after the last epoch"]
    assert not any(line.startswith("warning") for line in run_summary(tiny_runs["baseline"]).splitlines())
