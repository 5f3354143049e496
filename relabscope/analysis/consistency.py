"""Relabel consistency: does the embedding follow the relabel? (the seed paper's claim).

The seed paper argues that after SCN relabels a sample old -> new, the sample's embedding
moves towards the new class: its distance to the new class mean drops relative to its
distance to the old one. With the run log this is a number, and this module makes sure the
number measures the relabel and not when the embedding happened to be read.

**When has an embedding trained on ``new``?** SCN's rule relabels a sample inside the
training step whose loss still used ``old`` (forward, loss, optimiser step, then the rule),
so the sample's first update under ``new`` happens when it is next seen, in epoch e + 1.
What an epoch's logged embedding has seen depends on the pass that produced it
(``epochs/embed_source``):

- **training pass** (the default): epoch a's embedding of a sample comes from the forward
  pass of its own epoch-a step, before that step's update. Epoch e + 1's embedding has
  therefore seen no update under ``new``; epoch e + 2's is the first that has
  (``FIRST_TRAINED_LAG["train"] == 2``).
- **probe pass** (``--probe-every``): an eval-mode pass over the training images after the
  epoch's training, so epoch e + 1's probe already follows one update under ``new``
  (``FIRST_TRAINED_LAG["probe"] == 1``).

For an event in epoch e, **before** reads epoch e (for the training pass that is the very
augmented view whose prediction triggered the relabel) and **after** reads the first epoch
a >= e + FIRST_TRAINED_LAG[pass] whose embeddings come from the *same kind of pass* as
epoch e's. An event without such an epoch (too close to the end of the log, or no later
epoch of that pass) has NA, not a guess. The table says which pass and epoch each came
from.

*The old definition* (relabscope before this module's rewrite) read "after" at epoch e + 1
whatever the pass. With training-pass embeddings that is an embedding computed before the
sample's first update under ``new``: it measured how the relabelled sample looks to a
model one epoch older, not whether it followed its new label; and because "before" is the
view that triggered the relabel, part of the drop from "closer before" to "closer after"
is regression to the mean. ``consistency_by_lag`` keeps that reading visible as lag 1.

**Control group.** To see that artefact rather than argue it, every relabelled sample is
set against samples the rule did *not* relabel although it nearly did: in a relabelling
epoch e, training samples whose margin ``p_max - p_label`` (the logged probabilities of
epoch e, against the label in effect) was positive and at most the relabel threshold but
within ``band`` of it, followed the same way with ``old`` = their label in effect and
``new`` = their argmax class. They are matched to the relabelled events on the class pair
(``match="pair"``) or on the class pair and epoch (``"pair_epoch"``): the control fraction
is the mean of the per-stratum control fractions weighted by the relabelled events of each
stratum, over strata that have both, and the compared figure ``closer_vs_control`` is the
relabelled fraction minus the control fraction over those same strata.

The raw gap is in the model's embedding units, which differ between methods (a center loss
shrinks the embedding) and grow or shrink during training; ``rel_gap_change`` divides each
gap by d(new) + d(old) first, so runs of different methods compare on one scale.

Caveats:

- Class means are recomputed every epoch from the labels in effect, so "after" compares
  against means that the relabels themselves moved; this is the paper's own definition
  (its Fig. 1 / 4 bars are distances to the epoch's centers).
- A NaN distance (sample unseen, class relabelled empty) makes a comparison NA.
- The relabel threshold of the control is the run's ``delta`` (SCN's rule); a log without
  one (written by another method) uses the smallest margin among its relabel events.
  With ``relabel_scope="low"`` a sample above the threshold may stay unrelabelled (not in
  the low-importance group); it is not "just below" and so not in the control.
- Every function reads each epoch's ``(N, K)`` distances at most once per call.
"""

from __future__ import annotations

from typing import Callable, Literal, Sequence

import numpy as np
import pandas as pd

from relabscope.analysis.flipflops import time_ordered

#: epochs between a relabel and the first logged embedding that has seen an update under
#: ``new``, by the pass that produced the embeddings (module docstring)
FIRST_TRAINED_LAG: dict[str, int] = {"train": 2, "probe": 1}
#: the control group's margins lie in [threshold - CONTROL_BAND, threshold]
CONTROL_BAND = 0.1
Match = Literal["pair", "pair_epoch"]
MATCHES: tuple[str, ...] = ("pair", "pair_epoch")

