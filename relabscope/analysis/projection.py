"""2-D maps of the logged embeddings (the seed paper's Fig. 5): UMAP, t-SNE or PCA.

The paper's figure shows how the training samples of a few classes sit in embedding space
at some epoch, coloured by the label in effect, so that relabelled samples and tight (SCN-C)
or loose (SCN) clusters can be seen. This module turns the embeddings a run log kept
(``embeddings/data``, float16) into such a map:

- ``stratified_subsample`` picks at most N points while keeping each class's share, so a
  subsampled map still shows the real class balance;
- ``project`` runs t-SNE (scikit-learn) or UMAP (umap-learn) deterministically by seed,
  or PCA, which takes about a second even for 287,651 points (a preview while the others
  compute, and a map that keeps global geometry);
- at scale, UMAP and t-SNE lay out ``LANDMARKS`` points and place every other point at
  the distance-weighted mean of its nearest landmarks (``place_by_neighbours``), all in a
  ``REDUCED_DIMS``-d PCA of the embeddings: on 2 cores a seeded UMAP of 50,000 points
  took minutes, so a map of a whole AffectNet log would take hours otherwise. With the
  points' labels (``project_run`` passes the labels in effect) the landmarks are drawn
  per class (``stratified_landmarks``): every class gets at least
  ``MIN_LANDMARKS_PER_CLASS`` of them (all its points when it has fewer), so a class
  relabelling nearly emptied still forms its own cluster instead of being placed among
  other classes' landmarks; without labels they are a uniform draw;
- ``project_run`` does both for one run and caches the result next to the log under
  ``RUNDIR/.relabscope-cache/``, because a t-SNE of tens of thousands of points takes
  minutes and a dashboard asks for the same map again and again.

Caveats:

- Only epochs whose embeddings were kept (``--embed-every``, and the last) can be shown;
  ``Run.embedding_epochs()`` lists them.
- Embeddings of the training pass come from augmented images under weights changing
  through the epoch (``epochs/embed_source`` says which pass produced them); the map shows
  what the class means and distances of that epoch were computed from, not a clean probe.
- t-SNE and UMAP distort global geometry: distances between clusters in the map mean
  little; neighbourhoods are what they preserve.
- UMAP with a fixed ``random_state`` runs single-threaded (umap-learn's rule for
  reproducibility), so large UMAPs are slower than umap-learn's default. Its first call in
  a process also pays numba's compilation (20-30 s on a 2-core machine).
- A point placed from landmarks sits among the neighbours it has in embedding space, but
  was not itself part of the layout: look at neighbourhoods, not at single placed points
  between clusters. ``landmarks=None`` lays out every point (slow at scale).
- Determinism is per library version: the same seed on another scikit-learn or umap-learn
  version may give a different (equally valid) map; the cache key includes the versions.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sys
import warnings
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Literal

import numpy as np
import pandas as pd

from relabscope.atomic import atomic_write
from relabscope.runlog.schema import SPLIT_CODES

if TYPE_CHECKING:
    from relabscope.analysis.run import Run

ProjectionMethod = Literal["umap", "tsne", "pca"]
PROJECTIONS: tuple[str, ...] = ("umap", "tsne", "pca")
CACHE_DIR = ".relabscope-cache"
#: bump when the projection or the cached file's layout changes, to invalidate old files
#: (3: landmarks stratified by the labels in effect)
CACHE_VERSION = 3
#: points on a dashboard's map by default (a stratified subsample keeping each class's
#: share): its PCA preview is drawn in about a second; None maps every sample
MAP_POINTS = 20_000
#: UMAP / t-SNE lay out at most this many points; the rest are placed from them
LANDMARKS = 20_000
#: with labels, every class gets at least min(its size, this) landmarks. A class needs
#: PLACE_NEIGHBOURS (10) landmarks before its placed points can be placed from their own
#: class alone, and about as many as the layout's neighbourhood (UMAP's 15 neighbours,
#: t-SNE's perplexity 30) before it can hold a cluster of its own rather than be pulled
#: into its neighbours'; 50 clears both, and for the 7-8 classes of RAF-DB or AffectNet
#: costs at most 400 of the 20,000 landmarks (2 %) of the other classes' share.
MIN_LANDMARKS_PER_CLASS = 50
#: embeddings are reduced to this many principal components before UMAP / t-SNE (their
#: neighbour searches are far faster there, and the trailing components are mostly noise)
REDUCED_DIMS = 50
#: neighbours (landmarks) whose weighted mean places a point
PLACE_NEIGHBOURS = 10
#: PCA fits its axes on at most this many rows (evenly spaced, so deterministic)
PCA_FIT_ROWS = 32_768
#: rows per block when PCA reads through the embeddings
_PCA_CHUNK = 65_536
COLUMNS: tuple[str, ...] = ("sample_id", "x", "y", "label", "given_label", "clean_label")


# ---------------------------------------------------------------------- subsampling
def stratified_subsample(labels: np.ndarray, max_points: int | None, *, seed: int = 0) -> np.ndarray:
    """Sorted indices of at most ``max_points`` samples that keep every class's share.

    Each class gets its proportional quota ``max_points * count / n`` rounded by largest
    remainder (so every class is within one point of its exact share), and at least one
    point when it is present at all, so a rare class never vanishes from the map. When
    more classes are present than ``max_points``, that minimum wins and the result holds
    one point per class. Which samples of a class are kept is drawn by ``seed``; all
    indices come back when ``max_points`` is None or not below ``len(labels)``.
    """
    labels = np.asarray(labels)
    n = len(labels)
    if max_points is None or max_points >= n:
        return np.arange(n)
    if max_points < 1:
        raise ValueError(f"max_points must be at least 1, got {max_points}")
    classes, counts = np.unique(labels, return_counts=True)
    quota = max_points * counts / n
    alloc = np.maximum(np.floor(quota).astype(np.int64), 1)
    alloc = np.minimum(alloc, counts)
    # Settle the total on max_points: add where the quota lost most to rounding, take back
    # where the forced minimum or rounding gave most. Stable sorts keep ties deterministic.
    gap = max_points - int(alloc.sum())
    while gap != 0:
        surplus = alloc - quota
        if gap > 0:
            order = [i for i in np.argsort(surplus, kind="stable") if alloc[i] < counts[i]]
            step = 1
        else:
            order = [i for i in np.argsort(-surplus, kind="stable") if alloc[i] > 1]
            step = -1
        if not order:
            break  # every class pinned at its minimum (or all taken): nothing left to move
        for i in order[: abs(gap)]:
            alloc[i] += step
        gap = max_points - int(alloc.sum())
    rng = np.random.default_rng(seed)
    keep = [
        rng.choice(np.flatnonzero(labels == c), size=int(k), replace=False)
        for c, k in zip(classes, alloc)
    ]
    return np.sort(np.concatenate(keep)) if keep else np.arange(0)


def stratified_landmarks(labels: np.ndarray, budget: int, *, seed: int = 0,
                         minimum: int = MIN_LANDMARKS_PER_CLASS) -> np.ndarray:
    """Sorted indices of ``budget`` landmarks in which no class is left without a cluster.

    Every class present gets at least ``min(its size, minimum)`` landmarks; the rest of
    the budget goes to the classes whose proportional share is above that floor, in
    proportion to their size (one landmark density for all of them, rounded by largest
    remainder). A uniform draw would give a class of 5 among 3,000 points no landmark out
    of 200 seven times in ten, and then every one of its points would be placed among
    other classes' landmarks. When the floors alone exceed the budget (more than
    ``budget / minimum`` classes), classes share it equally instead, the largest taking
    the remainder. Which samples of a class become landmarks is drawn by ``seed``; all
    indices come back when ``budget`` is not below ``len(labels)``.

    Example:
        >>> labels = np.repeat([0, 1, 2], [900, 95, 5])
        >>> np.bincount(labels[stratified_landmarks(labels, 100, minimum=20)]).tolist()
        [75, 20, 5]
    """
    labels = np.asarray(labels)
    n = len(labels)
    if budget >= n:
        return np.arange(n)
    if budget < 1:
        raise ValueError(f"budget must be at least 1, got {budget}")
    if minimum < 0:
        raise ValueError(f"minimum must not be negative, got {minimum}")
    classes, counts = np.unique(labels, return_counts=True)
    alloc = _landmark_counts(counts, budget, minimum)
    rng = np.random.default_rng(seed)
    chosen = [
        rng.choice(np.flatnonzero(labels == c), size=int(k), replace=False)
        for c, k in zip(classes, alloc) if k
    ]
    return np.sort(np.concatenate(chosen))


def _landmark_counts(counts: np.ndarray, budget: int, minimum: int) -> np.ndarray:
    """Landmarks per class for :func:`stratified_landmarks` (``budget < counts.sum()``)."""
    floor = np.minimum(counts, minimum)
    if floor.sum() >= budget:
        # Equal shares: the highest level L with sum(min(counts, L)) <= budget, then one
        # more for the largest classes still above L until the budget is spent.
        totals = np.minimum(counts[None, :], np.arange(minimum + 1)[:, None]).sum(axis=1)
        level = int(np.searchsorted(totals, budget, side="right")) - 1
        alloc = np.minimum(counts, level)
        above = [i for i in np.argsort(-counts, kind="stable") if counts[i] > level]
        alloc[above[: budget - int(alloc.sum())]] += 1
        return alloc
    # One density t for the classes above their floor: t * count where that is at least
    # the floor, the floor elsewhere. Pinning a class at its floor only lowers t, so this
    # settles within one pass per class.
    pinned = np.zeros(len(counts), dtype=bool)
    while True:
        density = (budget - floor[pinned].sum()) / counts[~pinned].sum()
        newly = ~pinned & (density * counts < floor)
        if not newly.any():
            break
        pinned |= newly
    quota = np.where(pinned, floor, density * counts)
    alloc = np.floor(quota).astype(np.int64)
    # largest remainder among the proportional classes (stable sort: ties deterministic)
    order = [i for i in np.argsort(alloc - quota, kind="stable") if not pinned[i]]
    alloc[order[: budget - int(alloc.sum())]] += 1
    return alloc


# ---------------------------------------------------------------------- projection
def project(embeddings: np.ndarray, *, method: ProjectionMethod = "umap", seed: int = 0,
            landmarks: int | None = LANDMARKS, labels: np.ndarray | None = None) -> np.ndarray:
    """``(n, 2)`` float32 coordinates of ``(n, D)`` embeddings; the same seed, the same map.

    PCA: the first two principal components, signs fixed (each component's largest
    loading is positive), so a map never mirrors between calls. t-SNE: scikit-learn's,
    PCA-initialised, perplexity ``min(30, (n - 1) / 3)`` (it must stay below n). UMAP:
    umap-learn's, ``n_neighbors = min(15, n - 1)``, seeded and hence single-threaded.
    Both run on the first ``REDUCED_DIMS`` principal components, and on at most
    ``landmarks`` points: the others are placed by :func:`place_by_neighbours`. Given
    ``labels`` (one per row, e.g. the labels in effect) the landmarks are
    :func:`stratified_landmarks`, so even a class of a handful of points is laid out and
    keeps a cluster of its own; without them they are a uniform draw (each class keeps
    its share only in expectation, and a rare one may get no landmark at all). Both are
    drawn by ``seed``; ``labels`` change nothing when every point is laid out, nor for
    PCA. Both libraries are imported only here, since they are slow to import. The run
    log stores float16; the maps are computed in float32.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> x = np.r_[rng.normal(0, 1, (50, 8)), rng.normal(6, 1, (50, 8))]
        >>> xy = project(x, method="pca")
        >>> xy.shape, bool(abs(xy[:50, 0].mean() - xy[50:, 0].mean()) > 10)
        ((100, 2), True)
    """
    if method not in PROJECTIONS:
        raise ValueError(f"projection method must be one of {', '.join(PROJECTIONS)}, not {method!r}")
    x = np.asarray(embeddings)
    if x.ndim != 2:
        raise ValueError(f"embeddings must be 2-D (samples x dims), got shape {x.shape}")
    n = x.shape[0]
    if n < 3:
        raise ValueError(f"a {method} projection needs at least 3 points, got {n}")
    if landmarks is not None and landmarks < 3:
        raise ValueError(f"landmarks must be at least 3 (or None: lay out every point), got {landmarks}")
    if labels is not None and len(labels) != n:
        raise ValueError(f"labels must hold one label per embedding: {len(labels)} labels, {n} embeddings")
    bad = int(sum((~np.isfinite(x[i:i + _PCA_CHUNK])).any(axis=1).sum() for i in range(0, n, _PCA_CHUNK)))
    if bad:
        raise ValueError(f"{bad} of {n} embeddings hold NaN or infinite values (a diverged run?)")
    if method == "pca":
        return pca(x, 2)
    reduced = pca(x, REDUCED_DIMS) if x.shape[1] > REDUCED_DIMS else x.astype(np.float32)
    if landmarks is None or n <= landmarks:
        return _layout(reduced, method, seed)
    if labels is None:
        chosen = np.sort(np.random.default_rng(seed).choice(n, size=landmarks, replace=False))
    else:
        chosen = stratified_landmarks(labels, landmarks, seed=seed)
    return place_by_neighbours(reduced, chosen, _layout(reduced[chosen], method, seed))


def pca(x: np.ndarray, dims: int) -> np.ndarray:
    """``(n, dims)`` float32 scores on the first ``dims`` principal components of ``x``.

    The axes are fitted on at most ``PCA_FIT_ROWS`` evenly spaced rows (plenty to estimate
    a 512-d covariance; all 287,651 rows cost 7 s on 2 cores, the sample well under one),
    every row is projected, block by block (a float16 log never becomes one float32
    copy), and each component's sign is fixed so that its largest loading is positive:
    the same data always gives the same picture.

    Example:
        >>> rng = np.random.default_rng(1)
        >>> x = rng.normal(0, 1, (200, 5)) * [10, 3, 1, 1, 1]
        >>> scores = pca(x, 2)
        >>> [round(float(s), 0) for s in scores.std(axis=0)]
        [10.0, 3.0]
    """
    n, d = x.shape
    dims = min(dims, d)
    fit = x[np.linspace(0, n - 1, PCA_FIT_ROWS).astype(np.int64)] if n > PCA_FIT_ROWS else x
    total = np.zeros(d)
    for i in range(0, len(fit), _PCA_CHUNK):
        total += fit[i:i + _PCA_CHUNK].sum(axis=0, dtype=np.float64)
    mean = (total / len(fit)).astype(np.float32)
    # float32 blocks (centred first, so no precision is lost to a large mean), float64 sums
    cov = np.zeros((d, d))
    for i in range(0, len(fit), _PCA_CHUNK):
        block = fit[i:i + _PCA_CHUNK].astype(np.float32) - mean
        cov += block.T @ block
    _, vectors = np.linalg.eigh(cov)
    components = vectors[:, ::-1][:, :dims]
    components *= np.sign(components[np.abs(components).argmax(axis=0), np.arange(dims)])
    components = components.astype(np.float32)
    out = np.empty((n, dims), dtype=np.float32)
    shift = mean @ components  # (x - mean) @ c = x @ c - mean @ c: one pass less over x
    for i in range(0, n, _PCA_CHUNK):
        out[i:i + _PCA_CHUNK] = x[i:i + _PCA_CHUNK].astype(np.float32) @ components - shift
    return out


def place_by_neighbours(x: np.ndarray, landmarks: np.ndarray, landmark_xy: np.ndarray, *,
                        k: int = PLACE_NEIGHBOURS) -> np.ndarray:
    """Map coordinates for every row of ``x`` given the layout of its ``landmarks`` rows.

    A landmark keeps its own coordinates; any other point goes to the mean of its ``k``
    nearest landmarks' coordinates (nearest in ``x``), weighted by inverse distance, so
    it lands inside the neighbourhood it has in embedding space. This is the cheap
    out-of-sample step of landmark t-SNE / UMAP: one exact neighbour search (scikit-learn,
    brute force in blocks), no optimisation.

    Example:
        >>> x = np.array([[0.0], [10.0], [1.0], [9.0]])
        >>> place_by_neighbours(x, np.array([0, 1]), np.array([[0.0, 0.0], [5.0, 5.0]]), k=1).tolist()
        [[0.0, 0.0], [5.0, 5.0], [0.0, 0.0], [5.0, 5.0]]
    """
    from sklearn.neighbors import NearestNeighbors

    out = np.empty((len(x), 2), dtype=np.float32)
    out[landmarks] = landmark_xy
    rest = np.setdiff1d(np.arange(len(x)), landmarks)
    if len(rest):
        k = min(k, len(landmarks))
        finder = NearestNeighbors(n_neighbors=k, algorithm="brute").fit(x[landmarks])
        dist, idx = finder.kneighbors(x[rest])
        weight = 1.0 / np.maximum(dist, 1e-12)
        weight /= weight.sum(axis=1, keepdims=True)
        out[rest] = np.einsum("nk,nkc->nc", weight, landmark_xy[idx])
    return out


def _layout(x: np.ndarray, method: ProjectionMethod, seed: int) -> np.ndarray:
    """UMAP or t-SNE of every row of ``x`` (float32), seeded."""
    n = x.shape[0]
    if method == "tsne":
        from sklearn.manifold import TSNE

        out = TSNE(n_components=2, init="pca", perplexity=min(30.0, (n - 1) / 3),
                   random_state=seed).fit_transform(x)
    else:
        # Spectral initialisation needs more points than components + 1; tiny sets start
        # from random (seeded) positions instead.
        init = "spectral" if n > 4 else "random"
        with warnings.catch_warnings():
            # "Tensorflow not installed; ParametricUMAP unavailable": not used here.
            warnings.filterwarnings("ignore", category=ImportWarning)
            # "n_jobs overridden to 1 by setting random_state": intended, and documented.
            warnings.filterwarnings("ignore", message=".*random_state.*", category=UserWarning)
            import umap

            with _torch_threads_kept():
                out = umap.UMAP(n_components=2, n_neighbors=min(15, n - 1), init=init,
                                random_state=seed).fit_transform(x)
    return np.asarray(out, dtype=np.float32)


@contextlib.contextmanager
def _torch_threads_kept() -> Iterator[None]:
    """Give torch back its intra-op thread count after UMAP.

    numba's OpenMP threading layer (which UMAP's kernels run on) sets the thread count of
    the OpenMP runtime it shares with torch. Left alone, a notebook that projects and then
    trains would silently train on another number of threads, and CPU results change with
    the reduction order (a resumed run would no longer match an uninterrupted one).
    """
    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch is not None else None
    try:
        yield
    finally:
        if torch is not None and torch.get_num_threads() != before:
            torch.set_num_threads(before)


# ---------------------------------------------------------------------- a run's map
def project_run(
    run: Run,
    *,
    method: ProjectionMethod = "umap",
    epoch: int = -1,
    classes: Iterable[int] | None = None,
    max_points: int | None = None,
    seed: int = 0,
    split: str = "train",
    landmarks: int | None = LANDMARKS,
) -> pd.DataFrame:
    """The map of ``run``'s embeddings kept at ``epoch`` (see the module docstring).

    ``epoch=-1`` means the latest epoch with kept embeddings (for a finished run: the
    last epoch, which is always kept; for a live run possibly an earlier one); other
    negative values count back from the last committed epoch. ``split`` is "train",
    "test" or "all"; ``classes`` filters by the label in effect at that epoch (None: all).
    ``landmarks``: see :func:`project`, which gets the labels in effect at ``epoch`` to
    stratify them, so a class relabelling nearly emptied keeps its cluster. The result
    (columns sample_id, x, y, label, given_label, clean_label; clean_label -1 when
    unknown) is cached under ``RUNDIR/.relabscope-cache/``; a read-only run directory
    just means no caching.
    """
    if method not in PROJECTIONS:
        raise ValueError(f"projection method must be one of {', '.join(PROJECTIONS)}, not {method!r}")
    if split not in (*SPLIT_CODES, "all"):
        raise ValueError(f"split must be train, test or all, not {split!r}")
    e = run.embedding_epoch(epoch)
    wanted = None if classes is None else sorted({int(c) for c in classes})
    samples = run.log.samples
    n_samples = len(samples["key"])
    key = _cache_key(run, method=method, epoch=e, classes=wanted, max_points=max_points,
                     seed=seed, split=split, n_samples=n_samples, landmarks=landmarks)
    path = Path(run.run_dir) / CACHE_DIR / f"projection-{key}.npz"
    cached = _read_cache(path)
    if cached is not None:
        return cached

    label = np.asarray(run.labels()[e], dtype=np.int64)
    keep = np.ones(n_samples, dtype=bool)
    if split != "all":
        keep &= samples["split"] == SPLIT_CODES[split]
    if wanted is not None:
        keep &= np.isin(label, wanted)
    ids = np.flatnonzero(keep)
    ids = ids[stratified_subsample(label[ids], max_points, seed=seed)]
    if len(ids) < 3:
        raise ValueError(
            f"{run.path}: only {len(ids)} samples at epoch {e} for split={split!r}, "
            f"classes={wanted}; a projection needs at least 3")
    embeddings = run.embeddings(e)
    # ids are sorted and unique: when they are 0..k-1 (the training rows, usually) a view will do
    embeddings = embeddings[:len(ids)] if ids[-1] == len(ids) - 1 else embeddings[ids]
    xy = project(embeddings, method=method, seed=seed, landmarks=landmarks, labels=label[ids])
    df = pd.DataFrame({
        "sample_id": ids.astype(np.int64),
        "x": xy[:, 0],
        "y": xy[:, 1],
        "label": label[ids],
        "given_label": np.asarray(samples["given_label"], dtype=np.int64)[ids],
        "clean_label": np.asarray(samples["clean_label"], dtype=np.int64)[ids],
    })
    _write_cache(path, df)
    return df


# ---------------------------------------------------------------------- cache
def _cache_key(run: Run, **params: Any) -> str:
    """A hash of everything the map depends on. The log's identity is cheap to read: its
    creation time and the commit time of the epoch shown (a run restarted into the same
    directory, or an epoch rewritten after a resume, gets a new time)."""
    try:
        umap_version = metadata.version("umap-learn")
    except metadata.PackageNotFoundError:  # a UMAP call fails anyway, t-SNE does not care
        umap_version = "?"
    identity = {
        **params,
        "version": CACHE_VERSION,
        "created": str(run.meta.get("created", "")),
        "done": float(run.log.epoch_array("done", params["epoch"])),
        "sklearn": metadata.version("scikit-learn"),
        "umap": umap_version,
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:20]


def _read_cache(path: Path) -> pd.DataFrame | None:
    """The cached map, or None when absent or unreadable (then it is just recomputed)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return pd.DataFrame({name: z[name] for name in COLUMNS})
    except (OSError, KeyError, ValueError):
        return None


def _write_cache(path: Path, df: pd.DataFrame) -> None:
    """Write atomically, so concurrent readers never see half a file; any failure
    (read-only run directory, full disk) only skips caching."""
    try:
        path.parent.mkdir(exist_ok=True)
        with atomic_write(path) as fh:
            # numeric columns only, read back without pickle
            np.savez(fh, allow_pickle=False, **{name: df[name].to_numpy() for name in COLUMNS})
    except OSError:
        pass
