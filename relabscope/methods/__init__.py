"""Training methods, by the name the CLI accepts: what each builds, reads and presets.

``METHODS`` maps a name to a :class:`MethodEntry`: the class that implements it (a
:class:`~relabscope.methods.base.Method`), whether it adds the seed paper's center loss
(a name ending in ``-c``), the settings it reads beyond the shared ones
(``relabscope.methods.settings``) and the hyperparameters its paper trained with. The
registry names its classes by module path and imports them when a method is built, as
``relabscope.data.DATASETS`` does for loaders: the CLI, the config and the dashboard read
the registry without loading torch (about 1.5 s and 250 MB), which the networks need.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import import_module
from typing import TYPE_CHECKING, Any, Mapping, Protocol

from relabscope.methods.settings import CenterLossSettings, DMUECenterSettings, DMUESettings, SCNSettings

if TYPE_CHECKING:
    from relabscope.config import TrainConfig
    from relabscope.methods.base import Method


class MethodClass(Protocol):
    """How the registry builds a method: every Method subclass takes ``with_center``, and
    adds the center loss itself once it knows its embedding size."""

    def __call__(self, num_classes: int, cfg: TrainConfig, with_center: bool = False) -> Method: ...


@dataclass(frozen=True)
class MethodEntry:
    """One method: ``target`` is ``"module:Class"``; ``settings`` the settings dataclasses it
    reads beyond the shared ones; ``preset`` the hyperparameters of its paper (the seed
    paper's re-implementation, Sec. IV-A), applied before the data set's preset."""

    target: str
    with_center: bool = False
    settings: tuple[type, ...] = ()
    preset: Mapping[str, Any] = field(default_factory=dict)

    def load(self) -> MethodClass:
        """The class implementing the method (imports its module, and so torch)."""
        module, _, name = self.target.partition(":")
        cls: MethodClass = getattr(import_module(module), name)
        return cls


# RUL: Adam 2e-4 for the backbone and heads, 10x for the classifier (the reference code),
# ExponentialLR 0.9, batch 64. DMUE: lr 0.01 divided by 10 after epochs 10 and 20, batch 72.
_RUL = {"lr": 2e-4, "head_lr_mult": 10.0, "batch_size": 64}
_DMUE = {"lr": 0.01, "lr_schedule": "step", "lr_milestones": [10, 20], "batch_size": 72}
_C = (CenterLossSettings,)

METHODS: dict[str, MethodEntry] = {
    "baseline": MethodEntry("relabscope.methods.baseline:Baseline"),
    "baseline-c": MethodEntry("relabscope.methods.baseline:Baseline", True, _C),
    "scn": MethodEntry("relabscope.methods.scn:SCN", False, (SCNSettings,)),
    "scn-c": MethodEntry("relabscope.methods.scn:SCN", True, (SCNSettings, *_C)),
    "rul": MethodEntry("relabscope.methods.rul:RUL", False, (), _RUL),
    "rul-c": MethodEntry("relabscope.methods.rul:RUL", True, _C, _RUL),
    "dmue": MethodEntry("relabscope.methods.dmue:DMUE", False, (DMUESettings,), _DMUE),
    "dmue-c": MethodEntry("relabscope.methods.dmue:DMUE", True, (DMUESettings, DMUECenterSettings, *_C), _DMUE),
}


def build_method(name: str, num_classes: int, cfg: TrainConfig) -> Method:
    """Instantiate method ``name`` for ``num_classes`` classes under ``cfg``."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}")
    entry = METHODS[name]
    return entry.load()(num_classes, cfg, with_center=entry.with_center)


def __getattr__(name: str) -> Any:
    """The torch classes, loaded on first use (see the module docstring)."""
    homes = {"Method": "relabscope.methods.base", "StepOutput": "relabscope.methods.base",
             "CenterLoss": "relabscope.methods.center_loss"}
    if name in homes:
        return getattr(import_module(homes[name]), name)
    raise AttributeError(f"module 'relabscope.methods' has no attribute {name!r}")


__all__ = ["METHODS", "CenterLoss", "Method", "MethodEntry", "StepOutput", "build_method"]
