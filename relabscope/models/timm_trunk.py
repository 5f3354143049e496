"""Any timm model as a trunk (the optional ``[timm]`` extra).

The model is built as ``timm.create_model(name, pretrained=False, num_classes=0)``: random
weights (``--pretrained FILE`` loads a timm state dict by name and shape; nothing is
downloaded) and no classifier, so its forward gives the pooled embedding. timm is imported
here only, when a timm name is asked for.

What a timm model offers differs by family, so the trunk finds out with one eval-mode
forward of a blank image when it is built: the embedding size (``num_features``, or the
head's width where the head adds a layer after pooling, as MobileNetV3's does) and whether
``forward_features`` is a spatial map (CNNs: ``B x C x h x w``) or not (vision
transformers' tokens, ``B x N x D``; Swin's channels-last ``B x h x w x C``). The same forward tells a model that cannot take the run's
image size (a ViT built for 224 px) at once, instead of at the first batch. Grad-CAM
attributes to the module timm's ``feature_info`` names for the last stage; a transformer
has no spatial map, so RUL and Grad-CAM refuse it. timm models keep their own stem at every
image size (no small-image stem).
"""

from __future__ import annotations

import difflib
from typing import Any

import torch
from torch import nn

from relabscope.errors import RelabscopeError
from relabscope.models.names import TORCHVISION_BACKBONES, without_timm
from relabscope.models.trunk import Trunk


class TimmTrunk(Trunk):
    """A timm model without its classifier (``self.model``, named as timm names it)."""

    def __init__(self, name: str, image_size: int):
        super().__init__()
        try:
            import timm  # optional extra: loaded only for a timm backbone
        except ImportError:
            raise RelabscopeError(f"backbone {without_timm(name)}") from None
        if not timm.is_model(name):
            raise RelabscopeError(unknown_message(name, timm.list_models()))
        self.name = name
        # an nn.Module; Any because timm's models share no base class that declares the
        # forward_features / forward_head / feature_info every one of them has
        self.model: Any = timm.create_model(name, pretrained=False, num_classes=0)
        pooled, features = self._probe(image_size)
        self.out_dim = int(pooled.shape[1])
        # a CNN's map is B x C x h x w with C = num_features; a ViT gives tokens (B x N x D),
        # a Swin a channels-last map (B x h x w x C): neither is what RUL's heads or Grad-CAM read
        self.spatial = features.dim() == 4 and features.shape[1] == self.model.num_features

    def _probe(self, image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The embedding and the features of one blank image (eval mode, no gradient)."""
        self.model.eval()
        try:
            with torch.no_grad():
                features = self.model.forward_features(torch.zeros(1, 3, image_size, image_size))
                pooled = self.model.forward_head(features)
        except Exception as exc:  # timm raises AssertionError, RuntimeError, ... for sizes a model refuses
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise RelabscopeError(f"backbone {self.name!r} cannot take {image_size} x {image_size} images "
                                  f"({reason}); set image_size to a size it accepts") from None
        finally:
            self.model.train()
        return pooled, features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        if not self.spatial:
            raise self.no_feature_map("feature_map()")
        return self.model.forward_features(x)

    def cam_layer(self) -> nn.Module:
        if not self.spatial:
            raise self.no_feature_map("Grad-CAM")
        info = getattr(self.model, "feature_info", None)
        if not info:
            raise RelabscopeError(f"Grad-CAM: timm's {self.name!r} names no feature layers (feature_info)")
        return self.model.get_submodule(info[-1]["module"])

    @property
    def pretrained_target(self) -> nn.Module:
        return self.model


def unknown_message(name: str, known: list[str]) -> str:
    """The one line for a backbone name neither torchvision's nor timm's, with the closest names."""
    close = difflib.get_close_matches(name, list(dict.fromkeys([*TORCHVISION_BACKBONES, *known])), n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else " (timm.list_models() lists timm's)"
    return f"unknown backbone {name!r}: not one of {', '.join(TORCHVISION_BACKBONES)} nor a timm model{hint}"
