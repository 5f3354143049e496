"""The training configuration: one dataclass, read from and written to TOML.

Values are resolved in this order, later winning: built-in defaults, the method's preset
(the seed paper's lr, schedule and batch size for RUL and DMUE), the data set's preset (its
paper hyperparameters, or a small fast setting for ``synthetic``), a ``--config`` TOML file,
then options given on the command line. The resolved config is written next to the
run log as ``config.toml`` and stored inside the log, so a run can always be repeated.

Epoch numbers a user types (``relabel_epoch``) are 1-based, as in the papers ("relabel
from epoch 10"); epochs inside the run log are 0-based array rows.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from relabscope.errors import RelabscopeError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

DEVICES = ("auto", "cpu", "cuda")
RELABEL_SCOPES = ("all", "low")
LR_SCHEDULES = ("exponential", "step")


@dataclass
class TrainConfig:
    """Everything that decides what a training run does. Field names are the CLI options."""

    dataset: str = "synthetic"
    data: str | None = None
    dataset_options: dict[str, Any] = field(default_factory=dict)
    method: str = "scn-c"
    noise: float = 0.0
    noise_file: str | None = None
    noise_seed: int | None = None  # None: use ``seed``
    epochs: int = 70
    batch_size: int = 64
    image_size: int = 224
    lr: float = 1e-3
    weight_decay: float = 1e-4
    lr_decay: float = 0.9  # ExponentialLR factor per epoch, as the SCN and RUL references
    lr_schedule: str = "exponential"  # or "step": lr / 10 after each of lr_milestones epochs
    lr_milestones: list[int] = field(default_factory=lambda: [10, 20])  # DMUE (seed paper)
    head_lr_mult: float = 1.0  # classifier heads train at lr * this (RUL's fc: 10)
    gamma: float = 0.01  # weight of the center loss in "-C" methods
    center_lr: float = 0.5  # alpha of Wen et al.'s center update
    relabel_epoch: int = 10  # 1-based: relabelling starts in this epoch
    delta: float = 0.2  # SCN's margin_2: relabel when p_max - p_label > delta
    relabel_scope: str = "all"  # "all" (reference code) or "low" (SCN paper: low-importance group)
    rr: bool = True  # SCN's rank regularisation
    rr_margin: float = 0.15  # SCN's margin_1
    rr_beta: float = 0.7  # fraction of the batch in the high-importance group
    dmue_ramp: float = 6.0  # DMUE's a: the main loss ramps up and the branches' down over a epochs
    dmue_temperature: float = 1.2  # DMUE's sharpening T of the latent label distribution
    dmue_sp_weight: float = 1000.0  # weight of DMUE's structure-preserving loss (reference: 1000)
    dmue_train_uncertainty: bool = True  # False: leave the s-MLP untrained, as the reference code does
    dmue_center_ramp: bool = True  # DMUE-C: the center loss ramps up with the target branch's losses (False: full weight at once)
    seed: int = 0
    limit: int | None = None  # first N training samples only
    device: str = "auto"
    amp: bool = False  # bf16 autocast on CUDA
    pretrained: str | None = None
    embed_every: int = 5  # store embeddings every N epochs (and always the last)
    probe_every: int = 0  # eval-mode pass over the training set every N epochs (0: never)
    workers: int | None = None  # DataLoader workers (None: from the CPU count)
    cache_gb: float = 8.0  # decode images once into memory when they fit in this many GiB
    keep_optimizer: bool = True  # False: the finished run's checkpoint keeps no optimiser state (smaller; cannot be extended)
    out: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def effective_noise_seed(self) -> int:
        return self.seed if self.noise_seed is None else self.noise_seed


# Settings only some methods read; every other method ignores them, so a sweep does not
# compare them between a stored run of such a method and the grid. A setting not named here
# is read by every method.
_SCN_METHODS = frozenset({"scn", "scn-c"})
_DMUE_METHODS = frozenset({"dmue", "dmue-c"})
_CENTER_METHODS = frozenset({"baseline-c", "scn-c", "rul-c", "dmue-c"})
METHOD_ONLY: dict[str, frozenset[str]] = {
    **dict.fromkeys(("relabel_epoch", "delta", "relabel_scope", "rr", "rr_margin", "rr_beta"), _SCN_METHODS),
    **dict.fromkeys(("gamma", "center_lr"), _CENTER_METHODS),
    **dict.fromkeys(("dmue_ramp", "dmue_temperature", "dmue_sp_weight", "dmue_train_uncertainty"), _DMUE_METHODS),
    "dmue_center_ramp": frozenset({"dmue-c"}),
}

# Settings added after runs were first written, each with the value that describes how a run
# written before it existed was trained: a stored config without the key reads as that
# value (so resuming such a run keeps training it as it was, and a sweep sees the difference).
INTRODUCED: dict[str, Any] = {"dmue_center_ramp": False}


def applies(key: str, method: str) -> bool:
    """Whether ``method`` reads the setting ``key`` (see METHOD_ONLY)."""
    return method in METHOD_ONLY.get(key, (method,))


def read_run_config(path: str | Path) -> dict[str, Any]:
    """A run's stored config.toml, with the settings it predates filled in (INTRODUCED)."""
    return {**INTRODUCED, **read_toml(path)}


