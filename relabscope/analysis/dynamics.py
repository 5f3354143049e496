"""Training dynamics per sample, and how well they (and relabelling) find noisy labels.

Three published per-sample statistics computed from what the run log keeps each epoch
(predictions and softmax probabilities), each against the given label and against the
label in effect:

- forgetting events (Toneva et al., 2019): transitions from correctly to incorrectly
  classified between consecutive epochs in which the sample was seen;
- area under the margin, AUM (Pleiss et al., 2020): the mean over epochs of the logit of
  the label minus the largest other logit;
- data-map confidence and variability (Swayamdipta et al., 2020): the mean and standard
  deviation over epochs of the probability of the label.

:func:`noise_detection` scores each statistic (and being relabelled) as a detector of
wrong given labels by AUROC; :func:`noise_recovery` follows, epoch by epoch, how many
relabels hit the clean label and how many noisy samples end up corrected. Both need clean
labels (synthetic data, or injected noise).

Caveats:

- The log keeps probabilities, not logits. Softmax is shift-invariant, so
  ``logit_y - logit_k = log p_y - log p_k`` exactly, but probabilities are float16: they
  are clamped at the smallest positive float16 (2**-24, about 6e-8) before the log, so
  every margin is clipped to about +-16.6 (``log(2**-24) = -16.64``).
- SCN logs the softmax of the importance-scaled logits, so its margins and confidences
  are those of the scaled logits, which is what its loss sees.
- Probabilities and predictions of training samples come from the training pass, i.e.
  under augmentation and with weights changing through the epoch; the papers measure the
  same way (Toneva: during training; Pleiss: training logits; Swayamdipta: per epoch).
- Entries where a sample was not seen (label or prediction -1, NaN probabilities) are left
  out of every statistic; a sample never seen gets NaN (forgetting: the sentinel below).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from relabscope.analysis.epochs import over_epochs
from relabscope.analysis.flipflops import time_ordered

#: Smallest positive float16 (a subnormal): the floor probabilities are clamped to.
PROB_FLOOR = float(np.finfo(np.float16).smallest_subnormal)


# ---------------------------------------------------------------------- forgetting
def forgetting_events(correct: np.ndarray, *, seen: np.ndarray | None = None) -> np.ndarray:
    """Toneva et al.'s forgetting events: per sample, how often it went from correctly to
    incorrectly classified between consecutive epochs, as an ``(n,)`` int array.

    ``correct`` is ``(E, n)`` bool. With ``seen`` (``(E, n)`` bool), epochs where a sample
    was not seen are skipped: transitions are counted between consecutive *seen* epochs.
    Samples never correct in any (seen) epoch - "never learned" - get the sentinel ``E``
    (the number of epochs), larger than any real count (at most ``E // 2``), so that, as
    in the paper, they rank as the most forgotten.
    """
    correct = np.asarray(correct, dtype=bool)
    if correct.ndim != 2:
        raise ValueError(f"correct must be (epochs, samples), got shape {correct.shape}")
    num_epochs, n = correct.shape
    seen_arr = np.ones_like(correct) if seen is None else np.asarray(seen, dtype=bool)
    forgot = np.zeros(n, np.int64)
    prev = np.zeros(n, bool)      # correct in the last seen epoch
    ever = np.zeros(n, bool)      # correct in some seen epoch
    for e in range(num_epochs):  # a loop over epochs, vectorised over samples
        s, c = seen_arr[e], correct[e]
        forgot += s & prev & ~c
        prev = np.where(s, c, prev)
        ever |= s & c
    forgot[~ever] = num_epochs
    return forgot


# ---------------------------------------------------------------------- per-epoch label stats
def _label_rows(labels: np.ndarray, num_epochs: int, n: int) -> np.ndarray:
    """``(E, n)``: each epoch's labels (one ``(n,)`` labeling repeated, as a view)."""
    labels = np.asarray(labels)
    if labels.shape == (n,):
        return np.broadcast_to(labels, (num_epochs, n))
    if labels.shape == (num_epochs, n):
        return labels
    raise ValueError(f"labels must be ({n},) or ({num_epochs}, {n}), got {labels.shape}")


class _EpochTop2:
    """One epoch's largest and second-largest probability per sample, shared by every
    labeling: the largest probability other than the label's is the largest one unless
    the label is the argmax, then the second largest (ties give a margin of 0, correctly).
    Works on the class-major transpose, where reductions over classes are elementwise."""

    def __init__(self, prob: np.ndarray):
        self.prob_t = np.ascontiguousarray(np.asarray(prob).T, dtype=np.float32)  # (K, n)
        k, n = self.prob_t.shape
        self.m1 = self.prob_t.max(axis=0)
        self.argmax = np.zeros(n, np.int64)
        for c in range(k - 1, -1, -1):  # first class holding the maximum, like np.argmax
            np.copyto(self.argmax, c, where=self.prob_t[c] == self.m1)
        flat = self.prob_t.reshape(-1)
        at_max = self.argmax * n + np.arange(n)
        flat[at_max] = -np.inf
        self.m2 = self.prob_t.max(axis=0) if k > 1 else np.full(n, np.nan, np.float32)
        flat[at_max] = self.m1
        self.ok = np.isfinite(self.m1) & np.isfinite(self.m2)  # NaN rows: not seen


class _Accumulator:
    """Running sums over epochs of one labeling's margin and p(label), seen entries only."""

    def __init__(self, n: int):
        self.count = np.zeros(n, np.int64)
        self.margin = np.zeros(n, np.float64)
        self.p = np.zeros(n, np.float64)
        self.p2 = np.zeros(n, np.float64)

    def add(self, top: _EpochTop2, label: np.ndarray) -> None:
        """One epoch's probabilities (as :class:`_EpochTop2`) against ``label`` ``(n,)``."""
        k, n = top.prob_t.shape
        label = np.asarray(label, dtype=np.int64)
        valid = (label >= 0) & (label < k) & top.ok
        safe = np.where(valid, label, 0)
        p_y = top.prob_t.ravel()[safe * n + np.arange(n)]
        p_other = np.where(top.argmax == safe, top.m2, top.m1)
        with np.errstate(invalid="ignore"):
            margin = np.log(np.maximum(p_y, PROB_FLOOR)) - np.log(np.maximum(p_other, PROB_FLOOR))
        p_y = np.where(valid, p_y, 0).astype(np.float64)
        self.count += valid
        self.margin += np.where(valid, margin, 0)
        self.p += p_y
        self.p2 += p_y * p_y

    @classmethod
    def total(cls, parts: list["_Accumulator"]) -> "_Accumulator":
        """The sums of several accumulators over disjoint epochs."""
        out = cls(len(parts[0].count))
        for part in parts:
            out.count += part.count
            out.margin += part.margin
            out.p += part.p
            out.p2 += part.p2
        return out

    def aum(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.count > 0, self.margin / self.count, np.nan)

    def confidence_variability(self) -> tuple[np.ndarray, np.ndarray]:
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(self.count > 0, self.p / self.count, np.nan)
            var = np.where(self.count > 0, self.p2 / self.count - mean * mean, np.nan)
        return mean, np.sqrt(np.maximum(var, 0.0))


def _accumulate(probs: np.ndarray, labelings: list[np.ndarray]) -> list[_Accumulator]:
    """Sums for several labelings in one pass over ``probs`` (one epoch in memory at a time,
    so an h5py dataset works too), contiguous ranges of epochs in threads
    (``relabscope.analysis.epochs``)."""
    if not hasattr(probs, "shape"):
        probs = np.asarray(probs)
    if len(probs.shape) != 3:
        raise ValueError(f"probs must be (epochs, samples, classes), got shape {probs.shape}")
    num_epochs, n, _ = probs.shape
    rows = [_label_rows(lab, num_epochs, n) for lab in labelings]  # checks the shapes once

    def part(epochs: range) -> list[_Accumulator]:
        accs = [_Accumulator(n) for _ in labelings]
        for e in epochs:
            top = _EpochTop2(probs[e])
            for acc, labels in zip(accs, rows):
                acc.add(top, labels[e])
        return accs

    parts = over_epochs(num_epochs, part) if num_epochs else [[_Accumulator(n) for _ in labelings]]
    return [_Accumulator.total([p[i] for p in parts]) for i in range(len(labelings))]


def area_under_margin(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Pleiss et al.'s AUM per sample: mean over epochs of (logit of the label - largest
    other logit), from ``(E, n, K)`` probabilities as ``log p_y - max_{k != y} log p_k``.

    ``labels`` is ``(n,)`` (the same label every epoch, e.g. the given one) or ``(E, n)``
    (e.g. the label in effect). Probabilities are clamped at about 6e-8 before the log, so
    each margin lies within about +-16.6. Unseen entries are skipped; never seen: NaN.
    Low AUM marks a sample whose label the model keeps arguing with.
    """
    return _accumulate(probs, [labels])[0].aum()


def data_map(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Swayamdipta et al.'s data-map coordinates per sample: confidence (mean over epochs
    of p(label)) and variability (its population std, ddof=0 as in their code).

    ``labels`` as in :func:`area_under_margin`; unseen entries are skipped, never seen: NaN.
    Low confidence with low variability is "hard to learn", where mislabelled samples sit.
    """
    return _accumulate(probs, [labels])[0].confidence_variability()


# ---------------------------------------------------------------------- table
def dynamics_table(
    *,
    probs: np.ndarray,
    preds: np.ndarray,
    effect: np.ndarray,
    given: np.ndarray,
    sample_ids: np.ndarray,
) -> pd.DataFrame:
    """Per training sample: forgetting events, AUM and data-map coordinates, each against
    the given label (every epoch) and against the label in effect of each epoch.

    ``probs`` ``(E, n, K)``, ``preds`` and ``effect`` ``(E, n)``, ``given`` ``(n,)``.
    Columns: sample_id, forgetting_given, forgetting_effect, aum_given, aum_effect,
    confidence_given, variability_given, confidence_effect, variability_effect.
    Forgetting uses the sentinel E for never-learned samples (:func:`forgetting_events`).
    """
    preds = np.asarray(preds, dtype=np.int64)
    effect = np.asarray(effect, dtype=np.int64)
    given = np.asarray(given, dtype=np.int64)
    num_epochs, n = preds.shape
    seen = preds >= 0
    forgetting_given = forgetting_events(preds == given[None, :], seen=seen & (given[None, :] >= 0))
    forgetting_effect = forgetting_events(preds == effect, seen=seen & (effect >= 0))
    acc_given, acc_effect = _accumulate(probs, [given, effect])
    conf_g, var_g = acc_given.confidence_variability()
    conf_e, var_e = acc_effect.confidence_variability()
    return pd.DataFrame({
        "sample_id": np.asarray(sample_ids, dtype=np.int64),
        "forgetting_given": forgetting_given,
        "forgetting_effect": forgetting_effect,
        "aum_given": acc_given.aum(),
        "aum_effect": acc_effect.aum(),
        "confidence_given": conf_g,
        "variability_given": var_g,
        "confidence_effect": conf_e,
        "variability_effect": var_e,
    })


# ---------------------------------------------------------------------- noise
#: score name -> (column, table, direction): "low" means low values point to a noisy label.
DETECTION_SCORES = {
    "aum_given": ("aum_given", "dynamics", "low"),
    "confidence_given": ("confidence_given", "dynamics", "low"),
    "variability_given": ("variability_given", "dynamics", "high"),
    "forgetting_given": ("forgetting_given", "dynamics", "high"),
    "relabelled": ("changes", "flipflops", "high"),
    "changes": ("changes", "flipflops", "high"),
    "flipflops": ("flipflops", "flipflops", "high"),
}


def noise_detection(dynamics: pd.DataFrame, flipflops: pd.DataFrame, noisy: np.ndarray) -> pd.DataFrame:
    """AUROC of each per-sample score for finding noisy samples (given label wrong).

    ``dynamics`` (:func:`dynamics_table`), ``flipflops``
    (:func:`relabscope.analysis.flipflops.flipflop_table`) and ``noisy`` are row-aligned
    over the same training samples. Each score is oriented so that higher means "more
    likely noisy" (``direction`` says which raw values point to noise) and passed to
    ``sklearn.metrics.roc_auc_score``; "relabelled" is ``changes > 0``. Samples whose score
    is NaN (never seen) are left out of that score, and so are samples whose ``noisy`` is
    NA (clean label unknown); ``n`` says how many were scored. AUROC is NaN when the scored
    samples are all noisy or all clean. 0.5 is chance.
    """
    from sklearn.metrics import roc_auc_score

    flags = pd.array(noisy, dtype="boolean")
    known = ~np.asarray(flags.isna(), dtype=bool)
    noisy = np.asarray(flags.fillna(False), dtype=bool)
    if len(dynamics) != len(noisy) or len(flipflops) != len(noisy):
        raise ValueError(f"tables have {len(dynamics)} and {len(flipflops)} rows, noisy has {len(noisy)}")
    if "sample_id" in dynamics and "sample_id" in flipflops and not np.array_equal(
            dynamics["sample_id"].to_numpy(), flipflops["sample_id"].to_numpy()):
        raise ValueError("dynamics and flipflops tables are not row-aligned (sample_id differs)")
    tables = {"dynamics": dynamics, "flipflops": flipflops}
    rows = []
    for name, (column, table, direction) in DETECTION_SCORES.items():
        raw = tables[table][column].to_numpy(dtype=np.float64)
        if name == "relabelled":
            raw = (raw > 0).astype(np.float64)
        score = -raw if direction == "low" else raw
        ok = np.isfinite(score) & known
        y = noisy[ok]
        auroc = float(roc_auc_score(y, score[ok])) if 0 < y.sum() < len(y) else float("nan")
        rows.append({"score": name, "auroc": auroc, "direction": direction, "n": int(ok.sum())})
    return pd.DataFrame(rows, columns=["score", "auroc", "direction", "n"])


def noise_recovery(
    labels: np.ndarray,
    final: np.ndarray,
    events: np.ndarray,
    given: np.ndarray,
    clean: np.ndarray,
    mask: np.ndarray,
) -> pd.DataFrame:
    """Per epoch: how relabelling repairs (or damages) the training labels.

    ``labels`` are the ``(E, n)`` label-in-effect rows of the training samples
    (``mask`` over all N samples picks them, in id order), ``final`` their labels after the
    last epoch's relabels; ``given`` and ``clean`` cover all N samples; ``events`` is the
    run's event table. Noisy = clean known and given != clean; clean = given == clean.
    "Label after epoch e" is ``labels[e + 1]``, and ``final`` for the last epoch.

    Columns: epoch; relabels (events of training samples in the epoch); relabel_precision
    (fraction of the epoch's events - those with a known clean label - whose new label is
    the clean one; NaN without events); relabel_recall (fraction of noisy samples relabelled
    to their clean label at least once by the end of the epoch); noisy_corrected (fraction
    of noisy samples whose label after the epoch is clean); clean_corrupted (fraction of
    clean samples whose label after the epoch is not). Samples unseen in the row that gives
    "label after" (label -1) are left out of the last two for that epoch.
    """
    labels = np.asarray(labels)
    mask = np.asarray(mask, dtype=bool)
    given = np.asarray(given, dtype=np.int64)
    clean = np.asarray(clean, dtype=np.int64)
    final = np.asarray(final, dtype=np.int64)
    num_epochs = labels.shape[0]
    g, c = given[mask], clean[mask]
    known = c >= 0
    noisy = known & (g != c)
    is_clean = known & (g == c)
    n_noisy = int(noisy.sum())

    events = time_ordered(events)
    sample = np.asarray(events["sample"], dtype=np.int64)
    in_mask = (sample >= 0) & (sample < len(mask))
    in_mask[in_mask] = mask[sample[in_mask]]
    sample = sample[in_mask]
    ep = np.asarray(events["epoch"], dtype=np.int64)[in_mask]
    new = np.asarray(events["new"], dtype=np.int64)[in_mask]
    ev_clean = clean[sample]
    ev_known = ev_clean >= 0
    hit = ev_known & (new == ev_clean)
    in_range = (ep >= 0) & (ep < num_epochs)

    relabels = np.bincount(ep[in_range], minlength=num_epochs)[:num_epochs]
    known_events = np.bincount(ep[in_range & ev_known], minlength=num_epochs)[:num_epochs]
    hits = np.bincount(ep[in_range & hit], minlength=num_epochs)[:num_epochs]
    # first epoch each noisy sample was relabelled to its clean label
    noisy_all = np.zeros(len(mask), bool)
    noisy_all[np.flatnonzero(mask)[noisy]] = True
    fix = hit & noisy_all[sample] & in_range
    _, first = np.unique(sample[fix], return_index=True)
    first_fix = np.bincount(ep[fix][first], minlength=num_epochs)[:num_epochs]

    corrected = np.full(num_epochs, np.nan)
    corrupted = np.full(num_epochs, np.nan)
    for e in range(num_epochs):  # a loop over epochs, vectorised over samples; counts, no copies
        after = labels[e + 1] if e + 1 < num_epochs else final
        seen = after >= 0
        now_clean = after == c
        n_nn, n_cc = np.count_nonzero(noisy & seen), np.count_nonzero(is_clean & seen)
        if n_nn:
            corrected[e] = np.count_nonzero(noisy & seen & now_clean) / n_nn
        if n_cc:
            corrupted[e] = np.count_nonzero(is_clean & seen & ~now_clean) / n_cc
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(known_events > 0, hits / np.maximum(known_events, 1), np.nan)
        recall = np.cumsum(first_fix) / n_noisy if n_noisy else np.full(num_epochs, np.nan)
    return pd.DataFrame({
        "epoch": np.arange(num_epochs, dtype=np.int64),
        "relabels": relabels.astype(np.int64),
        "relabel_precision": precision,
        "relabel_recall": recall,
        "noisy_corrected": corrected,
        "clean_corrupted": corrupted,
    })
