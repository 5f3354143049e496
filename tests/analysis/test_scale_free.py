"""Numbers that compare runs must not depend on the scale of a model's embedding: multiply
every embedding, class mean, center and distance of a log by a constant, and the raw
figures scale with it while no scale-free one moves."""

from __future__ import annotations

import shutil

import h5py
import numpy as np
import pandas as pd
import pytest

import relabscope as rs
from relabscope.analysis.compare import headline

SCALED = ("epochs/distance", "epochs/class_mean", "epochs/center", "embeddings/data")
#: headline rows in the model's units, and the scale-free ones
RAW = ("compactness_raw", "gap_change_raw")
FREE = ("closer_before", "closer_to_new", "mean_rel_gap_change", "compactness_ratio", "nearest_own", "silhouette")


def scaled_copy(run_dir, out, factor: float):
    """``run_dir`` copied to ``out`` with every geometric array of its log times ``factor``
    (a power of two: float16 embeddings scale exactly)."""
    shutil.copytree(run_dir, out)
    with h5py.File(out / "run.h5", "r+") as f:
        for name in SCALED:
            f[name][...] = f[name][...] * factor
    return out


@pytest.fixture(scope="module", params=[0.25, 8.0])
def pair(request, emptied_run, tmp_path_factory):
    factor = request.param
    out = scaled_copy(emptied_run, tmp_path_factory.mktemp("scaled") / "emptied", factor)
    with rs.open_run(emptied_run) as a, rs.open_run(out) as b:
        yield a, b, factor


def test_compactness(pair) -> None:
    a, b, factor = pair
    for labels in ("effect", "given", "clean"):
        ca, cb = a.compactness(labels=labels), b.compactness(labels=labels)
        free = ["ratio", "nearest_own", "silhouette"]
        pd.testing.assert_frame_equal(cb[free], ca[free], rtol=1e-6)
        np.testing.assert_allclose(cb[["mean", "std"]], ca[["mean", "std"]] * factor, rtol=1e-6)
        assert ca[free].drop(index="anger").notna().all().all()  # a class without a mean is skipped, not NaN


def test_consistency(pair) -> None:
    a, b, factor = pair
    sa, sb = a.consistency(), b.consistency()
    for key in ("closer_before", "closer_to_new", "mean_rel_gap_change", "undone_fraction"):
        assert float(sb[key]) == pytest.approx(float(sa[key]), rel=1e-6), key
    assert float(sb["mean_gap_change"]) == pytest.approx(float(sa["mean_gap_change"]) * factor, rel=1e-6)


def test_headline_and_summary(pair) -> None:
    a, b, factor = pair
    ha, hb = headline(a), headline(b)
    for key in FREE:
        assert hb[key] == pytest.approx(ha[key], rel=1e-6), key
    for key in RAW:
        assert hb[key] == pytest.approx(ha[key] * factor, rel=1e-6), key
        assert hb[key] != pytest.approx(ha[key], rel=1e-3), key  # the raw ones do move
    diff = rs.compare(a, b).summary(warn=False)["difference (B - A)"]
    assert np.allclose(diff[list(FREE)].to_numpy(float), 0.0, atol=1e-6)


def test_distance_profile(pair) -> None:
    a, b, factor = pair
    pa, pb = a.distance_profile(48), b.distance_profile(48)
    np.testing.assert_allclose(pb["relative_distance"], pa["relative_distance"], rtol=1e-6)
    np.testing.assert_allclose(pb["distance"], pa["distance"] * factor, rtol=1e-6)
    assert pa["relative_distance"].notna().sum() == pa["distance"].notna().sum() > 0
