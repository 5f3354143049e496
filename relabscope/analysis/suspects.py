"""Suspect labels: which training samples' given labels are most likely wrong, without
clean labels.

Real data sets (RAF-DB, AffectNet, FER2013) have no clean labels, so a noise-detection
AUROC cannot be computed there and nothing flags a single sample. Every signal here is
computed from what the run log keeps, against the *given* label, and oriented so that a
high value points to a wrong label (:data:`SIGNALS` says which raw values do):

- ``aum``: area under the margin of the given label (Pleiss et al., 2020), low = suspect;
- ``forgetting``: forgetting events against the given label (Toneva et al., 2019), never
  learned = the sentinel E, high = suspect;
- ``out_of_class``: mean over epochs of the largest probability of a class other than the
  given one: how strongly the model believes in *some* other class;
- ``distance_ratio``: mean over epochs of ``d(given) / min_{k != given} d(k)``, the
  distances of the sample's embedding to the class means under the labels in effect:
  above 1, the embedding sits nearer another class than its own;
- ``away``: fraction of the label states after each epoch (``labels()[1:]``, then
  ``final_labels()``) whose label in effect is not the given one: time relabelling kept
  the sample away from its label;
- ``relabels``: its relabel events; ``flipflops``: those that undid an earlier relabel
  (returned to a label held before).

The last three need a method that relabels; for a run that cannot (a baseline) they are
NaN and drop out of the score instead of counting as zero.

**Score.** The mean of percentile ranks over the training samples of the signals in
:data:`DEFAULT_SIGNALS`, each oriented so that 1 is the most suspect (ties share their
average rank): ``aum`` and ``distance_ratio``, one signal per independent source of
evidence, the classifier's margin and the embedding's geometry. The other signals repeat
a source already counted: ``forgetting`` and ``out_of_class`` read the classifier's
belief again, and relabelling's history (``away``, ``relabels``, ``flipflops``) is itself
made by that belief (SCN relabels when ``p_max - p_label`` exceeds its threshold), read
through single augmented passes; flip-flops mark faces between two expressions rather
than wrong labels. On the synthetic benchmark (docs/analysis.md) adding ``away`` lowered
the score's AUROC in 9 of 11 runs, adding all seven signals in 10 of 11. The others stay
in the table for filtering, and ``signals=`` puts any of them in the score. Without
relabel signals the score means the same for every method, so runs of a baseline and of
SCN compare. Ranks because the signals live on unrelated scales (a clipped log-ratio, a
distance ratio, counts with many ties, bounded fractions): a rank needs no assumption
about any of them and is not moved by the outliers AUM's clipping produces. Equal weights
because without clean labels nothing can fit weights: weights learned on one synthetic
noise model would be tuned to it. A signal that is NaN everywhere or constant (a run that
relabelled nothing) ranks nobody and is left out; a sample missing one signal (its given
class had no mean at any epoch) is scored by the others. ``rank`` 1 is the most suspect
(ties by sample id).

**Shrunk classes.** A run that relabels can empty a class, or shrink it below half its
given samples: from then on the model is trained never to predict it, so every sample
given it has a low probability of it, a low margin and no class mean to be near, whether
its label is right or not (on real photos, a run that emptied two classes had the flag
mark 399 of the 437 samples given them, 101 of them noisy, and put 176 of them in the top
300 ranks). Those epochs are not evidence against the given label: every given-label
signal (AUM, forgetting, out-of-class, the distance ratio) and the flag's probabilities
read, per sample, only the epochs in which its given class held at least
:data:`SHRUNK_BELOW` of its given samples under the labels in effect (the first epoch
normally does: it starts from the given labels), the flag's window being the last
``window`` of those. A sample whose class was shrunk in every epoch (a rule that emptied
it within the first) reads them all. A run that shrank no class reads every epoch, as
before. The baselines keep their plain definitions.

**Flag.** Confident learning (Northcutt et al., 2021), on the probabilities averaged over
the last ``window`` epochs (default: the later half of the committed epochs, rounded up):
the first epochs are a barely trained model, and the last ones are where the network
memorises the given labels, so their average is the best estimate the log has of
out-of-sample belief. The threshold of class j is the mean averaged probability of j over
the samples *given* j; a class is confident for a sample when its probability reaches the
class's threshold, and the sample's confident class is the most probable confident one.
Counting samples by (given, confident) class gives the confident joint; calibrated so each
row sums to its class's given count, its off-diagonal cell (i, j) estimates how many
samples given i belong to j. The flag is *prune by noise rate*, the rule the paper and
cleanlab default to: of the samples given i, the (i, j) count with the largest margin
``p_j - p_i`` are flagged, for each j != i, and none the model predicts as given. Against
the rule it replaced ("a confident class other than the given one"), on 12 quick synthetic
runs (docs/analysis.md) it found more of the wrong labels in every run (recall +0.05 to
+0.17) and was as precise or more (precision -0.02 to +0.07). The flag does not read the
score: it is an independent decision rule whose count tells how many of the top ranks to
look at.

**Suggested label.** The class other than the given one that the model and relabelling
favour: ``argmax_{k != given} recent_p_k + share_k``, ``recent_p`` the window-averaged
probabilities and ``share_k`` the fraction of label states (as for ``away``) in class k.
Both terms lie in [0, 1]; for a method that never relabels the second is 0 and the model
alone decides. It is always a different class from the given one: the alternative a
reviewer weighs against keeping the label.

:func:`suspect_quality` needs clean labels: ROC AUC and average precision of the score,
of every single signal, of the flag and of two plain baselines, all on the same samples:
``low_p_given`` (1 - the given label's probability averaged over epochs: the stronger
reference, itself a reading of the training history) and ``low_p_last`` (1 - its
probability in the last committed epoch: what one snapshot of a model gives, as a ranking
without any history would).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Iterable, Literal, Sequence

import numpy as np
import pandas as pd

from relabscope.analysis.dynamics import area_under_margin, forgetting_events
from relabscope.analysis.epochs import over_epochs


@dataclass(frozen=True)
class Signal:
    """How a signal points to a wrong label: ``direction`` "high" or "low" (which raw
    values are suspect), whether it needs a method that relabels, and a line saying what
    it is (for legends and tooltips)."""

    direction: Literal["high", "low"]
    needs_relabels: bool
    description: str


#: The per-sample signals, in the order their columns appear.
SIGNALS: dict[str, Signal] = {
    "aum": Signal("low", False, "area under the margin of the given label"),
    "forgetting": Signal("high", False, "forgetting events against the given label (never learned: E)"),
    "out_of_class": Signal("high", False, "mean over epochs of the largest probability of another class"),
    "distance_ratio": Signal("high", False, "mean over epochs of d(given) / nearest other class mean"),
    "away": Signal("high", True, "fraction of label states away from the given label"),
    "relabels": Signal("high", True, "relabel events"),
    "flipflops": Signal("high", True, "relabels undone: returns to a label held before"),
}
#: The signals the score combines by default: one per source of evidence (module docstring).
DEFAULT_SIGNALS: tuple[str, ...] = ("aum", "distance_ratio")
#: The plain references every signal and the score are compared with: low p(given),
#: averaged over the epochs and in the last one.
BASELINES: tuple[str, ...] = ("low_p_given", "low_p_last")
QUALITY_COLUMNS = ["scorer", "kind", "auroc", "auroc_low", "auroc_high", "average_precision", "ap_low", "ap_high",
                   "n", "noisy"]


# ---------------------------------------------------------------------- per-epoch pass
def default_window(num_epochs: int) -> int:
    """The later half of ``num_epochs``, rounded up (at least 1)."""
    return max(1, math.ceil(num_epochs / 2))


def _epoch_pass(probs: np.ndarray, distances: np.ndarray, given: np.ndarray, window: int,
                evidence: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One pass over the epochs (one epoch in memory at a time, so h5py datasets work):
    ``out_of_class``, ``distance_ratio`` (each a mean over the epochs where it is defined)
    and the window-averaged probabilities ``(n, K)``. ``evidence`` ``(E, n)``: the epochs
    that count for each sample (:func:`evidence_epochs`; None: all), the window being its
    last ``window`` such epochs. Contiguous ranges of epochs run in threads
    (``relabscope.analysis.epochs``), each epoch class-major in float32."""
    num_epochs, n, k = probs.shape
    at_given = given * n + np.arange(n)  # a sample's given class in a class-major (K, n) epoch
    # per sample, its evidence epochs from each epoch to the last
    counts = None if evidence is None else np.flip(np.cumsum(np.flip(evidence, axis=0), axis=0, dtype=np.int32), 0)

    def part(epochs: range) -> _PassSums:
        sums = _PassSums(n, k)
        for e in epochs:
            rows = None if evidence is None else evidence[e]
            recent = e >= num_epochs - window if counts is None else rows & (counts[e] <= window)
            sums.add(np.asarray(probs[e]), np.asarray(distances[e]), at_given, recent, rows)
        return sums

    total = _PassSums.total(over_epochs(num_epochs, part), n, k)
    with np.errstate(invalid="ignore", divide="ignore"):
        out_of_class = np.where(total.other_count > 0, total.other_sum / total.other_count, np.nan)
        ratio = np.where(total.ratio_count > 0, total.ratio_sum / total.ratio_count, np.nan)
        recent = np.where(total.recent_count[:, None] > 0, total.recent_sum.T / total.recent_count[:, None], np.nan)
    return out_of_class, ratio, recent


