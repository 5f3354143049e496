"""Flip-flops: relabels that send a sample back to a label it held before (paper Fig. 3).

A sample's label history is its given label followed by the new label of each of its
relabel events, in order. An event is a flip-flop when its new label already appears
earlier in that history. Every label a sample held is the ``old`` label of the event that
left it, so "held before event j" is exactly "``old`` of some event i <= j of the same
sample" - which lets the whole count run vectorised over the event table.
"""

from __future__ import annotations

import numpy as np


def flipflop_mask(sample: np.ndarray, old: np.ndarray, new: np.ndarray) -> np.ndarray:
    """For relabel events in time order, whether each returns to a previously held label."""
    sample = np.asarray(sample, dtype=np.int64)
    old = np.asarray(old, dtype=np.int64)
    new = np.asarray(new, dtype=np.int64)
    if len(sample) == 0:
        return np.zeros(0, bool)
    k = int(max(old.max(), new.max())) + 1
    order = np.arange(len(sample))
    # first event index at which each (sample, label) pair was held (as an old label)
    held_key = sample * k + old
    keys, first = np.unique(held_key, return_index=True)
    want = sample * k + new
    pos = np.searchsorted(keys, want)
    pos_ok = np.minimum(pos, len(keys) - 1)
    found = keys[pos_ok] == want
    return found & (first[pos_ok] <= order)


def count_flipflops(sample: np.ndarray, old: np.ndarray, new: np.ndarray) -> int:
    """Number of flip-flop events."""
    return int(flipflop_mask(sample, old, new).sum())
