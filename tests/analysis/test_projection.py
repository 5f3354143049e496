"""t-SNE / UMAP maps of logged embeddings: subsampling, determinism, filters, the cache."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from relabscope.analysis import projection
from relabscope.analysis.projection import (MIN_LANDMARKS_PER_CLASS, project, project_run, stratified_landmarks,
                                            stratified_subsample)


@pytest.fixture
def fresh_run(tiny_runs: dict[str, Path], tmp_path: Path):
    """The SCN tiny run's log copied into an empty directory, so cache files written here
    do not leak into other tests."""
    from relabscope.analysis.run import Run

    shutil.copy(tiny_runs["scn"] / "run.h5", tmp_path / "run.h5")
    run = Run(tmp_path)
    yield run
    run.close()


def _clusters(n: int = 60, dim: int = 16, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=4.0, size=(3, dim))
    return (centers[np.arange(n) % 3] + rng.normal(size=(n, dim))).astype(np.float16)


# ---------------------------------------------------------------------- subsampling
def test_stratified_subsample_keeps_class_shares():
    labels = np.random.default_rng(1).permutation(np.repeat(np.arange(5), [50, 30, 10, 7, 3]))
    counts = np.bincount(labels)
    for max_points in (10, 20, 33, 60, 99):
        idx = stratified_subsample(labels, max_points, seed=0)
        assert len(idx) == max_points
        assert np.all(np.diff(idx) > 0)  # sorted, no repeats
        kept = np.bincount(labels[idx], minlength=5)
        assert (kept >= 1).all()
        assert np.all(np.abs(kept - max_points * counts / len(labels)) <= 1.0), (max_points, kept)
    # deterministic by seed; another seed picks other samples
    assert np.array_equal(stratified_subsample(labels, 20, seed=3), stratified_subsample(labels, 20, seed=3))
    assert not np.array_equal(stratified_subsample(labels, 20, seed=3), stratified_subsample(labels, 20, seed=4))
    # everything when there is no limit or the limit is not below n
    assert np.array_equal(stratified_subsample(labels, None, seed=0), np.arange(len(labels)))
    assert np.array_equal(stratified_subsample(labels, 500, seed=0), np.arange(len(labels)))
    # as many classes as points, or more: one per present class (the minimum wins)
    for max_points in (2, 5):
        assert np.array_equal(np.bincount(labels[stratified_subsample(labels, max_points, seed=0)]), np.ones(5))


def test_stratified_landmarks_give_every_class_its_minimum_and_share_the_rest_by_size():
    counts = np.array([6000, 2500, 900, 120, 30, 2])
    labels = np.random.default_rng(2).permutation(np.repeat(np.arange(6), counts))
    floor = np.minimum(counts, MIN_LANDMARKS_PER_CLASS)
    for budget in (300, 1000, 4567):
        idx = stratified_landmarks(labels, budget, seed=0)
        assert len(idx) == budget and np.all(np.diff(idx) > 0)  # the whole budget, sorted, no repeats
        got = np.bincount(labels[idx], minlength=6)
        assert (got >= floor).all() and (got <= counts).all(), (budget, got)
        # above their floor, classes share what is left at one density (within rounding)
        free = got > floor
        density = (budget - got[~free].sum()) / counts[free].sum()
        assert np.all(np.abs(got[free] - density * counts[free]) < 1.0), (budget, got)
    # deterministic by seed; another seed picks other samples
    assert np.array_equal(stratified_landmarks(labels, 300, seed=3), stratified_landmarks(labels, 300, seed=3))
    assert not np.array_equal(stratified_landmarks(labels, 300, seed=3), stratified_landmarks(labels, 300, seed=4))
    # a budget at or above the points: every point
    assert np.array_equal(stratified_landmarks(labels[:40], 40), np.arange(40))
    # floors above the budget: equal shares (the largest classes take the remainder), small classes whole
    got = np.bincount(labels[stratified_landmarks(labels, 100, seed=0)], minlength=6)
    assert got.tolist() == [20, 20, 20, 19, 19, 2]


# ---------------------------------------------------------------------- projection
@pytest.mark.parametrize("method", ["tsne", "umap"])
def test_project_is_deterministic_by_seed(method: str):
    x = _clusters()
    a = project(x, method=method, seed=7)
    b = project(x, method=method, seed=7)
    assert a.shape == (60, 2) and a.dtype == np.float32
    assert np.isfinite(a).all()
    assert np.array_equal(a, b)


def test_project_rejects_bad_input():
    with pytest.raises(ValueError, match="umap, tsne, pca"):
        project(_clusters(), method="mds", seed=0)
    with pytest.raises(ValueError, match="at least 3"):
        project(_clusters()[:2], method="tsne", seed=0)
    with pytest.raises(ValueError, match="landmarks must be at least 3"):
        project(_clusters(), method="umap", landmarks=2)
    with pytest.raises(ValueError, match="one label per embedding"):
        project(_clusters(), method="umap", labels=np.zeros(59, dtype=np.int64))


def test_pca_matches_scikit_learn_whatever_the_block_size(monkeypatch):
    from sklearn.decomposition import PCA

    x = _clusters(n=90, dim=12).astype(np.float32)
    reference = PCA(n_components=3).fit_transform(x.astype(np.float64))
    for chunk in (7, 90, 1000):  # blocks smaller than, equal to and larger than the data
        monkeypatch.setattr(projection, "_PCA_CHUNK", chunk)
        scores = projection.pca(x, 3)
        assert scores.dtype == np.float32
        # the same components up to sign, each sign fixed by the largest loading
        assert np.allclose(np.abs(scores), np.abs(reference), atol=1e-3)
        assert np.array_equal(scores, projection.pca(x.copy(), 3))


def test_pca_map_scales_with_the_embeddings_and_never_mirrors():
    x = _clusters(n=60, dim=16).astype(np.float32)
    xy = project(x, method="pca")
    assert np.allclose(project(x * 4.0, method="pca"), 4.0 * xy, rtol=1e-4, atol=1e-3)
    shuffled = np.random.default_rng(0).permutation(60)
    assert np.allclose(project(x[shuffled], method="pca"), xy[shuffled], atol=1e-4)


def test_landmarks_keep_their_layout_and_place_the_rest_in_their_cluster(monkeypatch):
    x = _clusters(n=300, dim=16, seed=2)
    cluster = np.arange(300) % 3
    laid_out = {}

    def layout(points, method, seed):  # records which rows were laid out; PCA stands in for UMAP
        laid_out["n"] = len(points)
        return projection.pca(points, 2)

    monkeypatch.setattr(projection, "_layout", layout)
    xy = project(x, method="umap", seed=0, landmarks=40)
    assert laid_out["n"] == 40 and xy.shape == (300, 2)
    assert np.array_equal(xy, project(x, method="umap", seed=0, landmarks=40))  # deterministic by seed
    # every placed point lands nearer its own cluster's landmark centroid than any other
    centroids = np.stack([xy[cluster == c].mean(axis=0) for c in range(3)])
    nearest = np.linalg.norm(xy[:, None] - centroids[None], axis=2).argmin(axis=1)
    assert (nearest == cluster).mean() > 0.95
    project(x, method="umap", seed=0, landmarks=None)
    assert laid_out["n"] == 300  # None: every point laid out


def test_a_rare_class_keeps_its_own_cluster_on_a_landmark_map():
    """Issue 19: 5 points of a well-separated class among 3,000, mapped through the real
    path (PCA to 50 dims, t-SNE of 200 landmarks, the rest placed from them). A uniform
    draw gives such a class no landmark seven times in ten, and a stray one or two at
    best (this seed's: 2, and the map still loses the class: the two are laid out among
    class 0 and the other three placed from mostly class-0 landmarks); drawn by class,
    all five are laid out and keep a cluster of their own."""
    rng = np.random.default_rng(0)
    dim = 64  # above REDUCED_DIMS, so the PCA step runs too
    centers = rng.normal(size=(3, dim))
    centers *= 42.0 / np.linalg.norm(centers, axis=1, keepdims=True)  # about 60 apart
    offset = rng.normal(size=dim)
    rare_center = centers[0] + 25.0 * offset / np.linalg.norm(offset)  # nearest to class 0
    labels = rng.permutation(np.repeat([0, 1, 2, 3], [1500, 1000, 495, 5]))
    # unit noise: points of a class about 11 apart, the rare ones about 27 from class 0's
    x = (np.r_[centers, rare_center[None]][labels] + rng.normal(size=(3000, dim))).astype(np.float16)

    xy = project(x, method="tsne", seed=0, landmarks=200, labels=labels)

    rare = labels == 3
    to_rare = np.linalg.norm(xy[rare][:, None] - xy[rare][None], axis=2)
    to_others = np.linalg.norm(xy[rare][:, None] - xy[~rare][None], axis=2)
    # each rare point's 4 nearest neighbours on the map are the other rare points ...
    assert (to_rare.max(axis=1) < to_others.min(axis=1)).all()
    # ... and the class sits apart: no other point within twice its radius of its centroid
    center = xy[rare].mean(axis=0)
    radius = np.linalg.norm(xy[rare] - center, axis=1).max()
    assert np.linalg.norm(xy[~rare] - center, axis=1).min() > 2 * radius


# ---------------------------------------------------------------------- a run's map
def test_project_run_columns_and_filters(fresh_run):
    run = fresh_run
    epoch = run.embedding_epochs()[-1]
    effect = run.labels()[epoch]
    train = np.flatnonzero(run.train_mask)
    top2 = [int(c) for c in np.argsort(-np.bincount(effect[train]))[:2]]

    df = project_run(run, method="tsne", classes=top2, max_points=30, seed=0, split="train")
    assert list(df.columns) == ["sample_id", "x", "y", "label", "given_label", "clean_label"]
    ids = df["sample_id"].to_numpy()
    assert 3 <= len(df) <= 30 and np.isin(ids, train).all()
    assert set(df["label"]) <= set(top2)
    assert np.array_equal(df["label"], effect[ids])
    assert np.array_equal(df["given_label"], run.given_labels[ids])
    assert np.array_equal(df["clean_label"], run.clean_labels[ids])
    assert np.isfinite(df[["x", "y"]].to_numpy()).all()

    test = project_run(run, method="tsne", split="test", seed=0)
    assert len(test) == (~run.train_mask).sum() and (~run.train_mask[test["sample_id"]]).all()
    assert len(project_run(run, method="tsne", split="all", max_points=50, seed=0)) == 50


def test_project_run_stratifies_landmarks_by_the_labels_in_effect(fresh_run, monkeypatch):
    seen = {}
    real_project = projection.project

    def recording_project(embeddings, **kwargs):
        seen.update(kwargs)
        return real_project(embeddings, **kwargs)

    monkeypatch.setattr(projection, "project", recording_project)
    df = project_run(fresh_run, method="tsne", max_points=40, seed=0, landmarks=20)
    assert np.array_equal(seen["labels"], df["label"])  # the labels in effect at the map's epoch
    assert np.isfinite(df[["x", "y"]].to_numpy()).all()


def test_project_run_caches_next_to_the_log(fresh_run, monkeypatch):
    run = fresh_run
    first = project_run(run, method="tsne", max_points=40, seed=1)
    files = list((run.run_dir / ".relabscope-cache").glob("projection-*.npz"))
    assert len(files) == 1

    def no_projection(*args, **kwargs):
        raise AssertionError("projection recomputed")

    monkeypatch.setattr(projection, "project", no_projection)
    again = project_run(run, method="tsne", max_points=40, seed=1)  # hit: projector not called
    assert again.equals(first)
    assert project_run(run, method="tsne", max_points=40, seed=1, epoch=run.embedding_epochs()[-1]).equals(first)
    for changed in ({"seed": 2}, {"max_points": 41}, {"split": "all"}, {"classes": [0, 1, 2]},
                    {"epoch": run.embedding_epochs()[0]}, {"method": "umap"}, {"landmarks": 10}):
        with pytest.raises(AssertionError, match="recomputed"):
            project_run(run, **{"method": "tsne", "max_points": 40, "seed": 1, **changed})


def test_project_run_without_a_writable_cache(fresh_run):
    (fresh_run.run_dir / ".relabscope-cache").write_text("not a folder")  # mkdir fails, even as root
    df = project_run(fresh_run, method="tsne", max_points=20, seed=0)
    assert len(df) == 20
    assert not list(fresh_run.run_dir.glob("*.tmp")) and not list(fresh_run.run_dir.glob(".relabscope-cache*/*"))


def test_project_run_needs_an_epoch_with_embeddings(fresh_run):
    kept = fresh_run.embedding_epochs()
    missing = next(e for e in range(fresh_run.num_epochs) if e not in kept)
    with pytest.raises(ValueError, match=re.escape(str(kept))):
        project_run(fresh_run, method="tsne", epoch=missing)
    with pytest.raises(ValueError, match="split"):
        project_run(fresh_run, method="tsne", split="val")


def test_umap_leaves_torch_thread_count_alone():
    """numba (under UMAP) resets the OpenMP thread count it shares with torch; training
    after a projection must still run on the threads the user chose."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        project(np.random.default_rng(0).normal(size=(60, 8)), method="umap")
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
