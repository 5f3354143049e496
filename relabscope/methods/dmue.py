"""DMUE (She et al., CVPR 2021) and DMUE-C (DMUE + center loss, the seed paper).

Network: the ResNet-18 stem and ``layer1..3`` are shared; there are K+1 copies of
``layer4``: one auxiliary branch per class and the target branch. Each branch's pooled
512-d feature goes through ``Dropout(0.5)``, a ``BatchNorm1d(512)`` shared by all
branches, and its own bias-free linear classifier (K-1 outputs for auxiliary branch c,
K for the target). Another backbone works the same way when it splits into a stem and a
last block (``SplitTrunk``: the torchvision ResNets; ResNet-50's feature is 2048-d); a timm
model does not, and is refused when the method is built.

Training, per batch (``e`` the 0-based epoch, ``a = dmue_ramp``):

- **Auxiliary branches.** Branch c trains only on the samples whose label is not c, with
  labels above c shifted down by one (``L_aux``: mean over branches of their CE).
- **Latent label distribution.** Branch c, in eval mode and without gradient, predicts the
  samples labelled c; the softmax is sharpened (``p^(1/T)``, renormalised) and a 0 is
  inserted at position c. ``L_soft`` is the mean squared error between the target
  branch's softmax with the label's entry zeroed and this distribution.
- **Pairwise uncertainty.** Cosine similarities between the target branch's pooled
  features in the batch; ``m_ik`` is sample i's mean similarity to the samples labelled
  k, min-max normalised over k; ``s_i = sigmoid(MLP([m_i, onehot(y_i)]))``;
  ``L_main = CE(s z, y)``.
- **Structure preservation.** For each branch, the row-normalised Gram matrix of its
  logits should match that of the target branch's (dropped-out, normalised) features over
  the same samples (``L_sp``, mean over branches of the MSE).
- ``L = r_up(e) (L_main + 0.5 L_soft + w_sp L_sp) + r_down(e) L_aux`` (``w_sp`` =
  ``dmue_sp_weight``, 1000 as the reference) with
  ``r_up(e) = exp(-5 (1 - e/a)^2)`` until ``e = a`` and 1 after, ``r_down(e) = 1`` before
  ``a`` and ``exp(-(1 - a/e)^2)`` after.

Choices where the reference code cannot be followed as is (docs/methods.md lists them):
relabscope trains the uncertainty MLP (the reference leaves it out of its optimiser;
``dmue_train_uncertainty=False`` restores that); batches are not skipped when a class has
fewer than two samples (every sample is logged every epoch, so a class absent from a batch
simply adds no branch loss and no similarity column); the latent distribution is read in
eval mode, so branch c's batch statistics never include class c; the shared neck keeps
separate running statistics for the target branch and for the auxiliary branches (shared
scale and shift), because inference normalises target features with them and DMUE-C's
center loss shrinks target features far below the branches' (with one set of statistics,
DMUE-C's test accuracy fell from 65 % to 41 % over the last epochs on synthetic data while
its training accuracy rose). Predictions, logged
probabilities and the embedding come from the target branch alone: ``z`` unscaled by
``s`` and the pooled 512-d feature; DMUE-C puts the center loss on that feature and ramps
it up with the target branch's other losses (``r_up(e) gamma L_C``;
``dmue_center_ramp=False`` gives it full weight at once): unramped, it is in the first
epochs the only loss that weighs on the target ``layer4`` and pulls every target feature
toward one point, from which bf16 autocast runs did not recover (docs/methods.md has the
measurements; ``benchmarks/dmue_center_ramp.py`` reproduces them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import math

import torch
import torch.nn.functional as F
from torch import nn

from relabscope.methods.base import Method, StepOutput
from relabscope.errors import RelabscopeError
from relabscope.models.backbone import build_backbone
from relabscope.models.names import split_problem
from relabscope.models.pretrained import LoadReport, load_pretrained
from relabscope.models.trunk import SplitTrunk

if TYPE_CHECKING:
    from relabscope.config import TrainConfig

BRANCH_DROPOUT = 0.5
SOFT_WEIGHT = 0.5


def ramp_up(epoch: int, a: float) -> float:
    """Weight of the target branch's losses in 0-based ``epoch``: rises to 1 at ``a``."""
    return math.exp(-5.0 * (1.0 - epoch / a) ** 2) if epoch <= a else 1.0


