"""Center loss (Wen et al., ECCV 2016): the "-C" that SCN-C, RUL-C and DMUE-C add.

Choices, since public code differs (see docs/methods.md):

- ``L_C = (1/B) * sum_i ||x_i - c_{y_i}||^2``: the normalisation of the popular PyTorch
  port, which is what the seed paper's gamma values (0.002 .. 0.1) were tuned against.
- Centers are not parameters. After each optimiser step they move by Wen et al.'s rule,
  ``c_j <- c_j - alpha * sum_{i: y_i = j} (c_j - x_i) / (1 + n_j)``, which does not depend
  on gamma or on the batch size.
- ``y`` is the label IN EFFECT: after a relabel the sample pulls toward its new class
  center. That is the seed paper's whole point.
- A center starts at the mean of the first batch that holds its class, rather than at zero
  or noise, so early epochs are not spent dragging embeddings toward an arbitrary point.
"""

from __future__ import annotations

import torch
from torch import nn


class CenterLoss(nn.Module):
    """Class centers in embedding space, with Wen et al.'s update."""

    # buffers (saved with the model, moved with .to()), declared for the type checker
    centers: torch.Tensor  # num_classes x dim
    initialised: torch.Tensor  # num_classes, bool: has the class had a batch yet

    def __init__(self, num_classes: int, dim: int, alpha: float = 0.5):
        super().__init__()
        self.alpha = alpha
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
        present = counts > 0
        fresh = present & ~self.initialised
        # First sight of a class: start at its batch mean.
        means = sums / counts.clamp(min=1).unsqueeze(1)
        self.centers.copy_(torch.where(fresh.unsqueeze(1), means, self.centers))
        self.initialised |= present
        # Wen et al.: delta_j = sum_{y_i=j} (c_j - x_i) / (1 + n_j); c_j -= alpha * delta_j.
        delta = (counts.unsqueeze(1) * self.centers - sums) / (1.0 + counts).unsqueeze(1)
        step = torch.where((present & ~fresh).unsqueeze(1), delta, torch.zeros_like(delta))
        self.centers.sub_(self.alpha * step)
