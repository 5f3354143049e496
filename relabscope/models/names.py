"""The backbone names relabscope knows without loading torch, and the checks a config can
make on them before any network is built.

The torchvision ResNets are built in; any other name is a timm model, known only once timm
is imported (which loads torch), so the config checks a timm name no further than "timm is
installed" and ``relabscope.models.backbone.build_backbone`` refuses a name timm does not
know. Only the torchvision ResNets split into a shared stem and a last block that a method
can copy (DMUE's per-class branches): timm models differ too much in where their last block
starts for relabscope to cut them reliably.
"""

from __future__ import annotations

import importlib.util

#: the torchvision ResNets, built with ``weights=None`` (``--pretrained`` loads weights)
TORCHVISION_BACKBONES = ("resnet18", "resnet34", "resnet50")
TIMM_HINT = "other names are timm models: pip install relabscope[timm]"


def timm_installed() -> bool:
    """Whether timm can be imported (without importing it, nor torch)."""
    return importlib.util.find_spec("timm") is not None


def backbone_problem(name: str) -> str | None:
    """The ``backbone`` setting's check (completing "backbone ..."): a torchvision name,
    or any other name when timm is installed (whether timm knows it is checked when the
    network is built)."""
    if name in TORCHVISION_BACKBONES or timm_installed():
        return None
    return without_timm(name)


def without_timm(name: str) -> str:
    """What is wrong with backbone ``name`` where timm cannot be imported (completing "backbone ...")."""
    return f"must be one of {', '.join(TORCHVISION_BACKBONES)}, got {name!r} ({TIMM_HINT})"


def splits(name: str) -> bool:
    """Whether backbone ``name`` splits into a shared stem and a copyable last block."""
    return name in TORCHVISION_BACKBONES


def split_problem(method: str, backbone: str) -> str:
    """Why ``method``, which copies its backbone's last block per class, cannot use ``backbone``."""
    return (f"method {method} copies its backbone's last block per class, which needs one of "
            f"{', '.join(TORCHVISION_BACKBONES)}; backbone {backbone!r} does not split into a stem and a last block")
