"""The optimiser and learning-rate schedule a run trains with, built from its config.

Every method trains with Adam (all three references do). Methods name their classifier
heads (:meth:`Method.heads`); those train at ``lr * head_lr_mult`` (RUL's reference code
gives its fc ten times the backbone's rate). The schedule steps once per epoch:
``exponential`` multiplies the rate by ``lr_decay`` (SCN and RUL), ``step`` divides it by
10 after each of ``lr_milestones`` epochs (DMUE in the seed paper).
"""

from __future__ import annotations

import torch

from relabscope.config import TrainConfig
from relabscope.methods.base import Method

STEP_FACTOR = 0.1


def build_optimizer(method: Method, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Adam over the method's parameter groups, with ``cfg.weight_decay``."""
    return torch.optim.Adam(method.param_groups(), lr=cfg.lr, weight_decay=cfg.weight_decay)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> torch.optim.lr_scheduler.LRScheduler:
    """The per-epoch learning-rate schedule ``cfg.lr_schedule`` names."""
    if cfg.lr_schedule == "step":
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(cfg.lr_milestones), gamma=STEP_FACTOR)
    return torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=cfg.lr_decay)
