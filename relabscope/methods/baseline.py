"""Baseline: the backbone (ResNet-18 by default) with a linear classifier and cross-entropy;
``baseline-c`` adds the center loss on the pooled feature (512-d for ResNet-18)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from relabscope.methods.base import Method, StepOutput
from relabscope.models.backbone import build_backbone

if TYPE_CHECKING:
    from relabscope.config import TrainConfig


class Baseline(Method):

    def __init__(self, num_classes: int, cfg: TrainConfig, with_center: bool = False):
        super().__init__(num_classes, cfg)
        self.backbone = build_backbone(cfg.backbone, cfg.image_size)
        self.embed_dim = self.backbone.out_dim
        self.fc = nn.Linear(self.embed_dim, num_classes)
        if with_center:
            self.add_center_loss(self.embed_dim)

    def training_step(self, images: torch.Tensor, labels: torch.Tensor, epoch: int) -> StepOutput:
        embedding = self.backbone(images)
        logits = self.fc(embedding).float()
        sample_loss = F.cross_entropy(logits, labels, reduction="none")
        ce = sample_loss.mean()
        center = self.center_term(embedding, labels)
        return StepOutput(
            loss=ce + center,
            logits=logits,
            embedding=embedding,
            sample_loss=sample_loss,
            parts={"ce": ce, "center": center},
        )

    def predict(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        embedding = self.backbone(images)
        return self.fc(embedding).float(), embedding
