"""What a method builds on: the ``Trunk`` interface every backbone implements.

A trunk maps images to one embedding per image (``forward``: ``B x out_dim``). Methods
need more than that of some trunks, so the interface names it:

- ``feature_map``: the last convolutional block's output, ``B x C x h x w`` (RUL's
  uncertainty heads read it unpooled). Only a *spatial* trunk has one; a vision
  transformer's features are tokens (a Swin's channels-last), and asking for them is a
  one-line error.
- ``cam_layer``: the module Grad-CAM attributes to (its output is that feature map).
- ``SplitTrunk``: a trunk that is ``last_block(stem(x))``, so that DMUE can share the stem
  and copy the last block per class.
- ``pretrained_target``: the module whose parameter names are those of published weight
  files, which ``relabscope.models.pretrained.load_pretrained`` matches by name and shape.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from relabscope.errors import RelabscopeError


class Trunk(nn.Module):
    """A backbone without its classifier. Subclasses set ``name``, ``out_dim`` and
    ``spatial`` and implement ``feature_map`` (and ``forward`` when pooling the feature map
    is not how the network makes its embedding)."""

    #: the ``backbone`` setting's value that builds this trunk
    name: str
    #: the embedding size D of ``forward``
    out_dim: int
    #: whether ``feature_map`` gives ``B x C x h x w``
    spatial: bool = True

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """The last convolutional block's output, ``B x C x h x w``."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``B x out_dim`` embeddings: the feature map, average-pooled."""
        return torch.flatten(nn.functional.adaptive_avg_pool2d(self.feature_map(x), 1), 1)

    def cam_layer(self) -> nn.Module:
        """The module whose output Grad-CAM attributes to: the last convolutional block."""
        raise NotImplementedError

    @property
    def pretrained_target(self) -> nn.Module:
        """The module named like published weight files (the trunk itself by default)."""
        return self

    def feature_map_shape(self, image_size: int) -> tuple[int, int, int]:
        """``(channels, h, w)`` of the feature map for square ``image_size`` input (one
        eval-mode forward, so no batch statistics move)."""
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                shape = self.feature_map(torch.zeros(1, 3, image_size, image_size)).shape[1:]
        finally:
            self.train(was_training)
        return int(shape[0]), int(shape[1]), int(shape[2])

    def no_feature_map(self, needed_by: str) -> RelabscopeError:
        """The error for ``needed_by`` asking a trunk without a spatial feature map for one."""
        return RelabscopeError(f"{needed_by} needs a spatial feature map (C x h x w); backbone {self.name!r} has "
                               "none (its features are tokens or channels-last): use a CNN backbone")


class SplitTrunk(Trunk):
    """A trunk computed as ``last_block(stem(x))``: DMUE shares the stem between its
    branches and gives each its own copy of the last block."""

    #: the attribute holding the last block (its parameters' names start with it)
    last_block_name: ClassVar[str]

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        """Everything before the last block."""
        raise NotImplementedError

    @property
    def last_block(self) -> nn.Module:
        """The last convolutional block."""
        return self.get_submodule(self.last_block_name)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.last_block(self.stem(x))

    def cam_layer(self) -> nn.Module:
        return self.last_block
