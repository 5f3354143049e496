"""One sample's distances to every class mean over time (paper Fig. 1 and Fig. 4).

The paper shows, for a relabelled sample, bars of its distance to each class center before
and after the relabel, marking the given (ground-truth) label and the label in effect.
:func:`key_epochs` picks the epochs worth showing and :func:`distance_profile` lays the
distances out in long format (one row per epoch and class), ready for a bar chart.

Caveats:

- "Before" is the epoch of the sample's first relabel: that epoch's loss (and embedding)
  still used the old label. "After" is the next epoch, the first trained on the new
  label; it does not exist when the first relabel happened in the last epoch.
- Centers are the epoch's class means under the labels in effect, so they move with the
  relabels themselves (see ``relabscope.analysis.consistency``).
- ``label_in_effect`` is -1 and ``is_effect`` False in epochs where the sample was not seen.
- ``distance`` is in the model's embedding units, which differ between models (a center
  loss shrinks them) and drift during training; ``relative_distance`` divides it by the
  epoch's :func:`center_spread`, the mean distance between two class means, so bars of two
  runs (or two epochs) compare.
"""

from __future__ import annotations

from typing import Callable, Iterable, Sequence

import numpy as np
import pandas as pd


def key_epochs(events: np.ndarray, sample_id: int, num_epochs: int) -> list[int]:
    """Epochs that tell a sample's story, sorted and deduplicated.

    Relabelled sample: its first relabel's epoch (before), the epoch after (if logged) and
    the last epoch. Never relabelled: the first and the last epoch. No epochs: ``[]``.
    """
    if num_epochs <= 0:
        return []
    mine = np.asarray(events["epoch"], dtype=np.int64)[np.asarray(events["sample"]) == sample_id]
    if len(mine):
        first = int(mine.min())
        wanted = [first, first + 1, num_epochs - 1]
    else:
        wanted = [0, num_epochs - 1]
    return sorted({e for e in wanted if 0 <= e < num_epochs})


def distance_profile(
    sample_id: int,
    epochs: Iterable[int],
    distance_row_at: Callable[[int], np.ndarray],
    labels_in_effect: np.ndarray,
    given: int,
    clean: int | None,
    class_names: Sequence[str],
    spread_at: Callable[[int], float] | None = None,
) -> pd.DataFrame:
    """Long table of one sample's distance to each class mean at ``epochs``.

    ``distance_row_at(e)`` gives the sample's ``(K,)`` distances at epoch e (called once
    per distinct epoch); ``labels_in_effect`` is its ``(E,)`` column of ``epochs/label``
    and fixes the number of epochs, so negative epochs count from the end;
    ``spread_at(e)`` is epoch e's :func:`center_spread` (NaN relative distances without it).
    Columns: epoch, class_id, class_name, distance (raw units), relative_distance
    (distance / center spread: scale-free), is_given, is_effect, is_clean (False when the
    clean label is unknown), label_in_effect. Epochs keep the caller's order, duplicates
    dropped.
    """
    labels_in_effect = np.asarray(labels_in_effect, dtype=np.int64)
    num_epochs = len(labels_in_effect)
    k = len(class_names)
    resolved: list[int] = []
    for e in epochs:
        e = int(e)
        r = e + num_epochs if e < 0 else e
        if not 0 <= r < num_epochs:
            raise IndexError(f"epoch {e} out of range: {num_epochs} epochs (sample {sample_id})")
        if r not in resolved:
            resolved.append(r)
    classes = np.arange(k)
    clean_id = -1 if clean is None or clean < 0 else int(clean)
    parts = []
    for e in resolved:
        row = np.asarray(distance_row_at(e), dtype=np.float64).reshape(-1)
        if len(row) != k:
            raise ValueError(f"distance row of epoch {e} has {len(row)} classes, expected {k}")
        effect = int(labels_in_effect[e])
        spread = spread_at(e) if spread_at is not None else float("nan")
        parts.append(pd.DataFrame({
            "epoch": np.full(k, e, np.int64),
            "class_id": classes,
            "class_name": list(class_names),
            "distance": row,
            "relative_distance": row / spread if spread > 0 else np.full(k, np.nan),
            "is_given": classes == given,
            "is_effect": classes == effect,
            "is_clean": classes == clean_id,
            "label_in_effect": np.full(k, effect, np.int64),
        }))
    if not parts:
        return pd.DataFrame({
            "epoch": np.zeros(0, np.int64), "class_id": np.zeros(0, np.int64),
            "class_name": np.zeros(0, object), "distance": np.zeros(0), "relative_distance": np.zeros(0),
            "is_given": np.zeros(0, bool), "is_effect": np.zeros(0, bool),
            "is_clean": np.zeros(0, bool), "label_in_effect": np.zeros(0, np.int64)})
    return pd.concat(parts, ignore_index=True)


def center_spread(means: np.ndarray) -> float:
    """The mean Euclidean distance between two of an epoch's class means (the finite ones):
    the unit of relative distances, so that 1 is "as far as two class centers typically
    are" in any model. NaN with fewer than two class means.

    >>> center_spread(np.array([[0.0, 0.0], [3.0, 4.0], [np.nan, np.nan]]))
    5.0
    """
    means = np.asarray(means, dtype=np.float64)
    means = means[np.isfinite(means).all(axis=1)]
    if len(means) < 2:
        return float("nan")
    diff = means[:, None, :] - means[None, :, :]
    pair = np.sqrt((diff ** 2).sum(axis=-1))
    return float(pair[np.triu_indices(len(means), 1)].mean())
