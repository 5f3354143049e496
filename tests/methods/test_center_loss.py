"""The two center updates against float64 loops, and DMUE-C's center placements."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from relabscope.config import resolve
from relabscope.methods import build_method
from relabscope.methods.center_loss import CenterLoss


def _update64(centers: np.ndarray, x: np.ndarray, labels: list[int], alpha: float, rule: str) -> np.ndarray:
    """One update of already-initialised centers, class by class."""
    out = centers.copy()
    b = len(labels)
    for j in range(len(centers)):
        members = [i for i in range(b) if labels[i] == j]
        if not members:
            continue
        gap = sum(centers[j] - x[i] for i in members)
        step = gap / (1 + len(members)) if rule == "wen" else 2.0 * gap / b
        out[j] = centers[j] - alpha * step
    return out


@pytest.mark.parametrize("rule", ["wen", "sgd"])
def test_update_matches_float64(rule: str) -> None:
    rng = np.random.default_rng(0)
    k, d, alpha = 4, 6, 0.5
    first, second = rng.normal(size=(12, d)), rng.normal(size=(12, d)) + 1.0
    labels_1, labels_2 = [0, 1, 2, 3] * 3, [0, 0, 0, 1, 1, 2, 2, 2, 2, 2, 0, 1]  # class 3 absent in step 2
    center = CenterLoss(k, d, alpha=alpha, update=rule).double()
    center.update(torch.tensor(first), torch.tensor(labels_1))
    start = np.stack([first[[i for i in range(12) if labels_1[i] == j]].mean(axis=0) for j in range(k)])
    np.testing.assert_allclose(center.centers.numpy(), start, rtol=1e-12)  # first sight: the batch mean
    center.update(torch.tensor(second), torch.tensor(labels_2))
    np.testing.assert_allclose(center.centers.numpy(), _update64(start, second, labels_2, alpha, rule), rtol=1e-12)


def test_the_port_moves_centers_more_slowly() -> None:
    """At batch 64 over 7 classes, Wen's rule closes ~0.45 of a center's gap to its batch
    mean per step, the port's SGD 2 * 0.5 * n_j / B ~ 0.14."""
    rng = np.random.default_rng(1)
    x, labels = torch.tensor(rng.normal(size=(64, 8))), torch.arange(64) % 7
    moved = {}
    for rule in ("wen", "sgd"):
        c = CenterLoss(7, 8, update=rule).double()
        c.update(torch.zeros(7, 8, dtype=torch.float64), torch.arange(7))  # every center starts at 0
        c.update(x, labels)
        moved[rule] = c.centers.norm(dim=1)
    ratio = (moved["wen"] / moved["sgd"]).numpy()
    assert (ratio > 2.5).all() and (ratio < 4.0).all()


def test_an_unknown_rule_is_refused() -> None:
    with pytest.raises(ValueError, match="center update must be one of wen, sgd"):
        CenterLoss(3, 4, update="adam")


@pytest.mark.parametrize("place", ["feature", "neck", "normalized"])
def test_dmue_c_puts_its_center_loss_where_it_is_told(place: str) -> None:
    cfg = resolve({"method": "dmue-c", "dmue_center_on": place, "dmue_center_ramp": False, "gamma": 1.0})
    torch.manual_seed(0)
    model = build_method("dmue-c", 4, cfg)
    model.train()
    images, labels = torch.randn(8, 3, 32, 32), torch.arange(8) % 4
    out = model.training_step(images, labels, epoch=5)
    feature = out.embedding.detach()
    if place == "feature":
        assert out.center_input is None
        pulled = feature
    else:
        pulled = out.center_input.detach()
        if place == "normalized":
            torch.testing.assert_close(pulled.norm(dim=1), torch.ones(8))
        else:  # the neck's normalisation: zero mean and unit variance per dimension over the batch
            torch.testing.assert_close(pulled.mean(dim=0), torch.zeros(pulled.shape[1]), atol=1e-5, rtol=0)
    model.after_step(out, labels)  # centers start at the batch means of the pulled vector
    means = torch.stack([pulled[labels == c].mean(dim=0) for c in range(4)])
    torch.testing.assert_close(model.center.centers, means, rtol=1e-5, atol=1e-6)
    again = model.training_step(images, labels, epoch=5)
    assert again.parts["center"].item() > 0
    shrunk = model.center_vector(feature * 0.5)  # a free shrink only where the loss sits on the raw feature
    if place == "feature":
        torch.testing.assert_close(shrunk, feature * 0.5)
    else:  # normalisation undoes it (the neck up to its eps)
        torch.testing.assert_close(shrunk, model.center_vector(feature), rtol=0.02, atol=0.02)
