"""Flip-flops: relabels that send a sample back to a label it held before (paper Fig. 3).

A sample's label history is its given label followed by the new label of each of its
relabel events, in order. An event is a flip-flop when its new label already appears
earlier in that history. Every label a sample held is the ``old`` label of the event that
left it, so "held before event j" is exactly "``old`` of some event i <= j of the same
sample" - which lets the whole count run vectorised over the event table.

Besides the count, this module builds the per-sample table behind Fig. 3 (how often and
between which classes each training sample moved, how many epochs it spent in each class),
the class-by-class matrix of A -> B -> A cycles, the labels in effect after the last epoch
and the number of relabels per epoch.

Caveats:

- Events are taken in time order, i.e. sorted by (epoch, step); the log already stores them
  so, and tables that are not get stably re-sorted first.
- The history uses the event table only (the given label is the ``old`` of a sample's first
  event). That equals ``samples/given_label`` in any log the writer produced, but a table
  assembled by hand may disagree; nothing here cross-checks them.
- Everything is vectorised (sorting, ``np.unique``, ``np.bincount``): no Python loop over
  samples or events, so AffectNet-sized logs (~3e5 samples, ~1e6 events) take well under a
  second or two.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd


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


# ---------------------------------------------------------------------- helpers
def time_ordered(events: np.ndarray) -> np.ndarray:
    """``events`` sorted by (epoch, step), stably; returned as is when already sorted.

    Every count here depends on event order, and the log's order is time order; this only
    guards tables that were filtered, concatenated or built by hand.
    """
    if len(events) < 2:
        return events
    epoch = np.asarray(events["epoch"], dtype=np.int64)
    step = np.asarray(events["step"], dtype=np.int64)
    d_epoch = np.diff(epoch)
    if np.all((d_epoch > 0) | ((d_epoch == 0) & (np.diff(step) >= 0))):
        return events
    return events[np.lexsort((step, epoch))]


def _last_index_per_key(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct values of ``keys`` and the index of each one's LAST occurrence."""
    rev_unique, rev_first = np.unique(keys[::-1], return_index=True)
    return rev_unique, len(keys) - 1 - rev_first


def _columns_of(sample: np.ndarray, sample_ids: np.ndarray) -> np.ndarray:
    """Column position of each run-wide sample id in ``sample_ids`` (-1: not a column).

    A lookup table over the id range: ids are rows of the run's sample table, so the
    table is at most N entries and each event costs one gather.
    """
    sample_ids = np.asarray(sample_ids, dtype=np.int64)
    sample = np.asarray(sample, dtype=np.int64)
    if len(sample_ids) == 0 or len(sample) == 0:
        return np.full(len(sample), -1, np.int64)
    size = int(max(sample_ids.max(), sample.max())) + 1
    lut = np.full(size, -1, np.int64)
    lut[sample_ids] = np.arange(len(sample_ids))
    out = np.full(len(sample), -1, np.int64)
    ok = sample >= 0
    out[ok] = lut[sample[ok]]
    return out


# ---------------------------------------------------------------------- per epoch / final
def final_labels(last_labels: np.ndarray, events: np.ndarray, *, last_epoch: int) -> np.ndarray:
    """Labels in effect after the last committed epoch, that epoch's relabels applied.

    ``last_labels`` is row ``last_epoch`` of ``epochs/label`` (the labels that epoch's loss
    used), so relabels of earlier epochs are already in it and only events with
    ``epoch == last_epoch`` are applied; a sample relabelled more than once in that epoch
    ends on its last event's new label. ``last_epoch`` is passed, not inferred from the
    events, because the last epoch may well have no events at all. With no committed
    epoch pass the given labels and ``last_epoch=-1``.
    """
    out = np.array(last_labels, dtype=np.int64, copy=True)
    if len(events) == 0:
        return out
    events = time_ordered(events)
    sel = np.asarray(events["epoch"]) == last_epoch
    if not sel.any():
        return out
    sample = np.asarray(events["sample"][sel], dtype=np.int64)
    new = np.asarray(events["new"][sel], dtype=np.int64)
    ids, last = _last_index_per_key(sample)
    out[ids] = new[last]
    return out


def relabels_per_epoch(event_epochs: np.ndarray, num_epochs: int) -> np.ndarray:
    """Number of relabel events in each of ``num_epochs`` epochs (events outside are ignored)."""
    ep = np.asarray(event_epochs, dtype=np.int64)
    ep = ep[(ep >= 0) & (ep < num_epochs)]
    return np.bincount(ep, minlength=num_epochs)[:num_epochs].astype(np.int64)


