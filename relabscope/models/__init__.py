"""Networks: the trunks methods build on (``build_backbone``: torchvision's ResNets or any
timm model) and pretrained-weight loading.

The backbone names and their checks (``relabscope.models.names``) need no torch: the config
validates the ``backbone`` setting with them. The networks load torch and are imported on
first use, as ``relabscope.methods`` does for the method classes.
"""

from __future__ import annotations

from relabscope.lazy import lazy_exports
from relabscope.models.names import TORCHVISION_BACKBONES, backbone_problem

_HOMES = {
    "build_backbone": "relabscope.models.backbone",
    "Trunk": "relabscope.models.trunk",
    "SplitTrunk": "relabscope.models.trunk",
    "ResNetTrunk": "relabscope.models.resnet",
    "TimmTrunk": "relabscope.models.timm_trunk",
    "LoadReport": "relabscope.models.pretrained",
    "load_pretrained": "relabscope.models.pretrained",
}
#: the torch classes and functions, loaded on first use (see the module docstring)
__getattr__, __dir__ = lazy_exports(__name__, _HOMES)


__all__ = ["TORCHVISION_BACKBONES", "LoadReport", "ResNetTrunk", "SplitTrunk", "TimmTrunk", "Trunk",
           "backbone_problem", "build_backbone", "load_pretrained"]
