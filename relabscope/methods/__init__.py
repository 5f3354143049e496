"""Training methods, by the name the CLI accepts: what each builds, reads and presets.

``METHODS`` maps a name to a :class:`MethodEntry`, which says everything relabscope needs
to know about a method: the class that implements it (a
:class:`~relabscope.methods.base.Method`), whether it adds the seed paper's center loss
(a name ending in ``-c``) and whether it relabels, the settings of its own
(``relabscope.methods.settings``), the hyperparameters its paper trained with, and its
quirks under torchrun. The trainer, the config rules, the CLI, the sweep and resume read
these, so a new method is its module and one line here (docs/adding-a-method.md). The
registry names its classes by module path and imports them when a method is built, as
``relabscope.data.DATASETS`` does for loaders: the CLI, the config and the dashboard read
the registry without loading torch (about 1.5 s and 250 MB), which the networks need.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import import_module
from typing import TYPE_CHECKING, Any, Mapping, Protocol

from relabscope.lazy import lazy_exports
from relabscope.methods.settings import CenterLossSettings, DMUECenterSettings, DMUESettings, RelabelSettings, SCNSettings

if TYPE_CHECKING:
    from relabscope.config import TrainConfig
    from relabscope.methods.base import Method


class MethodClass(Protocol):
    """How the registry builds a method: every Method subclass takes ``with_center``, and
    adds the center loss itself once it knows its embedding size."""

    def __call__(self, num_classes: int, cfg: TrainConfig, with_center: bool = False) -> Method: ...


@dataclass(frozen=True)
class MethodEntry:
    """Everything relabscope needs to know about one method, so that adding a method is its
    module and one line here (docs/adding-a-method.md).

    Attributes:
        target: ``"module:Class"``, the :class:`~relabscope.methods.base.Method` subclass.
        with_center: it adds the seed paper's center loss (a name ending in ``-c``); brings
            :class:`CenterLossSettings`.
        settings: the settings dataclasses of its own (``relabscope.methods.settings``).
        presets: its hyperparameters per named preset (``PRESET_NAMES``; the ``preset``
            setting picks one), applied before the data set's preset.
        on_dataset: its settings on a data set (by name), applied after the data set's
            preset (``config.PRESETS``).
        relabels: its ``relabel`` proposes labels that the trainer applies through the
            relabel guards; brings :class:`RelabelSettings` (``relabel_epoch`` and the
            guards), which the trainer, the sweep's guard axis and resume read.
        splits_backbone: it copies the backbone's last block (DMUE's branches), so only a
            backbone that splits into a stem and a last block will do (the config refuses
            others before any data is loaded).
        sync_bn: ``--sync-bn`` may convert its batch norms (DMUE's branches run on parts of
            a batch, which SyncBatchNorm cannot pool).
        unused_parameters: some batches leave parameters without a gradient (DMUE's
            branches): DDP must look for them.
        in_default_sweep: ``relabscope sweep`` trains it when no ``--methods`` are given.
    """

    target: str
    with_center: bool = False
    settings: tuple[type, ...] = ()
    presets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    on_dataset: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    relabels: bool = False
    splits_backbone: bool = False
    sync_bn: bool = True
    unused_parameters: bool = False
    in_default_sweep: bool = True

    @property
    def reads(self) -> tuple[type, ...]:
        """Every settings class the method reads beyond the shared ones: the relabel group
        when it relabels, its own, the center loss's when it adds one."""
        return ((RelabelSettings,) if self.relabels else ()) + self.settings + \
            ((CenterLossSettings,) if self.with_center else ())

    def preset(self, name: str) -> Mapping[str, Any]:
        """The settings preset ``name`` gives this method (empty when it changes none)."""
        return self.presets.get(name, {})

    def load(self) -> MethodClass:
        """The class implementing the method (imports its module, and so torch)."""
        module, _, name = self.target.partition(":")
        cls: MethodClass = getattr(import_module(module), name)
        return cls


