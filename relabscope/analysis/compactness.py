"""Class compactness: how tightly each class gathers around its center (paper Table 2),
in the model's own units and scale-free.

For every class, over the samples chosen by ``mask``, with ``a_i`` the distance of sample
i's embedding to the mean of "its" class and ``b_i`` its distance to the nearest *other*
class mean:

- ``mean``, ``std``: of ``a_i``, the paper's Table 2. **Scale-dependent**: in the model's
  embedding units, which a center loss shrinks; two models' values do not compare.
- ``ratio``: mean of ``a_i / b_i``. Below 1: nearer its own center than any other.
- ``nearest_own``: share of samples with ``a_i < b_i`` (the nearest class mean is their own).
- ``silhouette``: mean of ``(b_i - a_i) / max(a_i, b_i)``, the centroid ("simplified")
  silhouette, in [-1, 1]; 1 is a tight class far from the others.

The last three are invariant to scaling the embedding (every distance scales alike), so
they compare across methods and runs; tests check that property on a scaled log.

Which label makes a class "its" class (label in effect, given or clean) is the caller's
choice; the centers are whatever ``distances`` was measured to. In a run log those are the
epoch's class means of the training embeddings under the labels in effect, for every
choice of labels: they are the centers the model trained towards and they exist at every
epoch (means under the given or clean labels would need the embeddings, which only some
epochs keep). A given-label table therefore asks "is each sample near the model's center
of the class it was given?".

Every sample of a class is counted, none dropped silently:

- ``n`` counts the class's samples (under the chosen labels) that the epoch saw; a class
  relabelled empty under the labels in effect has no mean, and ``n_without_mean`` counts
  its samples: they get no distance, so the other columns are over ``n - n_without_mean``
  samples (NaN when that is 0). A sample the epoch did not see (no embedding: a NaN row)
  is not counted.
- The nearest *other* class is taken among ``competitors`` (default: every class with a
  mean). A class without a mean cannot be a competitor; ``Comparison`` passes the classes
  with a mean in *both* runs, so a run that emptied a class is not judged against fewer
  competitors than the other (which would make it look more compact).

Caveats:

- The standard deviation is the population one (``ddof=0``), like ``np.std``; the paper
  does not say which it used, and for classes of thousands of samples it makes no
  difference.
- A sample with no finite distance to a competitor gets NaN ``b_i`` and is left out of the
  scale-free columns (only when a single class has a mean). A sample exactly on another
  class's mean (``b_i = 0``) has no ratio; its silhouette is -1.
- Sums run in float64 with a second pass for the spread, so float32 distances of
  AffectNet-sized splits lose no precision.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd


COLUMNS = ["n", "n_without_mean", "mean", "std", "ratio", "nearest_own", "silhouette"]
#: the columns that do not depend on the embedding's scale
SCALE_FREE = ("ratio", "nearest_own", "silhouette")


def classes_with_mean(distances: np.ndarray) -> np.ndarray:
    """``(K,)`` bool: the classes some sample has a finite distance to (a class relabelled
    empty has no mean, so every distance to it is NaN)."""
    return np.isfinite(np.asarray(distances)).any(axis=0)


def compactness(
    distances: np.ndarray, labels: np.ndarray, mask: np.ndarray, class_names: Sequence[str],
    competitors: np.ndarray | None = None,
) -> pd.DataFrame:
    """Per class (index: class name): n and n_without_mean; mean and population std
    (ddof=0) of each measured sample's distance to its own class's center (raw units); and
    the scale-free ratio, nearest_own and silhouette (module docstring).

    Args:
        distances: ``(N, K)`` distances of every sample to every class mean (NaN: no mean).
        labels: ``(N,)`` the label that makes a class a sample's own (-1: none).
        mask: ``(N,)`` the samples to count.
        class_names: the K names.
        competitors: ``(K,)`` bool, the classes a nearest *other* center is taken among
            (default: every class with a mean).

    >>> d = np.array([[1.0, 4.0], [3.0, 2.0], [5.0, 1.0]])
    >>> compactness(d, np.array([0, 0, 1]), np.ones(3, bool), ["a", "b"]).round(3).to_dict("index")["a"]
    {'n': 2, 'n_without_mean': 0, 'mean': 2.0, 'std': 1.0, 'ratio': 0.875, 'nearest_own': 0.5, 'silhouette': 0.208}
    """
    k = len(class_names)
    distances = np.asarray(distances, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    mask = np.asarray(mask, dtype=bool)
    has_mean = classes_with_mean(distances)
    seen = np.isfinite(distances).any(axis=1)
    rows = np.flatnonzero(mask & seen & (labels >= 0) & (labels < k))
    lab = labels[rows]
    n = np.bincount(lab, minlength=k)
    without = np.bincount(lab[~has_mean[lab]], minlength=k)
    own = distances[rows, lab]
    ok = np.isfinite(own)
    rows, lab, own = rows[ok], lab[ok], own[ok]
    measured = np.bincount(lab, minlength=k)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.bincount(lab, weights=own, minlength=k) / measured
        std = np.sqrt(np.bincount(lab, weights=(own - mean[lab]) ** 2, minlength=k) / measured)
    mean[measured == 0] = np.nan
    std[measured == 0] = np.nan
    allowed = has_mean if competitors is None else np.asarray(competitors, bool) & has_mean
    other = nearest_other(np.where(allowed, distances[rows], np.nan), lab)
    free = {name: _class_means(values, lab, k) for name, values in per_sample_scale_free(own, other).items()}
    index = pd.Index(list(class_names), name="class")
    return pd.DataFrame({"n": n.astype(np.int64), "n_without_mean": without.astype(np.int64), "mean": mean,
                         "std": std, **free}, index=index, columns=COLUMNS)


def nearest_other(distances: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Each row's smallest finite distance to a class other than its label (NaN if none)."""
    masked = np.where(np.isfinite(distances), distances, np.inf)
    masked[np.arange(len(labels)), labels] = np.inf
    best = masked.min(axis=1) if masked.shape[1] else np.full(len(labels), np.inf)
    return np.where(np.isfinite(best), best, np.nan)


