"""SCN (Wang et al., CVPR 2020) and SCN-C (SCN + center loss, the seed paper).

- Importance weight ``alpha_i = sigmoid(w_a . x_i + b_a)``; logits ``z_i = alpha_i W x_i``.
  Cross-entropy, the relabel softmax and test predictions all use the scaled logits.
- Rank regularisation (RR): the top ``int(beta B)`` weights form the high group;
  ``L_RR = max(0, m1 - (mean_high - mean_low))``. On by default (``rr=False`` drops it,
  as the seed paper's own SCN re-implementation does).
- Relabel rule (eq. 1): from the relabel epoch on, a sample whose max probability beats
  the probability of its label in effect by more than ``delta`` takes the argmax label.
  ``relabel_scope="all"`` applies it to every sample of the batch (the reference code,
  the default); ``"low"`` only to the low-importance group (the SCN paper's text).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from relabscope.methods.base import Method, StepOutput
from relabscope.models.backbone import build_backbone

if TYPE_CHECKING:
    from relabscope.config import TrainConfig


def rank_regularization(weights: torch.Tensor, beta: float, margin: float) -> torch.Tensor:
    """SCN's RR loss on a batch of importance weights (shape B)."""
    n = weights.shape[0]
    k = int(beta * n)
    if k < 1 or k >= n:
        return weights.new_zeros(())
    ranked = torch.sort(weights, descending=True).values
    gap = ranked[:k].mean() - ranked[k:].mean()
    return F.relu(margin - gap)


def relabel_rule(
    probs: torch.Tensor, labels: torch.Tensor, delta: float, eligible: torch.Tensor | None = None
) -> torch.Tensor:
    """Eq. 1: ``argmax p`` where ``p_max - p_label > delta`` (and eligible), else ``labels``."""
    p_max, arg = probs.max(dim=1)
    p_label = probs.gather(1, labels.unsqueeze(1)).squeeze(1)
    change = (p_max - p_label) > delta
    if eligible is not None:
        change &= eligible
    return torch.where(change, arg, labels)


def low_importance(weights: torch.Tensor, beta: float) -> torch.Tensor:
    """Mask of the samples outside the top ``int(beta B)`` importance weights."""
    n = weights.shape[0]
    k = int(beta * n)
    mask = torch.ones(n, dtype=torch.bool, device=weights.device)
    mask[torch.topk(weights, k).indices] = False
    return mask


class SCN(Method):
    sample_fields = {"weight": ()}

    def __init__(self, num_classes: int, cfg: TrainConfig, with_center: bool = False):
        super().__init__(num_classes, cfg)
        self.backbone = build_backbone(cfg.backbone, cfg.image_size)
        self.embed_dim = self.backbone.out_dim
        self.fc = nn.Linear(self.embed_dim, num_classes)
        self.attention = nn.Linear(self.embed_dim, 1)
        if with_center:
            self.add_center_loss(self.embed_dim)

    def _forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        embedding = self.backbone(images)
        weight = torch.sigmoid(self.attention(embedding).float()).squeeze(1)
        logits = weight.unsqueeze(1) * self.fc(embedding).float()
        return logits, embedding, weight

    def training_step(self, images: torch.Tensor, labels: torch.Tensor, epoch: int) -> StepOutput:
        logits, embedding, weight = self._forward(images)
        sample_loss = F.cross_entropy(logits, labels, reduction="none")
        ce = sample_loss.mean()
        rr = (
            rank_regularization(weight, self.cfg.rr_beta, self.cfg.rr_margin)
            if self.cfg.rr
            else logits.new_zeros(())
        )
        center = self.center_term(embedding, labels)
        return StepOutput(
            loss=ce + rr + center,
            logits=logits,
            embedding=embedding,
            sample_loss=sample_loss,
            fields={"weight": weight},
            parts={"ce": ce, "rr": rr, "center": center},
        )

    def predict(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, embedding, _ = self._forward(images)
        return logits, embedding

    @torch.no_grad()
    def relabel(self, out: StepOutput, labels: torch.Tensor, epoch: int) -> torch.Tensor:
        eligible = None
        if self.cfg.relabel_scope == "low":
            eligible = low_importance(out.fields["weight"].detach(), self.cfg.rr_beta)
        probs = out.logits.detach().float().softmax(dim=1)
        return relabel_rule(probs, labels, self.cfg.delta, eligible)
