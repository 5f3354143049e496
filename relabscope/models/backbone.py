"""``build_backbone``: the trunk the ``backbone`` setting names.

"resnet18" (the default), "resnet34" and "resnet50" are torchvision's ResNets
(``relabscope.models.resnet``); any other name is a timm model
(``relabscope.models.timm_trunk``, the optional ``[timm]`` extra). Every method builds its
trunk here and reads its embedding size from it, so the run log's ``embed_dim`` follows the
backbone.
"""

from __future__ import annotations

from relabscope.models.names import TORCHVISION_BACKBONES
from relabscope.models.resnet import ResNetTrunk
from relabscope.models.timm_trunk import TimmTrunk
from relabscope.models.trunk import Trunk


def build_backbone(name: str, image_size: int) -> Trunk:
    """The trunk ``name`` for square ``image_size`` images, with random weights.

    Raises a one-line RelabscopeError for a name neither torchvision's nor timm's (or a
    timm name without timm installed), or a timm model that cannot take ``image_size``.
    """
    if name in TORCHVISION_BACKBONES:
        return ResNetTrunk(name, image_size)
    return TimmTrunk(name, image_size)
