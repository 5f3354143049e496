"""Class compactness: how tightly each class gathers around its center (paper Table 2).

For every class, the mean and standard deviation of ``distances[i, labels[i]]``, the
distance of each sample's embedding to the mean of "its" class, over the samples chosen by
``mask``. Which label makes a class "its" class (label in effect, given or clean) is the
caller's choice; the centers are whatever ``distances`` was measured to (in a run log: the
epoch's class means under the labels in effect).

Caveats:

- The standard deviation is the population one (``ddof=0``), like ``np.std``; the paper
  does not say which it used, and for classes of thousands of samples it makes no
  difference.
- Samples with a negative label (unseen) or a non-finite distance (no embedding, empty
  class) are left out; a class left with no samples gets ``n = 0`` and NaN mean and std.
- Sums run in float64 with a second pass for the spread, so float32 distances of
  AffectNet-sized splits lose no precision.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd


def compactness(
    distances: np.ndarray, labels: np.ndarray, mask: np.ndarray, class_names: Sequence[str]
) -> pd.DataFrame:
    """Per class (index: class name): n, mean and population std (ddof=0) of each masked
    sample's distance to its own class's center."""
    k = len(class_names)
    distances = np.asarray(distances)
    labels = np.asarray(labels, dtype=np.int64)
    mask = np.asarray(mask, dtype=bool)
    rows = np.flatnonzero(mask & (labels >= 0) & (labels < k))
    lab = labels[rows]
    d = distances[rows, lab].astype(np.float64)
    ok = np.isfinite(d)
    lab, d = lab[ok], d[ok]
    n = np.bincount(lab, minlength=k)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.bincount(lab, weights=d, minlength=k) / n
        std = np.sqrt(np.bincount(lab, weights=(d - mean[lab]) ** 2, minlength=k) / n)
    mean[n == 0] = np.nan
    std[n == 0] = np.nan
    index = pd.Index(list(class_names), name="class")
    return pd.DataFrame({"n": n.astype(np.int64), "mean": mean, "std": std}, index=index)