# Per method: the hyperparameters of the seed paper's re-implementation (its Sec. IV-A).
# RUL: Adam 2e-4 for the backbone and heads, 10x for the classifier (the reference code),
# ExponentialLR 0.9, batch 64. DMUE: lr 0.01 divided by 10 after epochs 10 and 20, batch 72.
_RUL = {"lr": 2e-4, "head_lr_mult": 10.0, "batch_size": 64}
_DMUE = {"lr": 0.01, "lr_schedule": "step", "lr_milestones": [10, 20], "batch_size": 72}
METHOD_PRESETS: dict[str, dict[str, Any]] = {"rul": _RUL, "rul-c": _RUL, "dmue": _DMUE, "dmue-c": _DMUE}

# Per data set: the hyperparameters the seed paper reports (gamma per data set) and the
# image size the references train at. ``synthetic`` is tuned to finish in minutes on 2 CPU
# cores while still relabelling: small images, few epochs, relabelling from epoch 4.
# A preset may hold per-method settings under "methods", applied after the method's preset.
# On synthetic, DMUE (trained from scratch, 8 epochs) gets an lr like the other methods', its
# ramp scaled to the run length, and a lighter structure-preserving term: at the reference
# weight of 1000 it dominates the loss of a randomly initialised network and the target
# branch stays at chance for the whole run (docs/methods.md).
_SYNTHETIC_DMUE = {"lr": 1e-3, "dmue_ramp": 3.0, "dmue_sp_weight": 100.0, "lr_milestones": [6]}
PRESETS: dict[str, dict[str, Any]] = {
    "synthetic": {
        "image_size": 32,
        "epochs": 8,
        "relabel_epoch": 4,
        "embed_every": 1,
        "gamma": 0.01,
        "methods": {"dmue": _SYNTHETIC_DMUE, "dmue-c": _SYNTHETIC_DMUE},
    },
    "rafdb": {"image_size": 224, "gamma": 0.01},
    "fer2013": {"image_size": 224, "gamma": 0.002},
    "ferplus": {"image_size": 224, "gamma": 0.1},
    "affectnet": {"image_size": 224, "gamma": 0.02},
    "affectnet8": {"image_size": 224, "gamma": 0.02},
    "imagefolder": {"image_size": 224, "gamma": 0.01},
}

FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def _normalise_keys(values: dict[str, Any], where: str) -> dict[str, Any]:
    out = {}
    for key, value in values.items():
        name = key.replace("-", "_")
        if name not in FIELDS:
            raise RelabscopeError(f"{where}: unknown setting {key!r}")
        out[name] = value
    return out


def load_toml(path: str | Path) -> dict[str, Any]:
    """A TOML file's values: FileNotFoundError when it is missing, a one-line
    RelabscopeError when it is not valid TOML."""
    try:
        with Path(path).open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise RelabscopeError(f"{path}: not valid TOML ({exc})") from None


def read_toml(path: str | Path) -> dict[str, Any]:
    """Settings from a TOML file with the CLI's keys (dashes or underscores)."""
    try:
        values = load_toml(path)
    except FileNotFoundError:
        raise RelabscopeError(f"{path}: config file not found") from None
    return _normalise_keys(values, str(path))


def write_toml(config: TrainConfig, path: str | Path) -> None:
    """Write ``config`` as TOML (None values are left out: TOML has no null)."""
    import tomli_w

    values = {k: v for k, v in config.to_dict().items() if v is not None}
    Path(path).write_text(tomli_w.dumps(values))


