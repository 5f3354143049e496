"""Class balance under relabelling: how many training samples each class holds over time.

Relabelling moves samples between classes, and nothing stops a method from moving a whole
class away: on real crowd-labelled faces SCN-C relabelled every "anger" sample to other
classes. A flip-flop count then still looks fine, while the class has no samples, no class
mean and (in the run log) NaN distances for every sample. These functions make that
visible: counts per epoch and class, a given -> final label flow, and warnings for classes
that shrank below a fraction of their given size or were emptied.

Counting convention: row ``e`` of ``labels`` is what epoch e's loss used for each sample,
i.e. the label in effect at the *start* of epoch e (a sample is relabelled only when it is
seen, once per epoch). The labels after the last epoch's relabels (``final``) are one more
state, counted as epoch ``E`` (= the number of committed epochs): the labels a further
epoch would train on. A drop first seen at epoch ``e`` was therefore caused by the
relabels of epoch ``e - 1``, which is the epoch warnings name.

Caveats:

- Only training samples count (test samples keep their given labels).
- Samples an epoch did not see (label -1: a log written by hand may skip some) are not
  counted. Unreadable images are not such samples: one found unreadable before training
  is dropped from the data (it is not in the log at all), and one that becomes unreadable
  while images stream is trained as a blank image that epoch (``epochs/unreadable``
  counts them), so it is seen and counted.
- Clean counts are per clean label and do not change over epochs; they are NaN when the
  data set does not know its clean labels.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

#: a class that falls below this fraction of its given size is reported
SHRINK_THRESHOLD = 0.5


class ClassBalanceWarning(UserWarning):
    """Relabelling emptied a class or shrank it below ``SHRINK_THRESHOLD`` of its given
    size (``warnings.simplefilter("ignore", ClassBalanceWarning)`` silences it)."""

COUNT_COLUMNS = ["epoch", "class_id", "class_name", "count", "given", "clean", "fraction_of_given"]
WARNING_COLUMNS = ["class_id", "class_name", "kind", "given", "lowest", "lowest_epoch", "below_epoch",
                   "emptied_epoch", "final", "message"]


def _bincount(labels: np.ndarray, k: int) -> np.ndarray:
    labels = np.asarray(labels, dtype=np.int64)
    return np.bincount(labels[(labels >= 0) & (labels < k)], minlength=k)


def class_counts(
    labels: np.ndarray,
    final: np.ndarray,
    given: np.ndarray,
    clean: np.ndarray | None,
    class_names: Sequence[str],
) -> pd.DataFrame:
    """Per epoch and class: training samples under the labels in effect.

    ``labels`` is ``(E, n)``: the labels in effect per epoch of the ``n`` training samples;
    ``final`` their ``(n,)`` labels after the last epoch's relabels (counted as epoch E);
    ``given`` and ``clean`` (or None) their ``(n,)`` given and clean labels. Returns one row
    per (epoch, class), epochs 0..E, in class-id order within an epoch: epoch, class_id,
    class_name, count, given (the class's given size), clean (its clean size; NaN when
    unknown), fraction_of_given (count / given; NaN for a class given no samples).

    >>> t = class_counts(np.array([[0, 0, 1]]), np.array([0, 0, 0]), np.array([0, 1, 1]), None, ["a", "b"])
    >>> t[["epoch", "class_name", "count", "given"]].to_string(index=False)
    ' epoch class_name  count  given\\n     0          a      2      1\\n     0          b      1      2\\n     1          a      3      1\\n     1          b      0      2'
    """
    k = len(class_names)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1, len(given))
    states = np.vstack([labels, np.asarray(final, dtype=np.int64)[None, :]])
    counts = np.stack([_bincount(row, k) for row in states])  # (E + 1, K)
    given_n = _bincount(given, k)
    clean_n = _bincount(clean, k).astype(float) if clean is not None and (np.asarray(clean) >= 0).any() \
        else np.full(k, np.nan)
    e = counts.shape[0]
    with np.errstate(invalid="ignore", divide="ignore"):
        fraction = np.where(given_n > 0, counts / np.maximum(given_n, 1), np.nan)
    return pd.DataFrame({
        "epoch": np.repeat(np.arange(e), k),
        "class_id": np.tile(np.arange(k), e),
        "class_name": np.tile(np.asarray(list(class_names), dtype=object), e),
        "count": counts.reshape(-1).astype(np.int64),
        "given": np.tile(given_n, e).astype(np.int64),
        "clean": np.tile(clean_n, e),
        "fraction_of_given": fraction.reshape(-1),
    }, columns=COUNT_COLUMNS)


def class_warnings(counts: pd.DataFrame, threshold: float = SHRINK_THRESHOLD) -> pd.DataFrame:
    """The classes that relabelling emptied or shrank below ``threshold`` of their given size.

    ``counts`` is :func:`class_counts`' table. One row per such class (class-id order):
    class_id, class_name, kind ("emptied" or "shrunk"), given, lowest (its smallest count),
    lowest_epoch, below_epoch (the epoch whose relabels first took it below the threshold),
    emptied_epoch (whose relabels first left it with no sample; -1 if never), final (its
    count after the last epoch) and a one-line message naming all of it. Epochs are those
    of the relabel events, as in ``Run.relabel_events()``.

    >>> t = class_counts(np.array([[0, 1, 1], [0, 0, 1]]), np.array([0, 0, 0]), np.array([0, 1, 1]), None, ["a", "b"])
    >>> class_warnings(t)["message"].tolist()
    ["class 'b' was emptied by relabelling in epoch 1: 2 given, 0 after the last epoch"]
    """
    rows = []
    for _, part in counts.groupby(["class_id", "class_name"], sort=True):
        part = part.sort_values("epoch")
        cid, name = int(part["class_id"].iloc[0]), str(part["class_name"].iloc[0])
        given = int(part["given"].iloc[0])
        if given == 0:
            continue
        count = part["count"].to_numpy()
        epochs = part["epoch"].to_numpy()
        below = np.flatnonzero(count < threshold * given)
        if not len(below):
            continue
        empty = np.flatnonzero(count == 0)
        low = int(np.argmin(count))
        # a state at epoch e (> 0) follows the relabels of epoch e - 1
        below_epoch = max(int(epochs[below[0]]) - 1, 0)
        emptied_epoch = max(int(epochs[empty[0]]) - 1, 0) if len(empty) else -1
        final = int(count[-1])
        kind = "emptied" if len(empty) else "shrunk"
        rows.append({"class_id": cid, "class_name": name, "kind": kind, "given": given,
                     "lowest": int(count[low]), "lowest_epoch": max(int(epochs[low]) - 1, 0),
                     "below_epoch": below_epoch, "emptied_epoch": emptied_epoch, "final": final,
                     "message": _message(name, kind, given, int(count[low]), below_epoch, emptied_epoch,
                                         final, threshold)})
    return pd.DataFrame(rows, columns=WARNING_COLUMNS).astype(
        {"class_id": np.int64, "given": np.int64, "lowest": np.int64, "lowest_epoch": np.int64,
         "below_epoch": np.int64, "emptied_epoch": np.int64, "final": np.int64})


def _message(name: str, kind: str, given: int, lowest: int, below_epoch: int, emptied_epoch: int, final: int,
             threshold: float) -> str:
    if kind == "emptied":
        return (f"class {name!r} was emptied by relabelling in epoch {emptied_epoch}: "
                f"{given} given, {final} after the last epoch")
    return (f"class {name!r} shrank below {threshold:.0%} of its given size in epoch {below_epoch}: "
            f"{given} given, as few as {lowest}, {final} after the last epoch")


def label_flow(given: np.ndarray, final: np.ndarray, class_names: Sequence[str]) -> pd.DataFrame:
    """Given label (rows) -> label in effect after the last epoch (columns): sample counts.

    >>> label_flow(np.array([0, 1, 1]), np.array([0, 0, 1]), ["a", "b"]).to_numpy().tolist()
    [[1, 0], [1, 1]]
    """
    k = len(class_names)
    given = np.asarray(given, dtype=np.int64)
    final = np.asarray(final, dtype=np.int64)
    ok = (given >= 0) & (given < k) & (final >= 0) & (final < k)
    m = np.bincount(given[ok] * k + final[ok], minlength=k * k).reshape(k, k)
    names = list(class_names)
    return pd.DataFrame(m, index=pd.Index(names, name="given"), columns=pd.Index(names, name="final"))


def empty_classes(class_count_row: np.ndarray, class_names: Sequence[str]) -> list[str]:
    """Names of the classes with no sample in one epoch's ``epochs/class_count`` row: those
    have no class mean, so every distance to them is NaN."""
    row = np.asarray(class_count_row)
    return [str(class_names[i]) for i in np.flatnonzero(row == 0).tolist()]
