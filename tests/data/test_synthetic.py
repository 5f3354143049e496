"""The embedded synthetic data set: rendering, labels, ambiguity, cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from relabscope.data import load_dataset, synthetic
from relabscope.data.base import DataSplits

N, SIZE = 70, 32

#: render_faces(14, size=24, seed=2024) as GENERATOR_VERSION 2 drew it (tests/data/synthetic_v<version>.npz)
REFERENCE = Path(__file__).parent / "synthetic_v{version}.npz"


@pytest.fixture(scope="module")
def faces():
    return synthetic.render_faces(N, size=SIZE, seed=5)


def test_shapes_and_dtypes(faces):
    images, labels, ambiguity, blend = faces
    assert images.shape == (N, SIZE, SIZE, 3) and images.dtype == np.uint8
    assert labels.shape == (N,) and labels.dtype == np.int64
    assert ambiguity.shape == (N,) and ambiguity.dtype == np.float32
    assert blend.shape == (N,) and blend.dtype == np.int64


def test_class_names_in_rafdb_order():
    assert synthetic.CLASS_NAMES == (
        "Surprise", "Fear", "Disgust", "Happiness", "Sadness", "Anger", "Neutral"
    )
    assert synthetic.PROTOTYPES.shape == (7, len(synthetic.PARAM_NAMES))


def test_deterministic_by_seed(faces):
    again = synthetic.render_faces(N, size=SIZE, seed=5)
    for a, b in zip(faces, again):
        assert a.tobytes() == b.tobytes()
    other = synthetic.render_faces(N, size=SIZE, seed=6)
    assert faces[0].tobytes() != other[0].tobytes()
    assert not np.array_equal(faces[1], other[1])


def test_rendering_is_pinned_by_generator_version():
    """Cached data sets and runs compared across versions assume one version always draws
    the same faces. Compared with a tolerance, not a digest: numpy's float kernels differ
    between CPUs, which may round a pixel the other way (the very thing that must not fail
    a test on another machine); a change to what is drawn moves far more than that."""
    version = synthetic.GENERATOR_VERSION
    reference = REFERENCE.with_name(REFERENCE.name.format(version=version))
    assert reference.is_file(), f"no reference pixels for GENERATOR_VERSION {version} ({reference})"
    want = np.load(reference)["images"].astype(np.int16)
    got = synthetic.render_faces(14, size=24, seed=2024)[0].astype(np.int16)
    off = np.abs(got - want)
    assert off.max() <= 2 and (off > 0).mean() < 0.001, (
        f"{(off > 0).mean():.2%} of the pixels differ (by up to {off.max()}) from those GENERATOR_VERSION "
        f"{version} drew: a rendering change must bump synthetic.GENERATOR_VERSION and save its reference "
        f"({reference.name})")


def test_labels_balanced_and_every_class_present(faces):
    labels = faces[1]
    assert labels.min() >= 0 and labels.max() < 7
    counts = np.bincount(labels, minlength=7)
    assert counts.min() == counts.max() == N // 7


def test_ambiguity_fraction_and_consistency():
    _, labels, ambiguity, blend = synthetic.render_faces(
        140, size=16, seed=1, ambiguous_fraction=0.3
    )
    blended = blend != -1
    assert abs(blended.mean() - 0.3) <= 0.02
    assert np.array_equal(blended, ambiguity > 0)
    assert np.all(ambiguity[~blended] == 0)
    lo, hi = synthetic.AMBIGUOUS_WEIGHT
    assert np.all((ambiguity[blended] >= 1 - hi - 1e-6) & (ambiguity[blended] <= 1 - lo + 1e-6))
    assert np.all(blend[blended] != labels[blended])
    assert np.all((blend[blended] >= 0) & (blend[blended] < 7))


def test_no_ambiguity_when_fraction_zero():
    _, _, ambiguity, blend = synthetic.render_faces(21, size=16, seed=2, ambiguous_fraction=0.0)
    assert np.all(ambiguity == 0) and np.all(blend == -1)


def test_images_are_not_flat(faces):
    images = faces[0].astype(np.float32)
    # every image has structure (a face on a background), not a constant colour
    assert np.all(images.reshape(N, -1).std(axis=1) > 10)


def test_feature_windows_cover_their_features(monkeypatch):
    """Features are drawn in small windows for speed; whole-image windows change nothing."""
    small = synthetic.render_faces(28, size=48, seed=9)[0]
    monkeypatch.setattr(synthetic, "_MAX_SCALE", 100.0)
    full = synthetic.render_faces(28, size=48, seed=9)[0]
    assert np.abs(small.astype(int) - full.astype(int)).max() <= 1


def test_load_builds_splits_and_caches(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("RELABSCOPE_CACHE", str(tmp_path))
    opts = dict(num_train=35, num_test=21, size=SIZE, seed=3)
    splits = synthetic.load(None, **opts)
    assert isinstance(splits, DataSplits)
    files = list((tmp_path / "synthetic").glob("*.npz"))
    assert len(files) == 1 and f"v{synthetic.GENERATOR_VERSION}" in files[0].name
    assert not list((tmp_path / "synthetic").glob("*.tmp"))

    for split, n in (("train", 35), ("test", 21)):
        ds = getattr(splits, split)
        assert ds.name == "synthetic" and ds.split == split and len(ds) == n
        assert ds.class_names == synthetic.CLASS_NAMES
        assert ds.keys[0] == f"synthetic/{split}/00000"
        assert np.array_equal(ds.labels, ds.clean_labels)
        assert set(ds.extras) == {"ambiguity", "blend_label"}
        assert ds.channels == 3 and ds.native_size == SIZE
        image, index = ds[0]
        assert tuple(image.shape) == (3, SIZE, SIZE) and index == 0
    # train and test come from different seeds
    assert splits.train.source.array()[:21].tobytes() != splits.test.source.array().tobytes()

    def boom(*args, **kwargs):
        raise AssertionError("render_faces called although the cache exists")

    monkeypatch.setattr(synthetic, "render_faces", boom)
    again = synthetic.load(None, **opts)
    for split in ("train", "test"):
        a, b = getattr(splits, split), getattr(again, split)
        assert np.array_equal(a.source.array(), b.source.array())
        assert np.array_equal(a.labels, b.labels)
        for key in a.extras:
            assert np.array_equal(a.extras[key], b.extras[key])
    assert again.fingerprint() == splits.fingerprint()


def test_load_with_root_and_registry(tmp_path: Path):
    root = tmp_path / "not-yet"
    splits = load_dataset("synthetic", root, num_train=14, num_test=7, size=16, seed=1)
    assert len(splits.train) == 14 and len(splits.test) == 7
    assert len(list(root.glob("*.npz"))) == 1


def test_corrupt_cache_is_rebuilt(tmp_path: Path):
    opts = dict(num_train=14, num_test=7, size=16, seed=4)
    first = synthetic.load(tmp_path, **opts)
    (path,) = tmp_path.glob("*.npz")
    path.write_bytes(path.read_bytes()[:100])  # a truncated file
    again = synthetic.load(tmp_path, **opts)
    assert np.array_equal(first.train.source.array(), again.train.source.array())


def test_parameters_name_the_cache_file(tmp_path: Path):
    synthetic.load(tmp_path, num_train=7, num_test=7, size=16, seed=0)
    synthetic.load(tmp_path, num_train=7, num_test=7, size=16, seed=1)
    synthetic.load(tmp_path, num_train=7, num_test=7, size=16, seed=0, ambiguous_fraction=0.3)
    assert len(list(tmp_path.glob("*.npz"))) == 3