def per_sample_scale_free(own: np.ndarray, other: np.ndarray) -> dict[str, np.ndarray]:
    """Per sample, from its distance to its own class mean and to the nearest other one:
    ratio ``a/b``, nearest_own ``a < b`` (1.0/0.0) and silhouette ``(b - a)/max(a, b)``;
    NaN where ``b`` is NaN. Every value is unchanged when both distances scale alike."""
    with np.errstate(invalid="ignore", divide="ignore"):
        known = np.isfinite(other)
        ratio = np.where(known & (other > 0), own / other, np.nan)  # on another class's mean: no ratio
        nearest = np.where(known, (own < other).astype(np.float64), np.nan)
        top = np.maximum(own, other)
        silhouette = np.where(known, np.where(top > 0, (other - own) / np.where(top > 0, top, 1.0), 0.0), np.nan)
    return {"ratio": ratio, "nearest_own": nearest, "silhouette": silhouette}


def _class_means(values: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Per class, the mean of the finite ``values`` of its samples (NaN with none)."""
    ok = np.isfinite(values)
    count = np.bincount(labels[ok], minlength=k)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.bincount(labels[ok], weights=values[ok], minlength=k) / count
    out[count == 0] = np.nan
    return out


def overall(table: pd.DataFrame) -> dict[str, float]:
    """One number per column of a :func:`compactness` table, over all its measured samples:
    each class's value weighted by ``n - n_without_mean``."""
    weights = (table["n"] - table["n_without_mean"]).to_numpy(dtype=np.float64)
    out = {}
    for col in ("mean", *SCALE_FREE):
        values = table[col].to_numpy(dtype=np.float64)
        ok = np.isfinite(values) & (weights > 0)
        out[col] = float(np.average(values[ok], weights=weights[ok])) if ok.any() else float("nan")
    return out