class _PassSums:
    """Running sums of :func:`_epoch_pass` over some epochs: the largest probability of
    another class than the given one, the distance ratio, and the recent probabilities
    (class-major, ``(K, n)``), each with the count of epochs that defined it."""

    def __init__(self, n: int, k: int):
        self.other_sum, self.other_count = np.zeros(n), np.zeros(n, np.int64)
        self.ratio_sum, self.ratio_count = np.zeros(n), np.zeros(n, np.int64)
        self.recent_sum, self.recent_count = np.zeros((k, n)), np.zeros(n, np.int64)

    def add(self, prob: np.ndarray, distance: np.ndarray, at_given: np.ndarray, recent: bool | np.ndarray,
            rows: np.ndarray | None) -> None:
        """One epoch's ``(n, K)`` probabilities and distances; ``recent`` which samples
        count it in their window (or all / none), ``rows`` which count it at all (None:
        all)."""
        p = np.ascontiguousarray(prob.T, dtype=np.float32)  # (K, n): reductions over classes elementwise
        seen = np.isfinite(p).all(axis=0)
        if rows is not None:
            seen &= rows
        if np.any(recent):
            this = seen & recent
            self.recent_sum += np.where(this, p, 0.0)
            self.recent_count += this
        p.ravel()[at_given] = -np.inf
        self.other_sum += np.where(seen, p.max(axis=0), 0.0)
        self.other_count += seen
        d = np.ascontiguousarray(distance.T, dtype=np.float32)
        own = d.ravel()[at_given]
        d[~np.isfinite(d)] = np.inf
        d.ravel()[at_given] = np.inf
        nearest = d.min(axis=0)
        ok = np.isfinite(own) & np.isfinite(nearest) & (nearest > 0)
        if rows is not None:
            ok &= rows
        self.ratio_sum += np.where(ok, own / np.where(ok, nearest, 1.0), 0.0)
        self.ratio_count += ok

    @classmethod
    def total(cls, parts: list["_PassSums"], n: int, k: int) -> "_PassSums":
        out = cls(n, k)
        for part in parts:
            for name, value in vars(part).items():
                getattr(out, name).__iadd__(value)
        return out