def resolve(
    overrides: dict[str, Any] | None = None, config_file: str | Path | None = None
) -> TrainConfig:
    """Defaults, then the data set's preset, then ``config_file``, then ``overrides``."""
    file_values = read_toml(config_file) if config_file else {}
    overrides = _normalise_keys(overrides or {}, "option")
    dataset = overrides.get("dataset", file_values.get("dataset", TrainConfig.dataset))
    method = overrides.get("method", file_values.get("method", TrainConfig.method))
    preset = dict(PRESETS.get(dataset, {}))
    per_method = preset.pop("methods", {}).get(method, {})
    values = {**METHOD_PRESETS.get(method, {}), **preset, **per_method, **file_values, **overrides}
    return validate(TrainConfig(**values), str(config_file or "invalid setting"))


_TYPES = {"int": int, "float": float, "bool": bool, "str": str, "dict[str, Any]": dict, "list[int]": list}


def _coerce(name: str, annotation: str, value: Any, fail: Any) -> Any:
    """Check ``value`` against the field's annotation; ints are accepted for floats."""
    base, _, rest = annotation.partition(" | ")
    if value is None and rest == "None":
        return None
    if base == "list[int]":
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            fail(f"{name} must be a list of whole numbers, got {value!r}")
        return list(value)
    kind = _TYPES[base]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        fail(f"{name} must be {base}, got {value!r}")
    return value


def validate(cfg: TrainConfig, where: str = "config") -> TrainConfig:
    """Check types and ranges; raise one line naming the setting."""
    from relabscope.data import DATASETS
    from relabscope.methods import METHODS

    def fail(msg: str) -> None:
        raise RelabscopeError(f"{where}: {msg}")

    for name, f in FIELDS.items():
        setattr(cfg, name, _coerce(name, str(f.type), getattr(cfg, name), fail))
    if cfg.dataset not in DATASETS:
        fail(f"unknown dataset {cfg.dataset!r}; choose one of {', '.join(DATASETS)}")
    if cfg.method not in METHODS:
        fail(f"unknown method {cfg.method!r}; choose one of {', '.join(METHODS)}")
    if not (0.0 <= cfg.noise < 1.0) or math.isnan(cfg.noise):
        fail(f"noise must be in [0, 1), got {cfg.noise}")
    if cfg.noise and cfg.noise_file:
        fail("give either noise or noise_file, not both")
    for name in ("epochs", "batch_size", "image_size", "relabel_epoch", "embed_every"):
        if not isinstance(getattr(cfg, name), int) or getattr(cfg, name) < 1:
            fail(f"{name} must be a positive whole number, got {getattr(cfg, name)!r}")
    if cfg.batch_size < 2:
        fail("batch_size must be at least 2 (batch normalisation needs two samples)")
    if cfg.probe_every < 0:
        fail("probe_every must be >= 0")
    if cfg.limit is not None and cfg.limit < 2:
        fail(f"limit must be at least 2, got {cfg.limit}")
    if cfg.device not in DEVICES:
        fail(f"device must be one of {', '.join(DEVICES)}, got {cfg.device!r}")
    if cfg.lr_schedule not in LR_SCHEDULES:
        fail(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {cfg.lr_schedule!r}")
    if any(m < 1 for m in cfg.lr_milestones) or cfg.lr_milestones != sorted(set(cfg.lr_milestones)):
        fail(f"lr_milestones must be increasing positive epoch counts, got {cfg.lr_milestones}")
    if cfg.relabel_scope not in RELABEL_SCOPES:
        fail(f"relabel_scope must be one of {', '.join(RELABEL_SCOPES)}")
    for name in ("lr", "center_lr", "lr_decay", "head_lr_mult", "dmue_ramp", "dmue_temperature"):
        if not getattr(cfg, name) > 0:
            fail(f"{name} must be positive")
    for name in ("gamma", "delta", "weight_decay", "rr_margin", "dmue_sp_weight"):
        if getattr(cfg, name) < 0:
            fail(f"{name} must be >= 0")
    if not 0 < cfg.rr_beta < 1:
        fail("rr_beta must be in (0, 1)")
    if cfg.workers is not None and cfg.workers < 0:
        fail("workers must be >= 0")
    return cfg
