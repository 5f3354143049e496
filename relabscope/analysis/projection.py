"""2-D maps of the logged embeddings (the seed paper's Fig. 5): t-SNE or UMAP.

The paper's figure shows how the training samples of a few classes sit in embedding space
at some epoch, coloured by the label in effect, so that relabelled samples and tight (SCN-C)
or loose (SCN) clusters can be seen. This module turns the embeddings a run log kept
(``embeddings/data``, float16) into such a map:

- ``stratified_subsample`` picks at most N points while keeping each class's share, so a
  subsampled map still shows the real class balance;
- ``project`` runs t-SNE (scikit-learn) or UMAP (umap-learn) deterministically by seed;
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
  a process also pays a few seconds of numba compilation.
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
from typing import Any, Iterable, Iterator, Literal

import numpy as np
import pandas as pd

from relabscope.atomic import atomic_write
from relabscope.runlog.schema import SPLIT_CODES

ProjectionMethod = Literal["umap", "tsne"]
METHODS: tuple[str, ...] = ("umap", "tsne")
CACHE_DIR = ".relabscope-cache"
#: bump when the projection or the cached file's layout changes, to invalidate old files
CACHE_VERSION = 1
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


# ---------------------------------------------------------------------- projection
def project(embeddings: np.ndarray, *, method: ProjectionMethod = "umap", seed: int = 0) -> np.ndarray:
    """``(n, 2)`` float32 coordinates of ``(n, D)`` embeddings; the same seed, the same map.

    t-SNE: scikit-learn's, PCA-initialised, perplexity ``min(30, (n - 1) / 3)`` (it must
    stay below n). UMAP: umap-learn's, ``n_neighbors = min(15, n - 1)``, seeded and hence
    single-threaded. Both are imported only here, since they are slow to import. The
    run log stores float16; both libraries want float32.
    """
    if method not in METHODS:
        raise ValueError(f"projection method must be one of {', '.join(METHODS)}, not {method!r}")
    x = np.asarray(embeddings, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"embeddings must be 2-D (samples x dims), got shape {x.shape}")
    n = x.shape[0]
    if n < 3:
        raise ValueError(f"a {method} projection needs at least 3 points, got {n}")
    bad = int((~np.isfinite(x).all(axis=1)).sum())
    if bad:
        raise ValueError(f"{bad} of {n} embeddings hold NaN or infinite values (a diverged run?)")
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
    run: Any,
    *,
    method: ProjectionMethod = "umap",
    epoch: int = -1,
    classes: Iterable[int] | None = None,
    max_points: int | None = None,
    seed: int = 0,
    split: str = "train",
) -> pd.DataFrame:
    """The map of ``run``'s embeddings kept at ``epoch`` (see the module docstring).

    ``epoch=-1`` means the latest epoch with kept embeddings (for a finished run: the
    last epoch, which is always kept; for a live run possibly an earlier one); other
    negative values count back from the last committed epoch. ``split`` is "train",
    "test" or "all"; ``classes`` filters by the label in effect at that epoch (None: all).
    The result (columns sample_id, x, y, label, given_label, clean_label; clean_label -1
    when unknown) is cached under ``RUNDIR/.relabscope-cache/``; a read-only run directory
    just means no caching.
    """
    if method not in METHODS:
        raise ValueError(f"projection method must be one of {', '.join(METHODS)}, not {method!r}")
    if split not in (*SPLIT_CODES, "all"):
        raise ValueError(f"split must be train, test or all, not {split!r}")
    e = run.embedding_epoch(epoch)
    wanted = None if classes is None else sorted({int(c) for c in classes})
    samples = run.log.samples
    n_samples = len(samples["key"])
    key = _cache_key(run, method=method, epoch=e, classes=wanted, max_points=max_points,
                     seed=seed, split=split, n_samples=n_samples)
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
    xy = project(run.embeddings(e)[ids], method=method, seed=seed)
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
def _cache_key(run: Any, **params: Any) -> str:
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
