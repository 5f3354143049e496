"""The Method interface: what the trainer needs from a training method, and no more.

A method owns its network (trunk and heads), computes its loss for one batch given the
labels in effect, may propose new labels (relabelling), and may keep state that is not a
parameter (center-loss centers). The trainer owns everything else: data, optimiser steps,
the label state, hooks, checkpoints. Adding RUL or DMUE means writing one of these; the
loop does not change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from relabscope.methods.center_loss import CenterLoss
from relabscope.models.pretrained import LoadReport, load_pretrained
from relabscope.models.trunk import Trunk

if TYPE_CHECKING:
    from relabscope.config import TrainConfig


@dataclass
class StepOutput:
    """One training batch's results.

    ``loss`` is what the trainer backpropagates; ``logits`` (B x K) are what predictions,
    probabilities and relabelling read; ``embedding`` (B x D) is the vector logged, whose
    class means define distances, and on which "-C" methods put their center loss;
    ``sample_loss`` (B) is each sample's classification loss; ``fields`` holds the
    method's own per-sample quantities (SCN's importance weight), named in
    ``Method.sample_fields``; ``parts`` holds scalar loss terms for display;
    ``center_input`` is the vector the center loss pulled when it is not ``embedding``
    (DMUE-C with ``dmue_center_on`` neck or normalized), so the centers follow that one.
    """

    loss: torch.Tensor
    logits: torch.Tensor
    embedding: torch.Tensor
    sample_loss: torch.Tensor
    fields: dict[str, torch.Tensor] = field(default_factory=dict)
    parts: dict[str, torch.Tensor] = field(default_factory=dict)
    center_input: torch.Tensor | None = None


class Method(nn.Module):
    """Base class of training methods. Subclasses set the class attributes and override
    ``training_step`` and ``predict``; the rest has sensible defaults."""

    #: per-sample quantities this method logs: name -> trailing shape (() for a scalar); a
    #: class attribute, or set in ``__init__`` when the shape depends on the classes (DMUE)
    sample_fields: dict[str, tuple[int, ...]] = {}
    #: the trunk, set by the subclass from ``build_backbone(cfg.backbone, ...)``
    #: (``load_pretrained`` loads into it, ``cam_layer`` reads it)
    backbone: Trunk

    def __init__(self, num_classes: int, cfg: TrainConfig):
        super().__init__()
        self.num_classes = num_classes
        self.cfg = cfg
        self.embed_dim = 0  # set by the subclass once its network is built
        self.center: CenterLoss | None = None

    def add_center_loss(self, embed_dim: int) -> None:
        """Attach the "-C" center loss on ``embed_dim``-d embeddings (call from __init__)."""
        self.center = CenterLoss(self.num_classes, embed_dim, alpha=self.cfg.center_lr,
                                 update=self.cfg.center_update)

    def center_term(self, embedding: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``gamma * L_C`` for "-C" methods (labels in effect); zero otherwise."""
        if self.center is None:
            return embedding.new_zeros(())
        return self.cfg.gamma * self.center.loss(embedding, labels)

    def training_step(self, images: torch.Tensor, labels: torch.Tensor, epoch: int) -> StepOutput:
        """Forward one augmented batch and compute the loss against ``labels`` (in effect)."""
        raise NotImplementedError

    def forward(self, images: torch.Tensor, labels: torch.Tensor, epoch: int) -> StepOutput:
        """``training_step``: what DDP calls under torchrun (it syncs gradients of what a
        module's forward computed)."""
        return self.training_step(images, labels, epoch)

    def predict(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Eval-mode logits (B x K) and embeddings (B x D)."""
        raise NotImplementedError

    def relabel(self, out: StepOutput, labels: torch.Tensor, epoch: int) -> torch.Tensor:
        """The labels this method proposes for the batch (``labels`` where it proposes no
        change); the trainer calls it only for methods the registry marks ``relabels``, from
        ``relabel_epoch`` on, and takes the proposals through the relabel guards."""
        return labels

    @torch.no_grad()
    def after_step(self, out: StepOutput, labels: torch.Tensor) -> None:
        """Update non-parameter state after the optimiser step (the centers)."""
        if self.center is not None:
            pulled = out.embedding if out.center_input is None else out.center_input
            self.center.update(pulled.detach(), labels)

    def heads(self) -> list[nn.Module]:
        """Classifier heads that train at ``lr * head_lr_mult`` (none by default)."""
        return []

    def param_groups(self) -> list[dict[str, Any]]:
        """Parameter groups for the optimiser: everything at the base lr, then the heads
        (when the method names any) at ``lr * head_lr_mult``. Frozen parameters are left out."""
        head_ids = {id(p) for m in self.heads() for p in m.parameters()}
        body = [p for p in self.parameters() if p.requires_grad and id(p) not in head_ids]
        head = [p for p in self.parameters() if p.requires_grad and id(p) in head_ids]
        groups: list[dict[str, Any]] = [{"params": body}]
        if head:
            groups.append({"params": head, "lr": self.cfg.lr * self.cfg.head_lr_mult})
        return groups

    def epoch_arrays(self) -> dict[str, torch.Tensor]:
        """Arrays logged once per epoch: the learned centers of "-C" methods."""
        return {} if self.center is None else {"centers": self.center.centers}

    def load_pretrained(self, path: str) -> LoadReport:
        """Load backbone weights from a file (methods with several trunks override this)."""
        return load_pretrained(self.backbone, path)

    def cam_layer(self) -> nn.Module:
        """Grad-CAM's layer: the backbone's last convolutional block (``Trunk.cam_layer``)."""
        return self.backbone.cam_layer()