#: "reference": each method as its own reference code trains it; "seed-paper": the seed
#: paper's re-implementation of all three (its Sec. IV-A), for rerunning its Table 3.
PRESET_NAMES = ("reference", "seed-paper")
# SCN's reference: Adam 1e-3, ExponentialLR 0.9, batch 64, 70 epochs (the shared defaults).
# RUL's: Adam 2e-4 with the classifier at 10x, ExponentialLR 0.9, batch 64, 60 epochs.
# DMUE's: lr 0.01 divided by 10 after epochs 10 and 20, batch 72, 36 epochs.
# The seed paper: SCN batch 1024, lr 0.1 with MultiStepLR (milestones not stated: those it
# states for DMUE, 10 and 20); RUL and DMUE as their references (it states their batch, lr
# and schedule, not their epochs); gamma per data set (relabscope.config.PRESETS).
_SCN = {"seed-paper": {"batch_size": 1024, "lr": 0.1, "lr_schedule": "step", "lr_milestones": [10, 20]}}
_RUL_REF = {"lr": 2e-4, "head_lr_mult": 10.0, "batch_size": 64, "epochs": 60}
_RUL = {"reference": _RUL_REF, "seed-paper": _RUL_REF}
_DMUE_REF = {"lr": 0.01, "lr_schedule": "step", "lr_milestones": [10, 20], "batch_size": 72, "epochs": 36}
_DMUE = {"reference": _DMUE_REF, "seed-paper": _DMUE_REF}
# On synthetic data, DMUE (trained from scratch, 8 epochs) gets an lr like the other
# methods', its ramp scaled to the run length, and a lighter structure-preserving term: at
# the reference weight of 1000 it dominates the loss of a randomly initialised network and
# the target branch stays at chance for the whole run (docs/methods.md).
_DMUE_SYNTHETIC = {"synthetic": {"lr": 1e-3, "dmue_ramp": 3.0, "dmue_sp_weight": 100.0, "lr_milestones": [6]}}
_DMUE_QUIRKS: dict[str, Any] = {"splits_backbone": True, "sync_bn": False, "unused_parameters": True,
                                "on_dataset": _DMUE_SYNTHETIC}

METHODS: dict[str, MethodEntry] = {
    "baseline": MethodEntry("relabscope.methods.baseline:Baseline"),
    "baseline-c": MethodEntry("relabscope.methods.baseline:Baseline", with_center=True, in_default_sweep=False),
    "scn": MethodEntry("relabscope.methods.scn:SCN", settings=(SCNSettings,), presets=_SCN, relabels=True),
    "scn-c": MethodEntry("relabscope.methods.scn:SCN", True, (SCNSettings,), _SCN, relabels=True),
    "rul": MethodEntry("relabscope.methods.rul:RUL", presets=_RUL),
    "rul-c": MethodEntry("relabscope.methods.rul:RUL", True, presets=_RUL),
    "dmue": MethodEntry("relabscope.methods.dmue:DMUE", settings=(DMUESettings,), presets=_DMUE, **_DMUE_QUIRKS),
    "dmue-c": MethodEntry("relabscope.methods.dmue:DMUE", True, (DMUESettings, DMUECenterSettings), _DMUE,
                          **_DMUE_QUIRKS),
}


def default_sweep() -> list[str]:
    """The methods ``relabscope sweep`` trains when given none (``in_default_sweep``)."""
    return [name for name, entry in METHODS.items() if entry.in_default_sweep]


def build_method(name: str, num_classes: int, cfg: TrainConfig) -> Method:
    """Instantiate method ``name`` for ``num_classes`` classes under ``cfg``."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}")
    entry = METHODS[name]
    return entry.load()(num_classes, cfg, with_center=entry.with_center)


#: the torch classes, loaded on first use (see the module docstring)
__getattr__, __dir__ = lazy_exports(__name__, {"Method": "relabscope.methods.base", "StepOutput": "relabscope.methods.base",
                                               "CenterLoss": "relabscope.methods.center_loss"})


__all__ = ["METHODS", "PRESET_NAMES", "CenterLoss", "Method", "MethodEntry", "StepOutput", "build_method",
           "default_sweep"]
