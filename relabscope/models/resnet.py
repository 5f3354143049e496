"""torchvision's ResNet-18, -34 and -50 as trunks.

The trunk is torchvision's ResNet without its classifier, keeping torchvision's module
names (``conv1``, ``bn1``, ``layer1`` ... ``layer4``) so that torchvision state dicts and
the MS-Celeb-1M checkpoints FER repositories distribute load by name. Below 100 px the
7x7 stride-2 stem would leave almost nothing of a 48 px face by ``layer4``; small images
get a 3x3 stride-1 stem (the max-pool stays), halving the total stride to 16.

Nothing is ever downloaded: the networks start from random weights (``weights=None``).
"""

from __future__ import annotations

import torch
import torchvision
from torch import nn

from relabscope.models.trunk import SplitTrunk

SMALL_IMAGE = 100  # images below this side length get the small stem


class ResNetTrunk(SplitTrunk):
    """A torchvision ResNet up to global average pooling: ``forward`` gives ``B x 512``
    embeddings for resnet18 and resnet34, ``B x 2048`` for resnet50. ``layer4`` is the
    last block, everything before it the stem."""

    last_block_name = "layer4"

    def __init__(self, name: str, image_size: int):
        super().__init__()
        net = getattr(torchvision.models, name)(weights=None)
        self.name = name
        self.small_stem = image_size < SMALL_IMAGE
        if self.small_stem:
            net.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = (
            net.layer1, net.layer2, net.layer3, net.layer4,
        )
        self.out_dim = int(net.fc.in_features)

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        """Everything before ``layer4``: the part DMUE shares between its branches."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer3(self.layer2(self.layer1(x)))
