"""Tiny generated image data and the relabel rule the integration tests share.

Three classes, each a fixed random template plus noise; 20% of the training labels are
flipped (the clean labels are kept). Small enough that an epoch takes milliseconds."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

K = 3


@dataclass
class TinyData:
    x_train: torch.Tensor
    y_train: torch.Tensor  # the given (noisy) labels
    clean: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def make_data(n_train: int = 96, n_test: int = 48, size: int = 8, channels: int = 1, seed: int = 0) -> TinyData:
    rng = np.random.default_rng(seed)
    templates = rng.normal(size=(K, channels, size, size)).astype(np.float32)

    def split(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = np.arange(n) % K
        x = templates[y] + 0.8 * rng.normal(size=(n, channels, size, size)).astype(np.float32)
        return torch.from_numpy(x), torch.from_numpy(y)

    x_train, clean = split(n_train)
    noisy = rng.random(n_train) < 0.2
    given = clean.clone()
    given[torch.from_numpy(noisy)] = (given[torch.from_numpy(noisy)] + 1) % K
    x_test, y_test = split(n_test)
    return TinyData(x_train, given, clean, x_test, y_test)


def relabel_rule(ids: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor, epoch: int) -> tuple[torch.Tensor,
                                                                                                  torch.Tensor]:
    """From epoch 1, the samples with (id + epoch) % 5 == 0 move to the argmax class, or
    to the next class when the argmax is their label: relabels (and flip-flops) for sure,
    so a test can name every one."""
    if epoch < 1:
        return ids[:0], labels[:0]
    pick = (ids + epoch) % 5 == 0
    pred = logits.detach().argmax(1)
    new = torch.where(pred != labels, pred, (labels + 1) % K)
    return ids[pick], new[pick]
