"""Canaries: training labels relabscope makes wrong on purpose, so that how well a suspect
ranking finds wrong labels can be measured on a data set without clean labels.

``relabscope train --canaries 0.02`` moves exactly ``round(0.02 * n)`` training labels,
chosen at random, each to a uniformly random *other* class, after noise, ``--limit`` and
``--corrections`` are applied (so the fraction is of the samples the run trains on). The
choice is a function of the seed alone (its own stream: the same seed plants the same
canaries whatever the noise settings). The log keeps each canary's label from before the
flip in the samples table's extra column :data:`CANARY_COLUMN` (-1 for every other
sample), so every view and analysis can tell canaries from the rest; the test split never
holds one.

Why canaries estimate a ranking's quality, and how that estimate is biased: a ranking's
AUROC for telling canaries from the other training samples is its AUROC for wrong labels
*if* the other samples' labels were all right. On real data some of them are wrong too
(natural noise), and a good ranking puts those high as well, where they count as false
alarms: the canary AUROC then understates the true one. Canaries are also uniform flips,
unlike the confusions annotators make (fear for surprise), which are harder to find: on
class-dependent noise it overstates. ``benchmarks/suspects.py`` compares the estimate
with the truth on synthetic data where both are known.
"""

from __future__ import annotations

import numpy as np

from relabscope.data.noise import flippable

#: the samples table's extra column holding a canary's label before the flip (-1: not one)
CANARY_COLUMN = "canary_label"
#: mixed into the seed, so canaries come from a stream of their own
_STREAM = 0xCA_4A_21


def plant_canaries(labels: np.ndarray, fraction: float, num_classes: int, seed: int,
                   like: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Move exactly ``round(fraction * len(labels))`` labels, chosen by ``seed``, each to
    another class: uniformly random, or with ``like`` (``(K, K)``, e.g. an earlier run's
    ``Run.noise_matrix_estimate()``) a label i to j != i with probability proportional to
    ``like[i, j]`` (a row with nothing off the diagonal: uniform). Canaries like the
    data's own errors are as hard to find as those, so the canary estimate of a ranking's
    quality is not flattered by easy uniform flips (docs/analysis.md measures by how much).

    Returns:
        The labels with the canaries planted, and per sample the label a canary had
        before (-1 for every other sample).

    Raises:
        ValueError: ``fraction`` outside [0, 0.5), fewer than 2 classes, or labels out of
            range.
    """
    if not 0.0 <= fraction < 0.5:
        raise ValueError(f"canary fraction must be in [0, 0.5), not {fraction}")
    labels = flippable(labels, num_classes, "planting canaries")
    rng = np.random.default_rng([seed, _STREAM])
    chosen = np.sort(rng.choice(len(labels), size=int(round(fraction * len(labels))), replace=False))
    planted = labels.copy()
    if like is None:
        planted[chosen] = (labels[chosen] + rng.integers(1, num_classes, size=len(chosen))) % num_classes
    else:
        planted[chosen] = _draw_other(labels[chosen], np.asarray(like, dtype=np.float64), rng)
    original = np.full(len(labels), -1, np.int64)
    original[chosen] = labels[chosen]
    return planted, original


def _draw_other(labels: np.ndarray, like: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per label i, a class j != i drawn with probability proportional to ``like[i, j]``
    (uniform over the others where that row has no weight off the diagonal)."""
    k = like.shape[0]
    weights = np.clip(like, 0.0, None)
    np.fill_diagonal(weights, 0.0)
    empty = weights.sum(axis=1) == 0
    weights[empty] = 1.0 - np.eye(k)[empty]
    cumulative = np.cumsum(weights / weights.sum(axis=1, keepdims=True), axis=1)
    last = k - 1 - np.argmax(weights[:, ::-1] > 0, axis=1)  # each row's last class with weight
    cumulative[np.arange(k)[None, :] >= last[:, None]] = 1.0  # rounding never reaches past it
    draws = rng.random(len(labels))
    out: np.ndarray = (draws[:, None] >= cumulative[labels]).sum(axis=1)
    return out