def label_share(labels: np.ndarray, final: np.ndarray, num_classes: int) -> np.ndarray:
    """``(n, K)``: per sample, the fraction of its label states in each class. The states
    are the labels in effect after each epoch: rows 1.. of ``labels`` ``(E, n)`` (what the
    next epoch trained on), then ``final`` (after the last epoch's relabels); row 0, the
    given label before any relabel could happen, is left out, and so are unseen states
    (-1). A sample never seen gets a row of zeros."""
    n = len(final)
    counts = np.zeros((n, num_classes))
    for rows in (np.asarray(labels)[1:], np.asarray(final)[None, :]):
        for c in range(num_classes):
            counts[:, c] += (rows == c).sum(axis=0)
    total = counts.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, counts / np.maximum(total, 1.0), 0.0)


#: A class counts as shrunk in an epoch when the labels in effect give it fewer than this
#: share of the samples given it.
SHRUNK_BELOW = 0.5


def shrunk_classes(labels: np.ndarray, given: np.ndarray, num_classes: int) -> np.ndarray:
    """``(E, K)``: whether each class held fewer than :data:`SHRUNK_BELOW` of its given
    samples under the labels each epoch trained on (rows of ``labels`` ``(E, n)``; samples
    whose label is unknown, -1, left out of both counts)."""
    labels = np.asarray(labels, dtype=np.int64)
    given = np.asarray(given, dtype=np.int64)
    out = np.zeros((len(labels), num_classes), bool)
    for e, row in enumerate(labels):
        known = (row >= 0) & (given >= 0)
        now = np.bincount(row[known], minlength=num_classes)[:num_classes]
        before = np.bincount(given[known], minlength=num_classes)[:num_classes]
        out[e] = now < SHRUNK_BELOW * before
    return out