# ---------------------------------------------------------------------- Fig. 3 table
def flipflop_table(
    *,
    labels: np.ndarray,
    events: np.ndarray,
    given: np.ndarray,
    clean: np.ndarray | None,
    sample_ids: np.ndarray,
    class_names: Sequence[str],
) -> pd.DataFrame:
    """One row per training sample: how its label moved (paper Fig. 3).

    ``labels`` are the label-in-effect rows ``(E, n)`` of the ``n`` training samples whose
    run-wide ids are ``sample_ids``; ``events`` is the run's event table (``sample`` holds
    run-wide ids; events of other samples are ignored). Columns:

    - ``sample_id``, ``given_label``, ``clean_label`` (-1 unknown);
    - ``final_label``: the new label of the sample's last event, else its given label
      (from the event history, so a sample unseen in the last epoch still has one);
    - ``changes``: relabel events of the sample; ``flipflops``: those returning to a label
      held before (module docstring); ``labels_visited``: distinct labels held, the final
      one included (1 for a never-relabelled sample);
    - ``epochs_<class>``: epochs whose label in effect was the class (unseen epochs, label
      -1, count for no class);
    - ``first_relabel_epoch``, ``last_relabel_epoch``: -1 when never relabelled;
    - ``final_is_clean``: nullable boolean, NA where the clean label is unknown.
    """
    labels = np.asarray(labels)
    sample_ids = np.asarray(sample_ids, dtype=np.int64)
    given = np.asarray(given, dtype=np.int64)
    n = len(sample_ids)
    if labels.ndim != 2 or labels.shape[1] != n:
        raise ValueError(f"labels must be (epochs, {n}), got {labels.shape}")
    clean_arr = np.full(n, -1, np.int64) if clean is None else np.asarray(clean, dtype=np.int64)

    events = time_ordered(events)
    col = _columns_of(np.asarray(events["sample"], dtype=np.int64), sample_ids)
    keep = col >= 0
    # group each sample's events together, time order kept within the group
    order = np.flatnonzero(keep)[np.argsort(col[keep], kind="stable")]
    ev_col = col[order]
    ev_old = np.asarray(events["old"], dtype=np.int64)[order]
    ev_new = np.asarray(events["new"], dtype=np.int64)[order]
    ev_epoch = np.asarray(events["epoch"], dtype=np.int64)[order]

    changes = np.bincount(ev_col, minlength=n).astype(np.int64)
    final = given.copy()
    first_epoch = np.full(n, -1, np.int64)
    last_epoch = np.full(n, -1, np.int64)
    visited = np.ones(n, np.int64)
    flips = np.zeros(n, np.int64)
    if len(ev_col):
        starts = np.flatnonzero(np.r_[True, ev_col[1:] != ev_col[:-1]])
        ends = np.r_[starts[1:], len(ev_col)] - 1
        cols = ev_col[starts]
        final[cols] = ev_new[ends]
        first_epoch[cols] = ev_epoch[starts]
        last_epoch[cols] = ev_epoch[ends]
        group = np.repeat(np.arange(len(starts)), ends - starts + 1)
        # per label (a loop over the few classes, vectorised over events): an event is a
        # flip-flop when its new label was some event's old label at or before it within
        # the sample's group; a label was visited when it was an old or a new label
        is_flip = np.zeros(len(ev_col), bool)
        n_visited = np.zeros(len(starts), np.int64)
        for c in range(int(max(ev_old.max(), ev_new.max())) + 1):
            was_old = ev_old == c
            is_new = ev_new == c
            if not (was_old.any() or is_new.any()):
                continue
            held = np.cumsum(was_old)
            before_group = np.r_[0, held][starts]  # held count before each group starts
            is_flip |= is_new & (held > before_group[group])
            n_visited += np.bincount(group, weights=was_old | is_new, minlength=len(starts)) > 0
        flips[cols] = np.bincount(group, weights=is_flip, minlength=len(starts)).astype(np.int64)
        visited[cols] = n_visited

    data: dict[str, object] = {
        "sample_id": sample_ids,
        "given_label": given,
        "clean_label": clean_arr,
        "final_label": final,
        "changes": changes.astype(np.int64),
        "flipflops": flips,
        "labels_visited": visited,
    }
    for c, name in enumerate(class_names):
        data[f"epochs_{name}"] = np.count_nonzero(labels == c, axis=0).astype(np.int64)
    data["first_relabel_epoch"] = first_epoch
    data["last_relabel_epoch"] = last_epoch
    known = clean_arr >= 0
    final_is_clean = pd.array(final == clean_arr, dtype="boolean")
    final_is_clean[~known] = pd.NA
    data["final_is_clean"] = final_is_clean
    return pd.DataFrame(data)


# ---------------------------------------------------------------------- A -> B -> A cycles
def oscillation_cycles(events: np.ndarray, num_classes: int) -> dict[str, np.ndarray]:
    """Every A -> B -> A cycle: arrays ``sample``, ``a``, ``b`` and ``epoch`` (of the
    relabel that returned to A), one entry per cycle.

    Each sample's history (its first event's ``old``, then every ``new`` in time order) is
    scanned for consecutive triples a -> b -> a. A sample going A -> B -> A -> B holds two
    triples, (A,B,A) and (B,A,B).
    """
    events = time_ordered(events)
    sample = np.asarray(events["sample"], dtype=np.int64)
    order = np.argsort(sample, kind="stable")  # per sample, time order kept
    s = sample[order]
    old = np.asarray(events["old"], dtype=np.int64)[order]
    new = np.asarray(events["new"], dtype=np.int64)[order]
    epoch = np.asarray(events["epoch"], dtype=np.int64)[order]
    first = np.r_[True, s[1:] != s[:-1]]
    # label held before each event, by the history's definition
    before = np.where(first, old, np.r_[-1, new[:-1]]) if len(s) else old
    # triple (before_j, new_j, new_{j+1}) for consecutive events j, j+1 of one sample
    same = s[1:] == s[:-1]
    a, b, c = before[:-1][same], new[:-1][same], new[1:][same]
    cyc = (a == c) & (a >= 0) & (a < num_classes) & (b >= 0) & (b < num_classes)
    return {"sample": s[1:][same][cyc], "a": a[cyc], "b": b[cyc], "epoch": epoch[1:][same][cyc]}


def oscillation_matrix(events: np.ndarray, num_classes: int) -> np.ndarray:
    """``(K, K)`` counts of A -> B -> A cycles (:func:`oscillation_cycles`): rows A,
    columns B. A -> B -> A -> B counts once at [A, B] and once at [B, A]."""
    cycles = oscillation_cycles(events, num_classes)
    counts = np.bincount(cycles["a"] * num_classes + cycles["b"], minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).astype(np.int64)
