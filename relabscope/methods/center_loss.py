"""Center loss (Wen et al., ECCV 2016): the "-C" that SCN-C, RUL-C and DMUE-C add.

Choices, since public code differs (see docs/methods.md):

- ``L_C = (1/B) * sum_i ||x_i - c_{y_i}||^2``: the normalisation of the popular PyTorch
  port, which is what the seed paper's gamma values (0.002 .. 0.1) were tuned against.
- Centers are not parameters. After each optimiser step they move by one of two rules
  (``center_update``):

  - ``"wen"`` (default): Wen et al.'s ``c_j <- c_j - alpha * sum_{i: y_i = j} (c_j - x_i)
    / (1 + n_j)``, which depends on neither gamma nor the batch size: a center closes
    about ``alpha`` of the gap to its batch mean per step.
  - ``"sgd"``: the popular PyTorch port's (KaiyangZhou/pytorch-center-loss), centers as
    parameters trained by SGD at lr ``alpha`` on ``L_C`` with gamma divided out of the
    gradient: ``c_j <- c_j - alpha * (2 / B) * sum_{i: y_i = j} (c_j - x_i)``, a step of
    ``2 alpha n_j / B`` of the gap, 3-16x slower at batch 64.
- ``y`` is the label IN EFFECT: after a relabel the sample pulls toward its new class
  center. That is the seed paper's whole point.
- A center starts at the mean of the first batch that holds its class, rather than at zero
  or noise, so early epochs are not spent dragging embeddings toward an arbitrary point.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn


#: the center update rules (``center_update``; module docstring)
UPDATES = ("wen", "sgd")


class CenterLoss(nn.Module):
    """Class centers in embedding space, moved by Wen et al.'s rule or the port's SGD."""

    # buffers (saved with the model, moved with .to()), declared for the type checker
    centers: torch.Tensor  # num_classes x dim
    initialised: torch.Tensor  # num_classes, bool: has the class had a batch yet

    def __init__(self, num_classes: int, dim: int, alpha: float = 0.5, update: str = "wen"):
        super().__init__()
        if update not in UPDATES:
            raise ValueError(f"center update must be one of {', '.join(UPDATES)}, not {update!r}")
        self.alpha = alpha
        self.rule = update
        # sums a tensor over the ranks of a torchrun job (identity in one process), so the
        # update uses the global batch's per-class sums and counts on every rank
        self.reduce: Callable[[torch.Tensor], torch.Tensor] = _identity
        self.register_buffer("centers", torch.zeros(num_classes, dim))
        self.register_buffer("initialised", torch.zeros(num_classes, dtype=torch.bool))

    def loss(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean over the batch of the squared distance to the sample's center.

        Classes whose center is not yet initialised contribute nothing (their first batch
        initialises them in ``update``)."""
        x = x.to(self.centers.dtype)
        sq = (x - self.centers[labels]).pow(2).sum(dim=1)
        return (sq * self.initialised[labels]).sum() / x.shape[0]

    @torch.no_grad()
    def update(self, x: torch.Tensor, labels: torch.Tensor) -> None:
        """Move each center toward its class's samples in this batch (no gradient)."""
        x = x.to(self.centers.dtype)
        k = self.centers.shape[0]
        # index_add_ rather than bincount: bincount reads the max label back to the host
        counts = torch.zeros(k, dtype=x.dtype, device=x.device).index_add_(0, labels, torch.ones_like(labels, dtype=x.dtype))
        sums = torch.zeros_like(self.centers).index_add_(0, labels, x)
        batch = x.new_full((1,), float(x.shape[0]))
        both = self.reduce(torch.cat([counts.unsqueeze(1), sums, batch.expand(k, 1)], dim=1))
        counts, sums, batch_size = both[:, 0], both[:, 1:-1], both[0, -1]
        present = counts > 0
        fresh = present & ~self.initialised
        # First sight of a class: start at its batch mean.
        means = sums / counts.clamp(min=1).unsqueeze(1)
        self.centers.copy_(torch.where(fresh.unsqueeze(1), means, self.centers))
        self.initialised |= present
        gap = counts.unsqueeze(1) * self.centers - sums  # sum_{y_i=j} (c_j - x_i)
        if self.rule == "wen":  # delta_j = gap_j / (1 + n_j); c_j -= alpha * delta_j
            delta = gap / (1.0 + counts).unsqueeze(1)
        else:  # the port: d L_C / d c_j = (2 / B) gap_j, one SGD step at lr alpha
            delta = 2.0 * gap / batch_size
        step = torch.where((present & ~fresh).unsqueeze(1), delta, torch.zeros_like(delta))
        self.centers.sub_(self.alpha * step)


def _identity(t: torch.Tensor) -> torch.Tensor:
    return t
