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
        comp = run.compactness()
        for row, col in (("compactness_raw", "mean"), ("compactness_ratio", "ratio"), ("nearest_own", "nearest_own")):
            used = comp[comp[col].notna()]
            weighted = (used[col] * used["n"]).sum() / used["n"].sum()
            assert df.loc[row, name] == pytest.approx(weighted), row
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