MEASURED = ["before_pass", "after_epoch", "after_pass", "d_old_before", "d_new_before", "d_old_after",
            "d_new_after", "closer_before", "closer_to_new", "gap_change", "rel_gap_change"]
COLUMNS = ["epoch", "sample_id", "old", "new", *MEASURED, "undone"]
CONTROL_COLUMNS = ["epoch", "sample_id", "old", "new", "margin", *MEASURED]
SUMMARY = ["events", "evaluated", "closer_before", "closer_to_new", "control", "control_closer",
           "matched_events", "closer_vs_control", "mean_gap_change", "mean_rel_gap_change", "undone",
           "undone_fraction"]
LAG_COLUMNS = ["pass", "lag", "trained_on_new", "events", "closer_to_new", "control", "control_closer",
               "matched_events", "closer_vs_control"]

DistanceAt = Callable[[int], np.ndarray]


# ---------------------------------------------------------------------- when "after" is read
def after_epochs(epochs: np.ndarray, sources: Sequence[str]) -> np.ndarray:
    """Per relabel epoch e, the epoch whose embeddings are "after" it: the first epoch
    a >= e + FIRST_TRAINED_LAG[pass of e] produced by the same kind of pass; -1 where none.

    >>> after_epochs(np.array([0, 1, 2, 3]), ["train"] * 4).tolist()
    [2, 3, -1, -1]
    >>> after_epochs(np.array([0, 1, 2]), ["probe", "train", "probe"]).tolist()  # same pass only
    [2, -1, -1]
    """
    src = np.asarray(sources, dtype=object)
    epochs = np.asarray(epochs, dtype=np.int64)
    out = np.full(len(epochs), -1, dtype=np.int64)
    for e in np.unique(epochs):
        if not 0 <= e < len(src):
            continue
        start = int(e) + FIRST_TRAINED_LAG[str(src[e])]
        later = np.flatnonzero(src[start:] == src[e])
        if len(later):
            out[epochs == e] = start + int(later[0])
    return out


def measure(epoch: np.ndarray, sample: np.ndarray, old: np.ndarray, new: np.ndarray,
            distance_at: DistanceAt, sources: Sequence[str]) -> dict[str, object]:
    """The columns of ``MEASURED`` for followed samples (relabel events or controls): the
    distances to the ``old`` and ``new`` class means at epoch ``epoch`` (before) and at its
    :func:`after_epochs` epoch, and what they say."""
    r = len(epoch)
    after = after_epochs(epoch, sources)
    d = {name: np.full(r, np.nan) for name in ("d_old_before", "d_new_before", "d_old_after", "d_new_after")}
    for e in np.union1d(np.unique(epoch), np.unique(after[after >= 0])):
        if not 0 <= e < len(sources):
            continue
        row = np.asarray(distance_at(int(e)))
        for when, idx in (("before", np.flatnonzero(epoch == e)), ("after", np.flatnonzero(after == e))):
            d[f"d_old_{when}"][idx] = row[sample[idx], old[idx]]
            d[f"d_new_{when}"][idx] = row[sample[idx], new[idx]]
    with np.errstate(invalid="ignore", divide="ignore"):
        gap_change = (d["d_new_after"] - d["d_old_after"]) - (d["d_new_before"] - d["d_old_before"])
        rel_gap_change = _relative_gap(d["d_new_after"], d["d_old_after"]) - \
            _relative_gap(d["d_new_before"], d["d_old_before"])
    src = np.asarray(sources, dtype=object)
    after_epoch = pd.array(after, dtype="Int64")
    after_epoch[after < 0] = pd.NA
    return {
        "before_pass": _passes(epoch, src),
        "after_epoch": after_epoch,
        "after_pass": _passes(after, src),
        **d,
        "closer_before": _closer(d["d_new_before"], d["d_old_before"]),
        "closer_to_new": _closer(d["d_new_after"], d["d_old_after"]),
        "gap_change": gap_change,
        "rel_gap_change": rel_gap_change,
    }


def _passes(epochs: np.ndarray, src: np.ndarray) -> pd.Categorical:
    """The pass ("train" / "probe") of each epoch; NaN for an epoch outside the log (-1)."""
    names = np.full(len(epochs), None, dtype=object)
    ok = (epochs >= 0) & (epochs < len(src))
    names[ok] = src[epochs[ok]]
    return pd.Categorical(names, categories=list(FIRST_TRAINED_LAG))


# ---------------------------------------------------------------------- relabel events
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