def evidence_epochs(shrunk: np.ndarray, given: np.ndarray) -> np.ndarray | None:
    """``(E, n)``: the epochs whose probabilities and distances count as evidence about a
    sample's given label, those in which the run had not shrunk its given class (module
    docstring, "Shrunk classes"); None when no class shrank (every epoch counts)."""
    if not shrunk.any():
        return None
    given = np.asarray(given, dtype=np.int64)
    out: np.ndarray = ~shrunk[:, np.clip(given, 0, shrunk.shape[1] - 1)]
    out[:, ~out.any(axis=0)] = True  # shrunk in every epoch (relabelled within the first): all there is
    return out


# ---------------------------------------------------------------------- signals
@dataclass(frozen=True)
class Signals:
    """What :func:`signal_table` reads from a run, for :func:`suspects`: ``table``
    (sample_id, one column per signal, the baselines), ``recent`` the window-averaged
    probabilities ``(n, K)``, ``share`` the label shares ``(n, K)``
    (:func:`label_share`), ``given`` and ``final`` labels ``(n,)``, ``window`` the epochs
    ``recent`` averages, and ``shrunk`` ``(E, K)`` the epochs in which each class was
    shrunk (:func:`shrunk_classes`)."""

    table: pd.DataFrame
    recent: np.ndarray
    share: np.ndarray
    given: np.ndarray
    final: np.ndarray
    window: int
    shrunk: np.ndarray


