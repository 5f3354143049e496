"""RUL (Zhang et al., NeurIPS 2021) and RUL-C (RUL + center loss, the seed paper).

- The trunk is kept at its last feature map (C x h x w, no pooling; 512 x h x w for
  ResNet-18). Two heads of the same shape, ``BatchNorm2d(C, affine=False) -> Dropout(0.4)
  -> flatten -> Linear(C h w -> 64) -> BatchNorm1d(64)``, give the mean feature ``mu`` and a
  log-variance; a sample's uncertainty is ``u = mean(exp(logvar))`` over the 64 dims.
- Each sample is paired with a random partner ``pi(i)`` of the batch (possibly itself) and
  their features are mixed in proportion to their uncertainties,
  ``f_i = (u_i mu_i + u_pi mu_pi) / (u_i + u_pi)``; the add-up loss
  ``0.5 CE(fc(f_i), y_i) + 0.5 CE(fc(f_i), y_pi)`` teaches the network to give the harder
  sample of a pair the larger share.
- Tests, predictions, the logged probabilities and the logged embedding use ``mu``:
  ``fc(mu)`` with no mixing. In training the add-up loss reads ``mu`` through the head's
  dropout (as the reference); the logged embedding, the logged probabilities and RUL-C's
  center loss read the same ``mu`` *without* dropout (same batch statistics), so that the
  logged vector of every method is its feature in the training forward without dropout,
  and the center loss pulls on the very vector whose geometry the views measure.
- RUL never relabels: its labels in effect are the given labels throughout.
- The heads need a spatial feature map: a backbone without one (a timm vision
  transformer, whose features are tokens) is refused when the method is built.
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

FEATURE_DIM = 64
HEAD_DROPOUT = 0.4


class UncertaintyHead(nn.Module):
    """RUL's head over the unpooled feature map: ``BN2d -> Dropout -> Linear -> BN1d``."""

    def __init__(self, channels: int, spatial: int, out_dim: int = FEATURE_DIM):
        super().__init__()
        self.norm_in = nn.BatchNorm2d(channels, affine=False)
        self.dropout = nn.Dropout(HEAD_DROPOUT)
        self.linear = nn.Linear(channels * spatial, out_dim)
        self.norm_out = nn.BatchNorm1d(out_dim)

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.dropout(self.norm_in(fmap)), 1)
        return self.norm_out(self.linear(x))

    def with_undropped(self, fmap: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The head's output as ``forward`` gives it (dropout in train mode) and the same
        without dropout, both with gradient. The second goes through the same batch
        statistics without updating the running ones, so training is unchanged by it."""
        normed = self.norm_in(fmap)
        dropped = self.norm_out(self.linear(torch.flatten(self.dropout(normed), 1)))
        if not self.training:
            return dropped, dropped
        return dropped, batch_statistics(self.norm_out, self.linear(torch.flatten(normed, 1)))


def batch_statistics(norm: nn.modules.batchnorm._BatchNorm, x: torch.Tensor) -> torch.Tensor:
    """``norm`` applied in training mode, normalising ``x`` by its batch statistics, with
    its running statistics (and batch count) left as they were. Through the module itself,
    so that under ``--sync-bn`` (a SyncBatchNorm) the statistics are pooled over the ranks
    like the training forward's; a direct ``F.batch_norm`` would use the rank's share alone."""
    count = norm.num_batches_tracked
    momentum, tracked = norm.momentum, None if count is None else count.clone()
    norm.momentum = 0.0  # running = (1 - 0) running + 0 batch
    try:
        return norm(x)
    finally:
        norm.momentum = momentum
        if count is not None and tracked is not None:
            count.copy_(tracked)


def mixing_weights(uncertainty: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """Each sample's share ``u_i / (u_i + u_pi(i))`` of its mixed feature (its partner gets
    the rest)."""
    return uncertainty / (uncertainty + uncertainty[perm])


def mix_features(mu: torch.Tensor, uncertainty: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """``f_i = w_i mu_i + (1 - w_i) mu_pi(i)`` with ``w = mixing_weights(u, pi)``."""
    w = mixing_weights(uncertainty, perm).unsqueeze(1)
    return w * mu + (1 - w) * mu[perm]


def add_up_loss(logits: torch.Tensor, labels: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """Per-sample ``0.5 CE(logits_i, y_i) + 0.5 CE(logits_i, y_pi(i))`` (shape B)."""
    own = F.cross_entropy(logits, labels, reduction="none")
    partner = F.cross_entropy(logits, labels[perm], reduction="none")
    return 0.5 * own + 0.5 * partner


class RUL(Method):
    sample_fields = {"uncertainty": ()}

    def __init__(self, num_classes: int, cfg: TrainConfig, with_center: bool = False):
        super().__init__(num_classes, cfg)
        self.backbone = build_backbone(cfg.backbone, cfg.image_size)
        if not self.backbone.spatial:
            raise self.backbone.no_feature_map(f"method {cfg.method} (its uncertainty heads)")
        channels, h, w = self.backbone.feature_map_shape(cfg.image_size)
        self.mu_head = UncertaintyHead(channels, h * w)
        self.logvar_head = UncertaintyHead(channels, h * w)
        self.fc = nn.Linear(FEATURE_DIM, num_classes)
        self.embed_dim = FEATURE_DIM
        if with_center:
            self.add_center_loss(self.embed_dim)

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``mu`` (B x 64) and the uncertainty ``u`` (B, float32) of each image."""
        fmap = self.backbone.feature_map(images)
        mu = self.mu_head(fmap)
        uncertainty = self.logvar_head(fmap).float().exp().mean(dim=1)
        return mu, uncertainty

    def training_step(self, images: torch.Tensor, labels: torch.Tensor, epoch: int) -> StepOutput:
        fmap = self.backbone.feature_map(images)
        mu, clean = self.mu_head.with_undropped(fmap)
        uncertainty = self.logvar_head(fmap).float().exp().mean(dim=1)
        perm = torch.randperm(mu.shape[0], device=mu.device)
        mixed = mix_features(mu.float(), uncertainty, perm)
        sample_loss = add_up_loss(self.fc(mixed).float(), labels, perm)
        ce = sample_loss.mean()
        center = self.center_term(clean, labels)
        return StepOutput(
            loss=ce + center,
            logits=self.fc(clean).float(),
            embedding=clean,
            sample_loss=sample_loss,
            fields={"uncertainty": uncertainty},
            parts={"add_up": ce, "center": center},
        )

    def predict(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, _ = self.encode(images)
        return self.fc(mu).float(), mu

    def heads(self) -> list[nn.Module]:
        return [self.fc]
