"""ResNet-18 trunk shared by every method, and loading of pretrained weights.

The trunk is torchvision's ResNet-18 without its classifier, keeping torchvision's module
names (``conv1``, ``bn1``, ``layer1`` ... ``layer4``) so that torchvision state dicts and
the MS-Celeb-1M checkpoints FER repositories distribute load by name. Below 100 px the
7x7 stride-2 stem would leave almost nothing of a 48 px face by ``layer4``; small images
get a 3x3 stride-1 stem (the max-pool stays), halving the total stride to 16.

Nothing is ever downloaded: pretrained weights come only from a file the user names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
import torchvision
from torch import nn

from relabscope.errors import RelabscopeError

SMALL_IMAGE = 100  # images below this side length get the small stem
EMBED_DIM = 512


class ResNet18Trunk(nn.Module):
    """ResNet-18 up to global average pooling: ``forward`` gives ``B x 512`` embeddings."""

    def __init__(self, image_size: int):
        super().__init__()
        net = torchvision.models.resnet18(weights=None)
        self.small_stem = image_size < SMALL_IMAGE
        if self.small_stem:
            net.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = (
            net.layer1, net.layer2, net.layer3, net.layer4,
        )
        self.out_dim = EMBED_DIM

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        """Everything before ``layer4``: the part DMUE shares between its branches."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer3(self.layer2(self.layer1(x)))

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """The last convolutional block's output, ``B x 512 x h x w`` (Grad-CAM's layer)."""
        return self.layer4(self.stem(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(nn.functional.adaptive_avg_pool2d(self.feature_map(x), 1), 1)


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


def load_pretrained(trunk: nn.Module, path: str | Path) -> LoadReport:
    """Copy matching tensors (by name and shape) from a checkpoint file into ``trunk``.

    Accepts a torchvision ResNet-18 state dict or a dict with a ``state_dict`` entry whose
    keys may carry a ``module.`` prefix (DataParallel), as the MS-Celeb-1M ResNet-18 files
    of SCN/RUL/DMUE do. The classifier (``fc.*``) and anything else the trunk lacks is
    skipped and reported; nothing is downloaded.
    """
    path = Path(path)
    if not path.is_file():
        raise RelabscopeError(f"{path}: pretrained weights file not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # torch raises several types for foreign or corrupt files
        raise RelabscopeError(f"{path}: not a PyTorch weights file (or one holding more than tensors)") from None
    source = _state_dict_from(obj, path)
    target = trunk.state_dict()
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
        raise RelabscopeError(f"{path}: no tensor matches a ResNet-18 backbone")
    trunk.load_state_dict(accepted, strict=False)
    report.missing = [
        k for k in target if k not in accepted and not k.endswith("num_batches_tracked")
    ]
    return report
