"""Relabel consistency: does the embedding follow the relabel? (the seed paper's claim).

The seed paper argues that after SCN relabels a sample old -> new, the sample's embedding
moves towards the new class: its distance to the new class mean drops relative to its
distance to the old one. With the run log this is a number. For every relabel event in
epoch e we read the sample's distances to the ``old`` and ``new`` class means at epoch e
("before": the epoch whose loss still used ``old``) and at epoch e + 1 ("after": the first
epoch trained on ``new``), and ask whether it now sits closer to ``new`` than to ``old``,
how much the gap d(new) - d(old) changed, and whether a later event undid the relabel.

The raw gap is in the model's embedding units, which differ between methods (a center loss
shrinks the embedding) and grow or shrink during training; ``rel_gap_change`` divides each
gap by d(new) + d(old) first, so runs of different methods compare on one scale.

Caveats:

- Class means are recomputed every epoch from the labels in effect, so "after" compares
  against means that the relabels themselves moved; this is the paper's own definition
  (its Fig. 1 / 4 bars are distances to the epoch's centers).
- Distances at epoch e come from embeddings of epoch e's pass (the training pass, or the
  eval probe pass when the run logged one, see ``epochs/embed_source``). Events of the
  last logged epoch have no "after": their after-distances are NaN and ``closer_to_new``
  is NA. A NaN distance (sample unseen, class empty) also makes ``closer_to_new`` NA.
- ``distance_at`` is called once per needed epoch (each event epoch and the one after), so
  a reader backed by HDF5 reads each ``(N, K)`` distance row once.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd

from relabscope.analysis.flipflops import time_ordered

COLUMNS = ["epoch", "sample_id", "old", "new", "d_old_before", "d_new_before", "d_old_after",
           "d_new_after", "closer_before", "closer_to_new", "gap_change", "rel_gap_change", "undone"]


def _undone(sample: np.ndarray, old: np.ndarray, new: np.ndarray) -> np.ndarray:
    """Whether a later event of the same sample (time order) has ``new == old`` of this one."""
    if len(sample) == 0:
        return np.zeros(0, bool)
    k = int(max(old.max(), new.max())) + 1
    arrive = sample * k + new  # (sample, label) reached by each event
    rev_keys, rev_first = np.unique(arrive[::-1], return_index=True)
    last_arrival = len(arrive) - 1 - rev_first
    want = sample * k + old
    pos = np.minimum(np.searchsorted(rev_keys, want), len(rev_keys) - 1)
    found = rev_keys[pos] == want
    return found & (last_arrival[pos] > np.arange(len(sample)))


def consistency_events(
    events: np.ndarray, distance_at: Callable[[int], np.ndarray], num_epochs: int
) -> pd.DataFrame:
    """One row per relabel event (time order) with distances before and after it.

    ``distance_at(e)`` returns epoch e's ``(N, K)`` distances of every sample to every class
    mean; it is called at most once per epoch. Columns: epoch, sample_id, old, new,
    d_old_before, d_new_before (epoch e), d_old_after, d_new_after (epoch e + 1; NaN for
    the last epoch), closer_before and closer_to_new (d_new < d_old before / after,
    nullable boolean, NA where undefined), gap_change ((d_new - d_old) after minus before;
    negative = moved towards new), rel_gap_change (the same with each gap divided by
    d_new + d_old: scale-free, within [-2, 2]), undone (a later event of the sample returns
    it to ``old``).
    """
    events = time_ordered(events)
    r = len(events)
    epoch = np.asarray(events["epoch"], dtype=np.int64)
    sample = np.asarray(events["sample"], dtype=np.int64)
    old = np.asarray(events["old"], dtype=np.int64)
    new = np.asarray(events["new"], dtype=np.int64)
    d = {name: np.full(r, np.nan) for name in ("d_old_before", "d_new_before", "d_old_after", "d_new_after")}

    if r:
        order = np.argsort(epoch, kind="stable")  # already sorted for time-ordered events
        sorted_epochs = epoch[order]
        event_epochs = np.unique(epoch)
        needed = np.union1d(event_epochs, event_epochs + 1)
        needed = needed[(needed >= 0) & (needed < num_epochs)]
        for e in needed:
            row = np.asarray(distance_at(int(e)))
            for shift, when in ((0, "before"), (1, "after")):
                lo, hi = np.searchsorted(sorted_epochs, [e - shift, e - shift + 1])
                if lo == hi:
                    continue
                idx = order[lo:hi]
                d[f"d_old_{when}"][idx] = row[sample[idx], old[idx]]
                d[f"d_new_{when}"][idx] = row[sample[idx], new[idx]]

    with np.errstate(invalid="ignore", divide="ignore"):
        gap_change = (d["d_new_after"] - d["d_old_after"]) - (d["d_new_before"] - d["d_old_before"])
        rel_gap_change = _relative_gap(d["d_new_after"], d["d_old_after"]) - \
            _relative_gap(d["d_new_before"], d["d_old_before"])
    return pd.DataFrame({
        "epoch": epoch, "sample_id": sample, "old": old, "new": new,
        **d,
        "closer_before": _closer(d["d_new_before"], d["d_old_before"]),
        "closer_to_new": _closer(d["d_new_after"], d["d_old_after"]),
        "gap_change": gap_change,
        "rel_gap_change": rel_gap_change,
        "undone": _undone(sample, old, new),
    }, columns=COLUMNS)


def _closer(d_new: np.ndarray, d_old: np.ndarray) -> pd.arrays.BooleanArray:
    """d_new < d_old, NA where either distance is not finite."""
    closer = pd.array(d_new < d_old, dtype="boolean")
    closer[~(np.isfinite(d_new) & np.isfinite(d_old))] = pd.NA
    return closer


def _relative_gap(d_new: np.ndarray, d_old: np.ndarray) -> np.ndarray:
    """(d_new - d_old) / (d_new + d_old), in [-1, 1]; 0 when both distances are 0."""
    total = d_new + d_old
    return np.where(total > 0, (d_new - d_old) / np.where(total > 0, total, 1.0), 0.0 * total)


def consistency_summary(events_df: pd.DataFrame) -> pd.Series:
    """The table of :func:`consistency_events` in eight numbers.

    events (rows), evaluated (rows with ``closer_to_new`` defined: a next epoch and finite
    distances), closer_before and closer_to_new (fractions of the evaluated rows that sat
    closer to ``new`` before / after the relabel; NaN when none), mean_gap_change and
    mean_rel_gap_change (over evaluated rows whose before-distances are finite too; NaN
    when none), undone (count) and undone_fraction (of all events; NaN when there are none).
    Counts are ints and fractions floats, so the Series has object dtype; an empty table
    gives zeros and NaNs.
    """
    n = len(events_df)
    nan = float("nan")
    evaluated, closer_before, closer_after, mean_gap, mean_rel, undone = 0, nan, nan, nan, nan, 0
    if n:
        evaluated_mask = events_df["closer_to_new"].astype("boolean").notna().to_numpy()
        evaluated = int(evaluated_mask.sum())
        closer_before = _fraction(events_df["closer_before"][evaluated_mask])
        closer_after = _fraction(events_df["closer_to_new"][evaluated_mask])
        mean_gap = _finite_mean(events_df["gap_change"].to_numpy(dtype=float)[evaluated_mask])
        mean_rel = _finite_mean(events_df["rel_gap_change"].to_numpy(dtype=float)[evaluated_mask])
        undone = int(events_df["undone"].astype(bool).sum())
    return pd.Series({
        "events": n,
        "evaluated": evaluated,
        "closer_before": closer_before,
        "closer_to_new": closer_after,
        "mean_gap_change": mean_gap,
        "mean_rel_gap_change": mean_rel,
        "undone": undone,
        "undone_fraction": undone / n if n else nan,
    }, dtype=object, name="consistency")


def _fraction(flags: pd.Series) -> float:
    """Fraction of True among the defined values; NaN when none is defined."""
    known = flags.astype("boolean").dropna()
    return float(known.astype(bool).mean()) if len(known) else float("nan")


def _finite_mean(values: np.ndarray) -> float:
    values = values[np.isfinite(values)]
    return float(values.mean()) if len(values) else float("nan")
