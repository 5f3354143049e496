"""Loading pretrained weights into a trunk, by name and shape, from a file the user names.

Published weight files name their tensors as their library does (torchvision's
``layer4.1.conv2.weight``, timm's own), with wrappers around them in the FER repositories'
checkpoints; ``load_pretrained`` unwraps those, copies every tensor whose name and shape
match the trunk and reports the rest, so a file for a slightly different network (a 7x7
stem into the small-image 3x3 one) loads what fits. Nothing is ever downloaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from relabscope.errors import RelabscopeError
from relabscope.models.trunk import Trunk


@dataclass
class LoadReport:
    """What ``load_pretrained`` did, for the one line the CLI prints."""

    path: str
    loaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # "key (reason)"
    missing: list[str] = field(default_factory=list)  # trunk tensors left at random init

    def summary(self) -> str:
        total = len(self.loaded) + len(self.missing)
        line = f"pretrained: loaded {len(self.loaded)} of {total} backbone tensors from {self.path}"
        if self.skipped:
            shown = ", ".join(self.skipped[:3]) + (", ..." if len(self.skipped) > 3 else "")
            line += f"; skipped {len(self.skipped)} ({shown})"
        return line


def _state_dict_from(obj: object, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    elif isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    if not isinstance(obj, dict) or not any(isinstance(v, torch.Tensor) for v in obj.values()):
        raise RelabscopeError(f"{path}: not a state dict (nor a dict holding one under 'state_dict')")
    out = {}
    for key, value in obj.items():
        if not isinstance(value, torch.Tensor):
            continue
        for prefix in ("module.", "backbone."):
            if key.startswith(prefix):
                key = key[len(prefix):]
        out[key] = value
    return out


def read_weights_file(path: Path, what: str = "weights") -> object:
    """What a PyTorch weights file holds (tensors only: ``weights_only``), or a one-line
    error naming the file."""
    if not path.is_file():
        raise RelabscopeError(f"{path}: {what} file not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # torch raises several types for foreign or corrupt files
        raise RelabscopeError(f"{path}: not a PyTorch weights file (or one holding more than tensors)") from None


def load_pretrained(trunk: Trunk, path: str | Path) -> LoadReport:
    """Copy matching tensors (by name and shape) from a checkpoint file into ``trunk``.

    Accepts a state dict named as the backbone's published weights are (torchvision's for
    the ResNets, timm's for timm models: ``trunk.pretrained_target``), or a dict with a
    ``state_dict`` (or ``model``) entry whose keys may carry a ``module.`` prefix
    (DataParallel), as the MS-Celeb-1M ResNet-18 files of SCN/RUL/DMUE do. The classifier
    (``fc.*``) and anything else the trunk lacks is skipped and reported; nothing is
    downloaded.
    """
    path = Path(path)
    source = _state_dict_from(read_weights_file(path, "pretrained weights"), path)
    module = trunk.pretrained_target
    target = module.state_dict()
    report = LoadReport(str(path))
    accepted = {}
    for key, value in source.items():
        if key not in target:
            report.skipped.append(f"{key}: not in backbone")
        elif tuple(value.shape) != tuple(target[key].shape):
            report.skipped.append(f"{key}: shape {tuple(value.shape)} != {tuple(target[key].shape)}")
        else:
            accepted[key] = value
            report.loaded.append(key)
    if not accepted:
        raise RelabscopeError(f"{path}: no tensor matches the {trunk.name} backbone")
    module.load_state_dict(accepted, strict=False)
    report.missing = [
        k for k in target if k not in accepted and not k.endswith("num_batches_tracked")
    ]
    return report