def ramp_down(epoch: int, a: float) -> float:
    """Weight of the auxiliary branches' loss: 1 until ``a``, then decays."""
    return 1.0 if epoch < a else math.exp(-((1.0 - a / epoch) ** 2))


def shift_labels(labels: torch.Tensor, c: int) -> torch.Tensor:
    """Labels of the samples branch c sees (none is c) in its K-1 output space."""
    return labels - (labels > c).long()


def sharpen(probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """``p^(1/T)`` renormalised over the last axis."""
    p = probs.pow(1.0 / temperature)
    return p / p.sum(dim=-1, keepdim=True)


def insert_zero(dist: torch.Tensor, c: int) -> torch.Tensor:
    """A K-1 distribution made K wide with a 0 at position ``c``."""
    zeros = dist.new_zeros(dist.shape[0], 1)
    return torch.cat([dist[:, :c], zeros, dist[:, c:]], dim=1)


def class_similarity(features: torch.Tensor, labels: torch.Tensor, num_classes: int,
                     mask_absent: bool = True) -> torch.Tensor:
    """``m_ik``: mean cosine similarity of sample i to the batch's samples labelled k
    (itself included), min-max normalised over k.

    A class absent from the batch has no similarity to measure. With ``mask_absent`` its
    entry is the mean of the sample's present entries, which carries no evidence for or
    against it; without, it is 0, which after the min-max scaling reads "least similar"
    (relabscope before this option).
    """
    unit = F.normalize(features.float(), dim=1)
    sim = unit @ unit.t()
    onehot = F.one_hot(labels, num_classes).to(sim.dtype)
    counts = onehot.sum(dim=0)
    present = counts > 0
    mean = (sim @ onehot) / counts.clamp(min=1)
    lo = torch.where(present, mean, torch.full_like(mean, math.inf)).min(dim=1, keepdim=True).values
    hi = torch.where(present, mean, torch.full_like(mean, -math.inf)).max(dim=1, keepdim=True).values
    scaled = (mean - lo) / (hi - lo).clamp(min=1e-12)
    if not mask_absent:
        return torch.where(present, scaled, torch.zeros_like(scaled))
    neutral = (scaled * present).sum(dim=1, keepdim=True) / present.sum().clamp(min=1)
    return torch.where(present, scaled, neutral.expand_as(scaled))


def gram_rows(x: torch.Tensor) -> torch.Tensor:
    """The Gram matrix ``x x^T`` with each row scaled to unit L2 norm."""
    x = x.float()
    return F.normalize(x @ x.t(), dim=1)


def soft_loss(logits: torch.Tensor, labels: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
    """``L_soft``: MSE between softmax(z) with the label's entry zeroed and ``latent``."""
    probs = logits.float().softmax(dim=1)
    mask = torch.ones_like(probs).scatter_(1, labels.unsqueeze(1), 0.0)
    return (probs * mask - latent).pow(2).mean()


class DMUE(Method):
    backbone: SplitTrunk  # its last block is the target branch

    def __init__(self, num_classes: int, cfg: TrainConfig, with_center: bool = False):
        super().__init__(num_classes, cfg)
        if num_classes < 2:
            raise ValueError("DMUE needs at least two classes")
        self.backbone = split_trunk(cfg)
        self.branches = nn.ModuleList(split_trunk(cfg).last_block for _ in range(num_classes))
        dim = self.backbone.out_dim
        self.dropout = nn.Dropout(BRANCH_DROPOUT)
        self.neck = nn.BatchNorm1d(dim)
        self.neck.bias.requires_grad_(False)  # as the reference's BNNeck
        self.neck.weight.requires_grad_(cfg.dmue_train_neck)  # the reference's optimiser never holds it
        # the neck's affine parameters are shared, its statistics are not: ``neck`` tracks the
        # target branch (what inference uses), ``branch_stats`` the auxiliary branches
        self.branch_stats = nn.BatchNorm1d(dim, affine=False)
        self.branch_fc = nn.ModuleList(nn.Linear(dim, num_classes - 1, bias=False) for _ in range(num_classes))
        self.fc = nn.Linear(dim, num_classes, bias=False)
        for layer in [*self.branch_fc, self.fc]:
            nn.init.normal_(layer.weight, std=0.001)
        self.uncertainty = nn.Sequential(nn.Linear(2 * num_classes, num_classes), nn.PReLU(), nn.Linear(num_classes, 1))
        self.uncertainty.requires_grad_(cfg.dmue_train_uncertainty)
        self.embed_dim = dim
        self.sample_fields = {"weight": (), "latent": (num_classes,)}
        if with_center:
            self.add_center_loss(dim)

    # ------------------------------------------------------------------ pieces
    def target(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Shared feature map, pooled target feature (the embedding) and the target
        branch's normalised head input."""
        shared = self.backbone.stem(images)
        feature = _pool(self.backbone.last_block(shared))
        return shared, feature, self.neck(self.dropout(feature))

    def branch_neck(self, x: torch.Tensor) -> torch.Tensor:
        """The shared neck on auxiliary-branch features: the neck's scale and shift, with
        the branches' own running statistics (train mode: batch statistics)."""
        stats = self.branch_stats
        assert stats.momentum is not None  # built with the default 0.1, never cumulative averaging
        return F.batch_norm(x, stats.running_mean, stats.running_var, self.neck.weight, self.neck.bias,
                            training=stats.training, momentum=stats.momentum, eps=self.neck.eps)

    def branch_logits(self, c: int, shared: torch.Tensor) -> torch.Tensor:
        """Auxiliary branch c on rows of the shared feature map (K-1 logits each)."""
        return self.branch_fc[c](self.branch_neck(self.dropout(_pool(self.branches[c](shared)))))

    @torch.no_grad()
    def latent_distribution(self, shared: torch.Tensor, labels: torch.Tensor, groups: list[torch.Tensor]) -> torch.Tensor:
        """Each sample's latent label distribution (B x K): its own class's branch, in
        eval mode, on it; sharpened; 0 at its label."""
        k = self.num_classes
        latent = shared.new_zeros(labels.shape[0], k, dtype=torch.float32)
        modules = (*self.branches, self.branch_stats)
        modes = [m.training for m in modules]
        for m in modules:
            m.eval()
        try:
            for c, rows in enumerate(groups):
                if rows.numel() == 0:
                    continue
                logits = self.branch_fc[c](self.branch_neck(_pool(self.branches[c](shared[rows]))))
                dist = sharpen(logits.float().softmax(dim=1), self.cfg.dmue_temperature)
                latent[rows] = insert_zero(dist, c)
        finally:
            for m, mode in zip(modules, modes):
                m.train(mode)
        return latent

    # ------------------------------------------------------------------ Method API
    def training_step(self, images: torch.Tensor, labels: torch.Tensor, epoch: int) -> StepOutput:
        k = self.num_classes
        shared, feature, head_in = self.target(images)
        logits = self.fc(head_in).float()
        same, other = route(labels, k)

        weight = torch.sigmoid(self.uncertainty(torch.cat(
            [class_similarity(feature, labels, k, self.cfg.dmue_mask_absent), F.one_hot(labels, k).float()],
            dim=1))).squeeze(1)
        sample_loss = F.cross_entropy(weight.unsqueeze(1) * logits, labels, reduction="none")
        main = sample_loss.mean()

        latent = self.latent_distribution(shared, labels, same)
        soft = soft_loss(logits, labels, latent)

        aux_terms, sp_terms = [], []
        for c, rows in enumerate(other):
            if rows.numel() < 2:  # batch norm needs two samples; nothing to learn from one
                continue
            branch = self.branch_logits(c, shared[rows]).float()
            aux_terms.append(F.cross_entropy(branch, shift_labels(labels[rows], c)))
            sp_terms.append(F.mse_loss(gram_rows(branch), gram_rows(head_in[rows])))
        zero = logits.new_zeros(())
        aux = torch.stack(aux_terms).mean() if aux_terms else zero
        sp = torch.stack(sp_terms).mean() if sp_terms else zero

        up, down = ramp_up(epoch, self.cfg.dmue_ramp), ramp_down(epoch, self.cfg.dmue_ramp)
        pulled = self.center_vector(feature)
        center = self.center_term(pulled, labels)
        loss = up * (main + SOFT_WEIGHT * soft + self.cfg.dmue_sp_weight * sp) + down * aux
        if self.center is not None:  # DMUE-C (its settings are read by it alone)
            loss = loss + (up if self.cfg.dmue_center_ramp else 1.0) * center
        return StepOutput(
            loss=loss,
            logits=logits,
            embedding=feature,
            sample_loss=sample_loss,
            fields={"weight": weight, "latent": latent},
            parts={"main": main, "soft": soft, "sp": sp, "aux": aux, "center": center},
            center_input=None if pulled is feature else pulled,
        )

    def center_vector(self, feature: torch.Tensor) -> torch.Tensor:
        """What DMUE-C's center loss pulls (``dmue_center_on``): the pooled target feature
        itself, which every other target loss reads only through the BN neck and so the
        center loss can shrink freely; the neck's output on it (no dropout, this batch's
        statistics, running ones untouched), whose scale normalisation fixes; or the
        L2-normalised feature."""
        if self.center is None or self.cfg.dmue_center_on == "feature":
            return feature
        if self.cfg.dmue_center_on == "normalized":
            return F.normalize(feature.float(), dim=1)
        neck = self.neck
        if not neck.training:
            return neck(feature)
        return F.batch_norm(feature, None, None, neck.weight, neck.bias, training=True, eps=neck.eps)

    def predict(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _, feature, head_in = self.target(images)
        return self.fc(head_in).float(), feature

    def heads(self) -> list[nn.Module]:
        return [self.fc, *self.branch_fc, self.uncertainty]

    def load_pretrained(self, path: str) -> LoadReport:
        """Backbone weights as usual; every auxiliary branch starts from the same last block."""
        report = load_pretrained(self.backbone, path)
        prefix = self.backbone.last_block_name + "."
        if any(key.startswith(prefix) for key in report.loaded):
            for branch in self.branches:
                branch.load_state_dict(self.backbone.last_block.state_dict())
        return report


def split_trunk(cfg: TrainConfig) -> SplitTrunk:
    """The backbone ``cfg`` names, which must split into a stem and a last block."""
    trunk = build_backbone(cfg.backbone, cfg.image_size)
    if not isinstance(trunk, SplitTrunk):
        raise RelabscopeError(split_problem(cfg.method, cfg.backbone))
    return trunk


def route(labels: torch.Tensor, num_classes: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Row indices per class: ``same[c]`` the samples labelled c, ``other[c]`` the rest.

    One host sync per batch (the class counts), instead of one per class: the rows are
    sorted by label once on the device and sliced.
    """
    order = torch.argsort(labels, stable=True)
    counts = torch.bincount(labels, minlength=num_classes).tolist()
    same, other, start = [], [], 0
    for n in counts:
        same.append(order[start:start + n])
        other.append(torch.cat([order[:start], order[start + n:]]))
        start += n
    return same, other


def _pool(fmap: torch.Tensor) -> torch.Tensor:
    return torch.flatten(F.adaptive_avg_pool2d(fmap, 1), 1)
