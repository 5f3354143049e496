"""``compare``: two runs side by side, samples aligned by key."""

from __future__ import annotations

import numpy as np
import pytest

import relabscope as rs


@pytest.fixture(scope="module")
def pair(tiny_runs):
    return rs.compare(tiny_runs["scn"], tiny_runs["scn-c"])


def test_summary_matches_each_run(pair) -> None:
    df = pair.summary()
    a, b = pair.names
    for name, run in ((a, pair.a), (b, pair.b)):
        flip = run.flipflops()
        assert df.loc["test_acc", name] == pytest.approx(float(run.metrics()["test_acc"].iloc[-1]))
        assert df.loc["relabel_events", name] == len(run.relabel_events()) == flip["changes"].sum()
        assert df.loc["flipflops", name] == flip["flipflops"].sum()
        assert df.loc["closer_to_new", name] == pytest.approx(float(run.consistency()["closer_to_new"]), nan_ok=True)
        shared = pair.shared_classes()
        comp = run.compactness(competitors=shared).loc[shared]
        for row, col in (("compactness_raw", "mean"), ("compactness_ratio", "ratio"), ("nearest_own", "nearest_own")):
            used = comp[comp[col].notna()]
            measured = used["n"] - used["n_without_mean"]
            weighted = (used[col] * measured).sum() / measured.sum()
            assert df.loc[row, name] == pytest.approx(weighted), row
        assert df.loc["classes_compared", name] == len(shared)
        assert df.loc["closer_vs_control", name] == pytest.approx(float(run.consistency()["closer_vs_control"]),
                                                                  nan_ok=True)
        assert "noisy_corrected" in df.index  # synthetic data knows its clean labels
    diff = df["difference (B - A)"]
    np.testing.assert_allclose(diff.to_numpy(float), (df[b] - df[a]).to_numpy(float), equal_nan=True)


def test_samples_are_aligned_by_key(pair) -> None:
    df = pair.samples()
    keys_a = pair.a.samples.set_index("sample_id")["key"]
    keys_b = pair.b.samples.set_index("sample_id")["key"]
    assert (keys_a.loc[df["sample_id_a"]].to_numpy() == df["key"].to_numpy()).all()
    assert (keys_b.loc[df["sample_id_b"]].to_numpy() == df["key"].to_numpy()).all()
    assert len(df) == int(pair.a.train_mask.sum())  # same data: every training sample in both
    ff_b = pair.b.flipflops().set_index("sample_id")
    np.testing.assert_array_equal(df["flipflops_b"], ff_b.loc[df["sample_id_b"], "flipflops"])
    labels = pair.a.labels()[-1][df["sample_id_a"]]
    own = pair.a.distances(-1)[df["sample_id_a"], labels]
    np.testing.assert_allclose(df["distance_own_a"], own)


def test_compactness_and_metrics_side_by_side(pair) -> None:
    comp = pair.compactness()
    np.testing.assert_allclose(comp["mean_a"], pair.a.compactness()["mean"])
    np.testing.assert_allclose(comp["mean_difference"], comp["mean_b"] - comp["mean_a"])
    metrics = pair.metrics()
    np.testing.assert_allclose(metrics["test_acc_b"], pair.b.metrics()["test_acc"])
    assert list(pair.consistency().columns) == list(pair.names)


def test_compare_accepts_paths_and_names_two_runs_apart(tiny_runs) -> None:
    same = rs.compare(tiny_runs["scn"], str(tiny_runs["scn"]))
    assert same.names[0] != same.names[1]
    assert same.summary()["difference (B - A)"].fillna(0).eq(0).all()