def signal_table(
    dynamics: pd.DataFrame,
    flipflops: pd.DataFrame,
    *,
    probs: np.ndarray,
    preds: np.ndarray,
    labels: np.ndarray,
    final: np.ndarray,
    distances: np.ndarray,
    given: np.ndarray,
    relabels: bool,
    window: int | None = None,
) -> Signals:
    """Every signal of :data:`SIGNALS` and the baselines, per training sample.

    ``dynamics`` (``relabscope.analysis.dynamics.dynamics_table``) and ``flipflops``
    (``relabscope.analysis.flipflops.flipflop_table``) are row-aligned over the same ``n``
    training samples as ``probs`` ``(E, n, K)``, ``preds`` ``(E, n)``, ``labels``
    ``(E, n)`` (in effect), ``final`` ``(n,)``, ``distances`` ``(E, n, K)`` and ``given``
    ``(n,)``. ``relabels``: whether the method can relabel at all (else the relabel
    signals are NaN). The given-label signals read only the epochs in which the run had
    not shrunk the sample's given class (:func:`evidence_epochs`); the baselines read
    every epoch, as their definitions say.

    Returns:
        The :class:`Signals` that :func:`suspects` ranks.
    """
    given = np.asarray(given, dtype=np.int64)
    if not hasattr(probs, "shape"):
        probs = np.asarray(probs)
    if len(probs.shape) != 3 or probs.shape[0] == 0:
        raise ValueError(f"probs must be (epochs >= 1, samples, classes), got shape {probs.shape}")
    num_epochs, n, k = probs.shape
    if len(dynamics) != n or len(flipflops) != n or len(given) != n:
        raise ValueError(f"{n} samples in probs, {len(dynamics)} dynamics rows, {len(flipflops)} flip-flop rows, "
                         f"{len(given)} given labels")
    if not np.array_equal(dynamics["sample_id"].to_numpy(), flipflops["sample_id"].to_numpy()):
        raise ValueError("dynamics and flipflops tables are not row-aligned (sample_id differs)")
    window = default_window(num_epochs) if window is None else int(window)
    if not 1 <= window <= num_epochs:
        raise ValueError(f"window must be 1..{num_epochs} epochs, got {window}")
    shrunk = shrunk_classes(labels, given, k)
    evidence = evidence_epochs(shrunk, given)
    out_of_class, ratio, recent = _epoch_pass(probs, distances, given, window, evidence)
    share = label_share(labels, final, k)
    if evidence is None:
        aum, forgetting = dynamics["aum_given"].to_numpy(dtype=np.float64), dynamics["forgetting_given"].to_numpy()
    else:
        aum, forgetting = _given_dynamics(probs, preds, given, evidence)
    table = pd.DataFrame({
        "sample_id": dynamics["sample_id"].to_numpy(dtype=np.int64),
        "aum": aum,
        "forgetting": forgetting,
        "out_of_class": out_of_class,
        "distance_ratio": ratio,
    })
    seen_states = share.sum(axis=1) > 0
    table["away"] = np.where(seen_states, 1.0 - share[np.arange(n), given], np.nan)
    table["relabels"] = flipflops["changes"].to_numpy()
    table["flipflops"] = flipflops["flipflops"].to_numpy()
    if not relabels:  # a method that cannot relabel has no relabel history, not a history of none
        for name, signal in SIGNALS.items():
            if signal.needs_relabels:
                table[name] = np.nan
    table["low_p_given"] = 1.0 - dynamics["confidence_given"].to_numpy(dtype=np.float64)
    last = np.asarray(probs[num_epochs - 1], dtype=np.float64)
    table["low_p_last"] = 1.0 - last[np.arange(n), given]
    return Signals(table, recent, share, given, np.asarray(final, dtype=np.int64), window, shrunk)