def _event_arrays(events: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    events = time_ordered(events)
    return tuple(np.asarray(events[name], dtype=np.int64) for name in ("epoch", "sample", "old", "new"))  # type: ignore[return-value]


def consistency_events(events: np.ndarray, distance_at: DistanceAt, sources: Sequence[str]) -> pd.DataFrame:
    """One row per relabel event (time order) with distances before and after it.

    Args:
        events: the log's relabel events (``RELABEL_DTYPE``).
        distance_at: epoch e -> that epoch's ``(N, K)`` distances of every sample to every
            class mean; called at most once per epoch.
        sources: per logged epoch, the pass its embeddings came from ("train" / "probe").

    Returns:
        Columns epoch, sample_id, old, new; before_pass (the pass of epoch ``epoch``),
        after_epoch and after_pass (module docstring; NA where the log has no such
        epoch); d_old_before, d_new_before, d_old_after, d_new_after; closer_before and
        closer_to_new (d_new < d_old before / after, nullable boolean, NA where
        undefined); gap_change ((d_new - d_old) after minus before; negative = moved
        towards new); rel_gap_change (the same with each gap divided by d_new + d_old:
        scale-free, within [-2, 2]); undone (a later event of the sample returns it to
        ``old``).
    """
    epoch, sample, old, new = _event_arrays(events)
    return pd.DataFrame({
        "epoch": epoch, "sample_id": sample, "old": old, "new": new,
        **measure(epoch, sample, old, new, distance_at, sources),
        "undone": _undone(sample, old, new),
    }, columns=COLUMNS)


# ---------------------------------------------------------------------- the control group
def relabel_threshold(config: dict[str, object], events: np.ndarray) -> float:
    """The margin above which the run relabelled: its ``delta``, else (a log another
    method wrote) the smallest ``p_new - p_old`` among its events; NaN with neither."""
    if config.get("delta") is not None:
        return float(config["delta"])  # type: ignore[arg-type]
    if len(events) == 0:
        return float("nan")
    return float(np.min(np.asarray(events["p_new"], np.float64) - np.asarray(events["p_old"], np.float64)))


def relabelling_epochs(config: dict[str, object], events: np.ndarray, num_epochs: int) -> range:
    """The epochs in which the rule was applied: from the run's (1-based) ``relabel_epoch``,
    else from the first epoch with an event (empty without one)."""
    if config.get("relabel_epoch") is not None:
        first = int(config["relabel_epoch"]) - 1  # type: ignore[call-overload]
    elif len(events):
        first = int(np.min(events["epoch"]))
    else:
        return range(0)
    return range(max(first, 0), num_epochs)


def control_candidates(labels: np.ndarray, probs: np.ndarray, allowed: np.ndarray, threshold: float,
                       band: float = CONTROL_BAND) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One epoch's control samples among those ``allowed`` (a mask: the training samples the
    rule did not relabel that epoch): margin ``p_max - p_label`` in (0, threshold] and at
    least ``threshold - band``. Returns their ids, argmax classes and margins.

    Margins 0.25 (a control), 0.5 (above the threshold: relabelled), 0.3 (a control) and
    none (the label is the argmax):

    >>> p = np.array([[0.5, 0.25, 0.25], [0.2, 0.7, 0.1], [0.3, 0.6, 0.1], [0.6, 0.3, 0.1]])
    >>> ids, new, margin = control_candidates(np.array([1, 0, 0, 0]), p, np.ones(4, bool), 0.4, band=0.2)
    >>> ids.tolist(), new.tolist(), margin.round(2).tolist()
    ([0, 2], [0, 1], [0.25, 0.3])
    """
    labels = np.asarray(labels, np.int64)
    rows = np.flatnonzero(np.asarray(allowed, bool) & (labels >= 0))
    lab = labels[rows]
    p = np.asarray(probs)[rows].astype(np.float64)  # float16 in the log: one row gather, then exact margins
    arg = p.argmax(axis=1)
    margin = p[np.arange(len(rows)), arg] - p[np.arange(len(rows)), lab]
    keep = (arg != lab) & (margin > 0) & (margin <= threshold) & (margin >= threshold - band)
    return rows[keep], arg[keep], margin[keep]


def consistency_control(events: np.ndarray, labels_at: Callable[[int], np.ndarray],
                        probs_at: Callable[[int], np.ndarray], train_mask: np.ndarray, epochs: Sequence[int],
                        distance_at: DistanceAt, sources: Sequence[str], threshold: float,
                        band: float = CONTROL_BAND) -> pd.DataFrame:
    """The control group (module docstring), followed like the relabel events.

    Args:
        events: the log's relabel events; a sample relabelled in epoch e is no control there.
        labels_at: epoch e -> ``(N,)`` labels in effect of epoch e.
        probs_at: epoch e -> ``(N, K)`` logged probabilities of epoch e.
        train_mask: ``(N,)`` whether each sample is a training sample.
        epochs: the epochs in which the rule was applied (:func:`relabelling_epochs`).
        distance_at: as in :func:`consistency_events`.
        sources: as in :func:`consistency_events`.
        threshold: the relabel threshold (:func:`relabel_threshold`).
        band: controls' margins lie in [threshold - band, threshold].

    Returns:
        One row per control (epoch order, then sample id): epoch, sample_id, old (label in
        effect), new (argmax class), margin, and the columns of :func:`consistency_events`
        from before_pass to rel_gap_change.
    """
    if band < 0:
        raise ValueError(f"band must be >= 0, got {band}")
    parts: list[tuple[np.ndarray, ...]] = []
    ev_epoch, ev_sample = _event_arrays(events)[:2]
    if np.isfinite(threshold):
        for e in epochs:
            lo, hi = np.searchsorted(ev_epoch, [e, e + 1])  # events are in time order
            allowed = np.array(train_mask, dtype=bool)
            allowed[ev_sample[lo:hi]] = False
            labels = np.asarray(labels_at(e), np.int64)
            ids, new, margin = control_candidates(labels, probs_at(e), allowed, threshold, band)
            parts.append((np.full(len(ids), e, np.int64), ids, labels[ids], new, margin))
    cols = [np.concatenate(c) for c in zip(*parts)] if parts else [np.zeros(0)] * 5
    epoch, sample, old, new = (np.asarray(c, np.int64) for c in cols[:4])
    return pd.DataFrame({
        "epoch": epoch, "sample_id": sample, "old": old, "new": new, "margin": np.asarray(cols[4], np.float64),
        **measure(epoch, sample, old, new, distance_at, sources),
    }, columns=CONTROL_COLUMNS)


# ---------------------------------------------------------------------- matching
def _strata(table: pd.DataFrame, match: Match, k: int) -> np.ndarray:
    old, new = table["old"].to_numpy(np.int64), table["new"].to_numpy(np.int64)
    if match == "pair":
        return old * k + new
    if match == "pair_epoch":
        return (table["epoch"].to_numpy(np.int64) * k + old) * k + new
    raise ValueError(f"match must be one of {', '.join(MATCHES)}, not {match!r}")


def matched(rel_strata: np.ndarray, rel_closer: np.ndarray, ctrl_strata: np.ndarray, ctrl_closer: np.ndarray
            ) -> tuple[float, int, float]:
    """Control fraction standardised to the relabelled events' strata, the number of
    relabelled events in strata that have controls, and relabelled minus control over
    those strata. ``*_closer`` are 1.0 / 0.0 with NaN for undefined (left out).

    >>> matched(np.array([0, 0, 1, 2]), np.array([1.0, 1.0, 0.0, 1.0]),
    ...         np.array([0, 0, 1, 1]), np.array([1.0, 0.0, 0.0, 0.0]))
    (0.3333333333333333, 3, 0.3333333333333333)
    """
    rel_ok, ctrl_ok = np.isfinite(rel_closer), np.isfinite(ctrl_closer)
    rel_s, rel_c = rel_strata[rel_ok], rel_closer[rel_ok]
    ctrl_s, ctrl_c = ctrl_strata[ctrl_ok], ctrl_closer[ctrl_ok]
    shared = np.intersect1d(rel_s, ctrl_s)
    if len(shared) == 0:
        return float("nan"), 0, float("nan")
    ri, ci = np.searchsorted(shared, rel_s), np.searchsorted(shared, ctrl_s)
    in_r = np.isin(rel_s, shared)
    in_c = np.isin(ctrl_s, shared)
    weight = np.bincount(ri[in_r], minlength=len(shared)).astype(np.float64)
    rel_frac = np.bincount(ri[in_r], weights=rel_c[in_r], minlength=len(shared)) / weight
    ctrl_frac = np.bincount(ci[in_c], weights=ctrl_c[in_c], minlength=len(shared)) / \
        np.bincount(ci[in_c], minlength=len(shared))
    control = float(np.average(ctrl_frac, weights=weight))
    return control, int(weight.sum()), float(np.average(rel_frac, weights=weight)) - control


def _as_float(flags: pd.Series) -> np.ndarray:
    """A nullable boolean column as 1.0 / 0.0 / NaN."""
    return flags.astype("boolean").astype("Float64").to_numpy(dtype=np.float64, na_value=np.nan)


# ---------------------------------------------------------------------- the summary
def consistency_summary(events_df: pd.DataFrame, control_df: pd.DataFrame | None = None, *,
                        match: Match = "pair", num_classes: int | None = None) -> pd.Series:
    """The tables of :func:`consistency_events` and :func:`consistency_control` in numbers.

    events (rows), evaluated (rows with ``closer_to_new`` defined), closer_before and
    closer_to_new (fractions of the evaluated rows that sat closer to ``new`` before /
    after), control (controls with ``closer_to_new`` defined), control_closer (their
    fraction closer to their argmax class after, standardised to the events' strata),
    matched_events (evaluated events in strata with controls), closer_vs_control
    (relabelled minus control over those strata: the compared figure), mean_gap_change and
    mean_rel_gap_change (over evaluated rows whose before-distances are finite too),
    undone (count) and undone_fraction (of all events). NaN where undefined; counts are
    ints and fractions floats, so the Series has object dtype.
    """
    n = len(events_df)
    nan = float("nan")
    out: dict[str, object] = {key: nan for key in SUMMARY}
    out.update(events=n, evaluated=0, control=0, matched_events=0, undone=0)
    if n:
        evaluated = events_df["closer_to_new"].astype("boolean").notna().to_numpy()
        out["evaluated"] = int(evaluated.sum())
        out["closer_before"] = _fraction(events_df["closer_before"][evaluated])
        out["closer_to_new"] = _fraction(events_df["closer_to_new"][evaluated])
        out["mean_gap_change"] = _finite_mean(events_df["gap_change"].to_numpy(dtype=float)[evaluated])
        out["mean_rel_gap_change"] = _finite_mean(events_df["rel_gap_change"].to_numpy(dtype=float)[evaluated])
        out["undone"] = int(events_df["undone"].astype(bool).sum())
        out["undone_fraction"] = out["undone"] / n  # type: ignore[operator]
    if control_df is not None and len(control_df):
        out["control"] = int(control_df["closer_to_new"].astype("boolean").notna().sum())
        if n:
            k = num_classes or int(max(events_df[["old", "new"]].to_numpy().max(),
                                       control_df[["old", "new"]].to_numpy().max())) + 1
            control, count, diff = matched(_strata(events_df, match, k), _as_float(events_df["closer_to_new"]),
                                           _strata(control_df, match, k), _as_float(control_df["closer_to_new"]))
            out.update(control_closer=control, matched_events=count, closer_vs_control=diff)
    return pd.Series(out, dtype=object, name="consistency")[SUMMARY]


def _fraction(flags: pd.Series) -> float:
    """Fraction of True among the defined values; NaN when none is defined."""
    known = flags.astype("boolean").dropna()
    return float(known.astype(bool).mean()) if len(known) else float("nan")


def _finite_mean(values: np.ndarray) -> float:
    values = values[np.isfinite(values)]
    return float(values.mean()) if len(values) else float("nan")


def _closer(d_new: np.ndarray, d_old: np.ndarray) -> pd.arrays.BooleanArray:
    """d_new < d_old, NA where either distance is not finite."""
    closer = pd.array(d_new < d_old, dtype="boolean")
    closer[~(np.isfinite(d_new) & np.isfinite(d_old))] = pd.NA
    return closer


def _relative_gap(d_new: np.ndarray, d_old: np.ndarray) -> np.ndarray:
    """(d_new - d_old) / (d_new + d_old), in [-1, 1]; 0 when both distances are 0."""
    total = d_new + d_old
    return np.where(total > 0, (d_new - d_old) / np.where(total > 0, total, 1.0), 0.0 * total)


# ---------------------------------------------------------------------- the lag view
def follow(epoch: np.ndarray, sample: np.ndarray, old: np.ndarray, new: np.ndarray, distance_at: DistanceAt,
           sources: Sequence[str], max_lag: int) -> np.ndarray:
    """``(n, max_lag + 1)``: at lag k, 1.0 where sample ``sample`` sat closer to ``new``
    than to ``old`` at epoch ``epoch + k``, 0.0 where not, NaN where that epoch is not
    logged, its embeddings come from another pass than epoch ``epoch``'s, or a distance is
    NaN. Reads each epoch's distances once."""
    src = np.asarray(sources, dtype=object)
    n_epochs = len(src)
    out = np.full((len(epoch), max_lag + 1), np.nan)
    if len(epoch) == 0 or n_epochs == 0:
        return out
    order = np.argsort(epoch, kind="stable")
    sorted_epochs = epoch[order]
    for a in range(int(max(sorted_epochs.min(), 0)), min(int(sorted_epochs.max()) + max_lag + 1, n_epochs)):
        lo, hi = np.searchsorted(sorted_epochs, [a - max_lag, a + 1])
        idx = order[lo:hi]
        idx = idx[(epoch[idx] >= 0) & (src[np.clip(epoch[idx], 0, n_epochs - 1)] == src[a])]
        if len(idx) == 0:
            continue
        row = np.asarray(distance_at(a))
        d_new, d_old = row[sample[idx], new[idx]], row[sample[idx], old[idx]]
        ok = np.isfinite(d_new) & np.isfinite(d_old)
        out[idx[ok], a - epoch[idx[ok]]] = (d_new[ok] < d_old[ok]).astype(np.float64)
    return out


def consistency_by_lag(events: np.ndarray, control: pd.DataFrame, distance_at: DistanceAt,
                       sources: Sequence[str], *, num_classes: int, max_lag: int | None = None,
                       match: Match = "pair") -> pd.DataFrame:
    """For k = 0, 1, 2, ... epochs after each relabel: the fraction of relabelled samples
    closer to ``new`` at epoch e + k, beside the control group followed the same way.

    Args:
        events: the log's relabel events.
        control: :func:`consistency_control`'s table (epoch, sample_id, old, new).
        distance_at: as in :func:`consistency_events` (each epoch read once).
        sources: as in :func:`consistency_events`; lag k of an event counts only when epoch
            e + k comes from the same pass as epoch e.
        num_classes: K.
        max_lag: the last lag (default: the furthest any event reaches in the log).
        match: how controls are matched to events ("pair" or "pair_epoch").

    Returns:
        One row per pass (of the event's epoch) present among the events and lag: pass,
        lag, trained_on_new (whether the embedding at that lag has seen an update under
        ``new``: lag >= FIRST_TRAINED_LAG[pass]), events (events measured at that lag),
        closer_to_new (their fraction), control (controls measured), control_closer
        (standardised to the events' strata), matched_events, closer_vs_control
        (relabelled minus control over the matched strata).
    """
    epoch, sample, old, new = _event_arrays(events)
    if max_lag is None:  # the furthest any event reaches
        max_lag = max(len(sources) - 1 - int(epoch.min()), 0) if len(epoch) else 0
    if max_lag < 0:
        raise ValueError(f"max_lag must be >= 0, got {max_lag}")
    c_epoch = control["epoch"].to_numpy(np.int64)
    both = follow(np.r_[epoch, c_epoch], np.r_[sample, control["sample_id"].to_numpy(np.int64)],
                  np.r_[old, control["old"].to_numpy(np.int64)], np.r_[new, control["new"].to_numpy(np.int64)],
                  distance_at, sources, max_lag)
    rel, ctrl = both[:len(epoch)], both[len(epoch):]
    src = np.asarray(sources, dtype=object)
    ev_table = pd.DataFrame({"epoch": epoch, "old": old, "new": new})
    rel_strata, ctrl_strata = _strata(ev_table, match, num_classes), _strata(control, match, num_classes)
    rel_pass = src[epoch] if len(epoch) else np.zeros(0, object)
    ctrl_pass = src[c_epoch] if len(c_epoch) else np.zeros(0, object)
    rows = []
    for kind in [p for p in FIRST_TRAINED_LAG if p in set(rel_pass)]:
        r_in, c_in = rel_pass == kind, ctrl_pass == kind
        for lag in range(max_lag + 1):
            r, c = rel[r_in, lag], ctrl[c_in, lag]
            control_closer, count, diff = matched(rel_strata[r_in], r, ctrl_strata[c_in], c)
            measured = np.isfinite(r)
            rows.append({
                "pass": kind, "lag": lag, "trained_on_new": lag >= FIRST_TRAINED_LAG[kind],
                "events": int(measured.sum()),
                "closer_to_new": float(r[measured].mean()) if measured.any() else np.nan,
                "control": int(np.isfinite(c).sum()), "control_closer": control_closer,
                "matched_events": count, "closer_vs_control": diff,
            })
    return pd.DataFrame(rows, columns=LAG_COLUMNS)