def _three_class_run(path, *, empty_c: bool, guards: tuple[str, ...] = (),
                     vetoed: list[np.ndarray] | None = None) -> rs.Run:
    """Two epochs, classes a, b, c of 8 training samples around far-apart centers; with
    ``empty_c`` every c sample is relabelled to a in epoch 0, so c has no mean in epoch 1.
    ``guards``: relabel guards the log records, ``vetoed`` their vetoes per epoch
    (guards x classes)."""
    k, per, d = 3, 8, 4
    rng = np.random.default_rng(0)
    given = np.repeat(np.arange(k), per)
    samples = rs.SampleTable(key=[f"s{i}" for i in range(k * per)], split=np.zeros(k * per), given_label=given)
    centers = np.eye(k, d) * 10.0
    centers[2] = [1.0, 4.0, 0.0, 0.0]  # c sits between a and b: the nearest other center of many samples
    effect = given.copy()
    with rs.RunLogWriter.create(path, samples, ["a", "b", "c"], embed_dim=d, guards=guards) as log:
        for epoch in range(2):
            emb = centers[given] + rng.normal(0, 1.0, (k * per, d))
            new = effect.copy()
            if empty_c and epoch == 0:
                new[given == 2] = 0
            ids = np.arange(k * per)
            log.log_batch(ids, effect, rng.normal(size=(k * per, k)), emb, new_labels=new)
            effect = new
            log.end_epoch(**({"vetoed": vetoed[epoch]} if vetoed is not None else {}))
    return rs.open_run(path)


def test_runs_with_different_classes_compare_over_the_shared_ones(tmp_path) -> None:
    """B relabelled class c empty, A did not. The compared geometry takes each sample's
    nearest other center among a and b only, in both runs, and says so; B does not look
    more compact for having fewer competitors."""
    a = _three_class_run(tmp_path / "keeps-c", empty_c=False)
    b = _three_class_run(tmp_path / "empties-c", empty_c=True)
    both = rs.compare(a, b)
    assert both.shared_classes() == ["a", "b"]
    note = both.geometry_note()
    assert note is not None and "c in empties-c" in note and "2 classes" in note
    table = both.compactness()
    alone = a.compactness()
    assert (table["ratio_a"].loc[["a", "b"]] < alone["ratio"].loc[["a", "b"]]).all()  # c no longer the nearest
    np.testing.assert_allclose(table["ratio_a"], a.compactness(competitors=["a", "b"])["ratio"])
    assert table.loc["c", "n_b"] == 0 and np.isnan(table.loc["c", "ratio_difference"])
    summary = both.summary(warn=False)
    assert summary.loc["classes_compared"].tolist()[:2] == [2.0, 2.0]
    shared = a.compactness(competitors=["a", "b"]).loc[["a", "b"]]
    want = float((shared["ratio"] * shared["n"]).sum() / shared["n"].sum())
    assert summary.loc["compactness_ratio", "keeps-c"] == pytest.approx(want)
    given_b = b.compactness(labels="given")
    assert given_b.loc["c", "n"] == 8 and given_b.loc["c", "n_without_mean"] == 8  # counted, not dropped
    with pytest.raises(ValueError, match="no class named 'x'"):
        a.compactness(competitors=["a", "x"])


def test_summary_puts_vetoed_relabels_next_to_relabel_events(tmp_path, pair) -> None:
    """A run whose guards (agree, floor) logged vetoes against one without guards: a total
    row and a row per guard right after relabel_events, each guard's count in the run that
    had it and NaN (no guard, no count: not zero) elsewhere; in either order of the runs.
    Runs without guards get no such row."""
    vetoed = [np.array([[0, 2, 1], [3, 0, 0]]), np.array([[1, 0, 0], [0, 0, 4]])]
    guarded = _three_class_run(tmp_path / "guarded", empty_c=False, guards=("agree", "floor"), vetoed=vetoed)
    free = _three_class_run(tmp_path / "free", empty_c=True)
    rows = ["relabel_events", "relabels_vetoed", "vetoed_by_agree", "vetoed_by_floor", "relabelled_samples"]
    for a, b in ((guarded, free), (free, guarded)):
        summary = rs.compare(a, b).summary(warn=False)
        at = list(summary.index).index("relabel_events")
        assert list(summary.index[at:at + 5]) == rows
        assert summary.loc[rows[1:4], "guarded"].tolist() == [11.0, 4.0, 7.0]
        assert summary.loc[rows[1:4], "free"].isna().all()
        assert summary.loc[rows[1:4], "difference (B - A)"].isna().all()
    assert summary.loc["relabels_vetoed", "guarded"] == guarded.vetoes()["vetoed"].sum()
    assert not pair.summary(warn=False).index.str.contains("vetoed").any()