def _given_dynamics(probs: np.ndarray, preds: np.ndarray, given: np.ndarray,
                    evidence: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUM and forgetting events against the given label over each sample's evidence
    epochs only (``dynamics_table``'s over every epoch)."""
    masked = np.where(evidence, given[None, :], -1)
    aum = area_under_margin(probs, masked)
    preds = np.asarray(preds, dtype=np.int64)
    forgetting = forgetting_events(preds == given[None, :], seen=(preds >= 0) & evidence & (given[None, :] >= 0))
    return aum, forgetting


# ---------------------------------------------------------------------- score
def percentile_ranks(values: np.ndarray, direction: Literal["high", "low"]) -> np.ndarray:
    """Percentile ranks in (0, 1], 1 the most suspect, ties at their average rank, NaN
    kept NaN (and not counted in the denominator)."""
    raw = np.asarray(values, dtype=np.float64)
    oriented = raw if direction == "high" else -raw
    ranks: np.ndarray = pd.Series(oriented).rank(pct=True, method="average").to_numpy()
    return ranks


def combine(table: pd.DataFrame, signals: Iterable[str]) -> tuple[np.ndarray, list[str]]:
    """The score: per sample, the mean of its signals' percentile ranks (module docstring).

    Returns:
        The ``(n,)`` scores (NaN for a sample without any signal) and the signals used
        (those of ``signals`` not NaN everywhere nor constant, in the order given).
    """
    ranks, used = [], []
    for name in signals:
        if name not in SIGNALS:
            raise ValueError(f"unknown signal {name!r}; signals: {', '.join(SIGNALS)}")
        raw = table[name].to_numpy(dtype=np.float64)
        finite = raw[np.isfinite(raw)]
        if len(finite) == 0 or finite.min() == finite.max():
            continue
        ranks.append(percentile_ranks(raw, SIGNALS[name].direction))
        used.append(name)
    if not ranks:
        return np.full(len(table), np.nan), used
    stacked = np.vstack(ranks)
    have = np.isfinite(stacked).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        score = np.where(have > 0, np.nansum(stacked, axis=0) / np.maximum(have, 1), np.nan)
    return score, used


# ---------------------------------------------------------------------- flag and suggestion
def class_thresholds(recent: np.ndarray, given: np.ndarray) -> np.ndarray:
    """Confident learning's per-class thresholds ``(K,)``: for class j, the mean of
    ``recent[:, j]`` over the samples given j (rows with NaN left out); NaN for a class
    no sample is given (such a class is never confident)."""
    recent = np.asarray(recent, dtype=np.float64)
    given = np.asarray(given, dtype=np.int64)
    k = recent.shape[1]
    ok = np.isfinite(recent).all(axis=1) & (given >= 0) & (given < k)
    sums = np.zeros((k, k))
    np.add.at(sums, given[ok], recent[ok])
    counts = np.bincount(given[ok], minlength=k)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums[np.arange(k), np.arange(k)] / np.maximum(counts, 1), np.nan)


def noise_rate_flags(recent: np.ndarray, given: np.ndarray, confident: np.ndarray) -> np.ndarray:
    """Confident learning's prune by noise rate (module docstring): per (given i, class
    j != i), flag the calibrated confident joint's count of the samples given i, those of
    largest ``p_j - p_i``; then unflag every sample whose most probable class is its given
    one. Samples without probabilities in the window are never flagged."""
    recent = np.asarray(recent, dtype=np.float64)
    given = np.asarray(given, dtype=np.int64)
    confident = np.asarray(confident, dtype=np.int64)
    n, k = recent.shape
    seen = np.isfinite(recent).all(axis=1) & (given >= 0) & (given < k)
    calibrated = calibrated_joint(given, confident, seen, k)
    flags = np.zeros(n, bool)
    for i in range(k):
        members = np.flatnonzero(seen & (given == i))
        for j in range(k):
            take = int(round(calibrated[i, j])) if j != i else 0
            if take > 0 and len(members):
                margin = recent[members, j] - recent[members, i]
                flags[members[np.argsort(-margin, kind="stable")[:take]]] = True
    predicted = np.where(seen, np.nan_to_num(recent, nan=-np.inf).argmax(axis=1), -1)
    return flags & (predicted != given)


def calibrated_joint(given: np.ndarray, confident: np.ndarray, seen: np.ndarray, k: int) -> np.ndarray:
    """Confident learning's calibrated confident joint ``(K, K)``: samples counted by (given,
    confident class), each row rescaled to its class's size among the ``seen`` samples, the
    whole to their number; cell (i, j) estimates how many samples given i belong to j."""
    given = np.asarray(given, dtype=np.int64)
    confident = np.asarray(confident, dtype=np.int64)
    joint = np.zeros((k, k))
    both = seen & (confident >= 0)
    np.add.at(joint, (given[both], confident[both]), 1)
    counts = np.bincount(given[seen], minlength=k)
    rows = joint.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        calibrated = np.where(rows[:, None] > 0, joint / rows[:, None] * counts[:, None], 0.0)
    if calibrated.sum() > 0:
        calibrated *= counts.sum() / calibrated.sum()
    return calibrated


def noise_matrix_estimate(given: np.ndarray, confident: np.ndarray, k: int) -> np.ndarray:
    """``(K, K)``, row-stochastic: the estimated probability that a sample of class a is
    given class b, from the calibrated confident joint (its columns, normalised): the
    errors of the data as the run saw them, in ``--noise-matrix``'s form (for
    ``--canary-matrix``: canaries that resemble them). A class nothing was confidently
    found in keeps its row as the identity."""
    given = np.asarray(given, dtype=np.int64)
    joint = calibrated_joint(given, confident, (given >= 0) & (given < k), k)
    column = joint.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(column[:, None] > 0, joint.T / column[:, None], np.eye(k))
    return out


def confident_labels(recent: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Per sample, the most probable class whose probability reaches its threshold; -1
    when none does (or the sample was not seen in the window)."""
    recent = np.asarray(recent, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        confident = recent >= np.asarray(thresholds, dtype=np.float64)[None, :]
    masked = np.where(confident, recent, -np.inf)
    best = masked.argmax(axis=1)
    return np.where(confident.any(axis=1), best, -1).astype(np.int64)


def suggested_labels(recent: np.ndarray, share: np.ndarray, given: np.ndarray) -> np.ndarray:
    """``argmax_{k != given} recent_k + share_k`` (module docstring); -1 for a sample with
    neither probabilities in the window nor a seen label state."""
    votes = np.nan_to_num(np.asarray(recent, dtype=np.float64), nan=0.0) + np.asarray(share, dtype=np.float64)
    n = len(votes)
    given = np.asarray(given, dtype=np.int64)
    known = votes.sum(axis=1) > 0
    votes[np.arange(n), given] = -np.inf
    return np.where(known, votes.argmax(axis=1), -1).astype(np.int64)


# ---------------------------------------------------------------------- the table
def suspects(
    found: Signals,
    *,
    signals: Sequence[str] | None = None,
    keys: Sequence[str] | None = None,
) -> pd.DataFrame:
    """One row per training sample, the most suspect first.

    ``found``: :func:`signal_table`'s signals; ``signals`` the signals the score combines
    (default: :data:`DEFAULT_SIGNALS`), ``keys`` the samples' keys (a ``key`` column
    after ``sample_id`` when given).

    Returns:
        Columns ``sample_id``, (``key``), ``rank`` (1 = most suspect), ``score`` in (0, 1],
        ``flag`` (confident learning), ``given_label``, ``suggested_label``,
        ``confident_label`` (-1: none), ``final_label`` (in effect after the last epoch),
        then every signal and the baselines ``low_p_given`` and ``low_p_last``.
        ``attrs["signals"]`` names the signals the score used, ``attrs["thresholds"]``
        holds the per-class thresholds, ``attrs["window"]`` the epochs they averaged and
        ``attrs["shrunk_from"]`` the classes the run shrank, each with the first epoch it
        was shrunk (their samples are judged by the epochs before it and any after it
        recovered).
    """
    table, recent, given = found.table, found.recent, found.given
    score, used = combine(table, list(DEFAULT_SIGNALS if signals is None else signals))
    thresholds = class_thresholds(recent, given)
    confident = confident_labels(recent, thresholds)
    lead = pd.DataFrame({
        "sample_id": table["sample_id"].to_numpy(),
        "rank": np.zeros(len(table), np.int64),
        "score": score,
        "flag": noise_rate_flags(recent, given, confident),
        "given_label": given,
        "suggested_label": suggested_labels(recent, found.share, given),
        "confident_label": confident,
        "final_label": found.final,
    })
    if keys is not None:
        lead.insert(1, "key", np.asarray(keys, dtype=object))
    out = pd.concat([lead, table.drop(columns="sample_id")], axis=1)
    out = out.sort_values(["score", "sample_id"], ascending=[False, True], na_position="last", kind="stable")
    out = out.reset_index(drop=True)
    out["rank"] = np.arange(1, len(out) + 1, dtype=np.int64)
    first = {int(c): int(np.argmax(found.shrunk[:, c])) for c in np.flatnonzero(found.shrunk.any(axis=0))}
    out.attrs.update(signals=used, thresholds=thresholds.tolist(), window=found.window, shrunk_from=first)
    return out


# ---------------------------------------------------------------------- quality
def suspect_quality(table: pd.DataFrame, noisy: np.ndarray, confidence: float = 0.95) -> pd.DataFrame:
    """How well the score, each signal, the flag and the baseline find the noisy samples.

    ``table`` is :func:`suspects`' table and ``noisy`` row-aligned with it (nullable
    booleans: NA where the truth is unknown, left out): the clean labels' verdict, or
    which samples are canaries (``relabscope.data.canaries``). Each scorer is oriented so
    that high means suspect; samples where it is NaN are left out of it (``n`` says how
    many were scored, ``noisy`` how many of those are noisy: the average precision of a
    random ranking is ``noisy / n``). AUROC and AP are NaN when a scorer has no value or
    the scored samples are all noisy or all clean.

    The intervals hold ``confidence`` of the sampling uncertainty: DeLong's variance for
    AUROC (DeLong et al., 1988, computed from midranks as Sun and Xu, 2014), the logit
    interval for AP (Boyd et al., 2013), whose width shrinks with the number of noisy
    samples; with 40 canaries among 800 an AUROC of 0.77 gets about +-0.06.

    Returns:
        One row per scorer: scorer, kind ("score", "signal", "baseline" or "flag"),
        auroc, auroc_low, auroc_high, average_precision, ap_low, ap_high, n, noisy.
    """
    from sklearn.metrics import average_precision_score

    flags = pd.array(noisy, dtype="boolean")
    if len(flags) != len(table):
        raise ValueError(f"noisy has {len(flags)} entries, the table {len(table)} rows")
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    known = ~np.asarray(flags.isna(), dtype=bool)
    truth = np.asarray(flags.fillna(False), dtype=bool)
    scorers: list[tuple[str, str, np.ndarray]] = [("score", "score", table["score"].to_numpy(dtype=np.float64))]
    for name, signal in SIGNALS.items():
        raw = table[name].to_numpy(dtype=np.float64)
        scorers.append((name, "signal", raw if signal.direction == "high" else -raw))
    scorers += [(name, "baseline", table[name].to_numpy(dtype=np.float64)) for name in BASELINES]
    scorers.append(("flag", "flag", table["flag"].to_numpy(dtype=np.float64)))
    rows = []
    for name, kind, value in scorers:
        ok = known & np.isfinite(value)
        y = truth[ok]
        row = {"scorer": name, "kind": kind, "n": int(ok.sum()), "noisy": int(y.sum())}
        auroc = ap = (float("nan"),) * 3
        if 0 < y.sum() < len(y):
            auroc = delong_auroc(value[ok][y], value[ok][~y], z)
            ap = logit_interval(float(average_precision_score(y, value[ok])), int(y.sum()), z)
        row.update(zip(("auroc", "auroc_low", "auroc_high"), auroc))
        row.update(zip(("average_precision", "ap_low", "ap_high"), ap))
        rows.append(row)
    return pd.DataFrame(rows, columns=QUALITY_COLUMNS)


def delong_auroc(positive: np.ndarray, negative: np.ndarray, z: float) -> tuple[float, float, float]:
    """AUROC of scores ``positive`` (should rank high) against ``negative``, and its
    interval ``+- z`` DeLong standard errors (clipped to [0, 1]); ties count one half."""
    m, n = len(positive), len(negative)
    both = _midranks(np.concatenate([positive, negative]))
    within_pos, within_neg = _midranks(positive), _midranks(negative)
    auroc = float((both[:m].sum() - m * (m + 1) / 2) / (m * n))
    v10 = (both[:m] - within_pos) / n  # per positive: the share of negatives below it
    v01 = 1.0 - (both[m:] - within_neg) / m  # per negative: the share of positives above it
    var = (v10.var(ddof=1) if m > 1 else 0.0) / m + (v01.var(ddof=1) if n > 1 else 0.0) / n
    half = z * float(np.sqrt(var))
    return auroc, max(0.0, auroc - half), min(1.0, auroc + half)


def _midranks(values: np.ndarray) -> np.ndarray:
    """Ranks from 1, ties sharing their average."""
    ranks: np.ndarray = pd.Series(values).rank(method="average").to_numpy()
    return ranks


def logit_interval(ap: float, positives: int, z: float) -> tuple[float, float, float]:
    """AP and its logit interval: ``expit(logit(ap) +- z / sqrt(positives * ap * (1 - ap)))``."""
    if not 0.0 < ap < 1.0:
        return ap, ap, ap
    eta, tau = np.log(ap / (1 - ap)), 1.0 / np.sqrt(positives * ap * (1 - ap))
    return ap, float(1 / (1 + np.exp(-(eta - z * tau)))), float(1 / (1 + np.exp(-(eta + z * tau))))
