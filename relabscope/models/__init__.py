"""Networks: the ResNet-18 trunk every method builds on, and pretrained-weight loading."""

from relabscope.models.backbone import EMBED_DIM, LoadReport, ResNet18Trunk, load_pretrained

__all__ = ["EMBED_DIM", "LoadReport", "ResNet18Trunk", "load_pretrained"]
