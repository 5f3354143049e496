"""The training configuration: the shared settings, ``TrainConfig`` and everything derived
from the setting specs (validation, TOML in and out, method relevance, resume rules).

Every setting is declared once, with :func:`relabscope.settings.setting`: the shared ones
below (data, optimisation, the run), each method's own in
``relabscope/methods/settings.py``. ``TrainConfig`` is their union; ``validate``, the CLI
options (``relabscope/cli.py``), ``readers``, ``INTRODUCED``, ``HOW_TO_RUN``,
``RESUMABLE`` and docs/settings.md (``python -m relabscope.config``) are derived from the
specs.

Values are resolved in this order, later winning: built-in defaults, the method's preset
(its reference code's lr, schedule, batch size and epochs, or with ``preset="seed-paper"``
the seed paper's: ``relabscope.methods.METHODS``), the data set's
preset (its paper hyperparameters, or a small fast setting for ``synthetic``), a
``--config`` TOML file, then options given on the command line. The resolved config is
written next to the run log as ``config.toml`` and stored inside the log, so a run can
always be repeated.

Epoch numbers a user types (``relabel_epoch``) are 1-based, as in the papers ("relabel
from epoch 10"); epochs inside the run log are 0-based array rows.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

import tomli_w

from relabscope.atomic import atomic_write
from relabscope.data import DATASETS
from relabscope.data.corrections import MISMATCH
from relabscope.errors import RelabscopeError
from relabscope.methods import METHODS, PRESET_NAMES
from relabscope.methods.settings import CenterLossSettings, DMUECenterSettings, DMUESettings, RelabelSettings, SCNSettings
from relabscope.models.names import backbone_problem, split_problem, splits
from relabscope.settings import (NOT_INTRODUCED, Spec, at_least, between, coerce, increasing_positive,
                                 non_negative, positive, positive_whole, setting, specs, type_name)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib


# ---------------------------------------------------------------------- the shared settings
@dataclass
class DataAndOptimSettings:
    """What every method reads: the data, the noise, the optimisation."""

    dataset: str = setting("synthetic", "Data set layout (default: synthetic, generated on first use).",
                           registry=DATASETS)
    data: str | None = setting(None, "Folder holding the data set in its published layout.", path=True)
    dataset_options: dict[str, Any] = setting(
        factory=dict, help="Data set option, e.g. -O num_train=4000 (repeatable).", metavar="KEY=VALUE",
        flags=("-O", "--dataset-option", "dataset_options"))
    method: str = setting("scn-c", "Training method (default: scn-c).", registry=METHODS)
    preset: str = setting(
        "reference", "Hyperparameters each method starts from: reference (its own code's) or seed-paper (the "
                     "seed paper's Sec. IV-A, to rerun its Table 3); the data set's preset and options override.",
        choices=PRESET_NAMES, introduced="reference")
    noise: float = setting(0.0, "Replace each training label with prob. P by a random other class.",
                           check=between(0, 1))
    noise_file: str | None = setting(None, "Published noise file (SCN or RAF-DB format).", path=True)
    noise_matrix: str | None = setting(
        None, "Class-dependent noise: a K x K row-stochastic matrix (CSV, optionally headed by class names, or "
              ".npy); a training label i becomes j with probability [i, j], drawn with the noise seed. The log "
              "records its SHA-256 (docs/methods.md).", path=True, metavar="FILE")
    noise_seed: int | None = setting(None, "Seed of the injected noise (default: --seed).")
    canaries: float = setting(
        0.0, "Fraction of the training labels moved on purpose to another class, chosen by --seed, and recorded "
             "as canaries: run.suspect_quality() then says how well the suspect ranking finds wrong labels on "
             "data without clean labels (docs/analysis.md). 0.02 costs little; 0 plants none.",
        check=between(0, 0.5), metavar="FRACTION", introduced=0.0)
    canary_matrix: str | None = setting(
        None, "Where canaries go: a K x K matrix in --noise-matrix's format; a canary of class i moves to j != i "
              "with probability in proportion to [i, j] (default: uniformly). Write one from an earlier run with "
              "run.noise_matrix_estimate(), so canaries resemble the data's own errors (docs/analysis.md).",
        path=True, metavar="FILE", introduced=None)
    corrections: str | None = setting(
        None, "Reviewers' decisions to train with (a corrections.csv from the review page, run.review or "
              "relabscope corrections --import): relabels applied to the given labels, dropped and ambiguous "
              "samples left out of training; the log records the file's SHA-256 (docs/review.md).",
        path=True, metavar="FILE", introduced=None)
    corrections_mismatch: str = setting(
        "refuse", "A decision of --corrections made on another given label than this run's (its noise drawn "
                  "with another seed, another noise file): refuse the file in one line naming them (refuse), or "
                  "leave those decisions out, counted in the log (skip).", choices=MISMATCH, introduced="refuse")
    epochs: int = setting(70, "Epochs to train (a resumed run may extend it; 70 as SCN's reference, the "
                              "method's preset sets RUL's 60 and DMUE's 36).", check=positive_whole,
                          role="length")
    batch_size: int = setting(64, "Training batch size.",
                              check=at_least(2, "batch normalisation needs two samples"))
    image_size: int = setting(224, "Side length the network sees (below 100 px: small stem).", check=positive_whole)
    backbone: str = setting(
        "resnet18", "Network trunk: resnet18, resnet34 or resnet50 (torchvision, small stem below 100 px) or any "
                    "timm model name (pip install relabscope[timm]); random init, --pretrained loads weights. "
                    "dmue and dmue-c need a torchvision ResNet (they copy its last block per class); rul, rul-c and "
                    "Grad-CAM a CNN (a spatial feature map), not a vision transformer.",
        check=backbone_problem, introduced="resnet18")
    lr: float = setting(1e-3, "Adam learning rate.", check=positive)
    weight_decay: float = setting(1e-4, "Adam weight decay.", check=non_negative)
    lr_decay: float = setting(0.9, "ExponentialLR factor per epoch (the SCN and RUL references).", check=positive)
    lr_schedule: str = setting("exponential", "exponential (SCN, RUL) or step: lr/10 after each milestone (DMUE).",
                               choices=("exponential", "step"))
    lr_milestones: list[int] = setting(
        factory=lambda: [10, 20], help="Epoch counts after which the step schedule divides lr by 10 (default 10,20).",
        metavar="E1,E2", check=increasing_positive)
    head_lr_mult: float = setting(1.0, "Classifier heads train at lr times this (RUL: 10).", check=positive)


@dataclass
class RunSettings:
    """Seeds, devices, logging and where the run goes."""

    seed: int = setting(0, "Seed of everything random in the run.")
    limit: int | None = setting(None, "Train on the first N training samples only.", metavar="N", check=at_least(2))
    device: str = setting("auto", "Device to train on.", choices=("auto", "cpu", "cuda"), role="how")
    amp: bool = setting(False, "bf16 autocast on CUDA.")
    sync_bn: bool = setting(False, "Under torchrun on CUDA: batch-norm statistics over the global batch "
                                   "(SyncBatchNorm) instead of each rank's share.")
    pretrained: str | None = setting(None, "Backbone weights file (a torchvision, timm or MS-Celeb-1M state dict), "
                                           "loaded by name and shape.", path=True)
    embed_every: int = setting(5, "Keep embeddings every N epochs (and the last).", metavar="N",
                               check=positive_whole)
    probe_every: int = setting(0, "Eval-mode embedding pass over the training set every N epochs (0: never).",
                               metavar="N", check=non_negative)
    workers: int | None = setting(None, "Image decoding workers (default: from the CPU count).", check=non_negative,
                                  role="how")
    cache_gb: float = setting(8.0, "Decode images into memory when they fit in this many GiB.", role="how")
    keep_optimizer: bool = setting(
        True, "Keep the optimiser state in a finished run's checkpoint (default; needed to extend it with --resume "
              "--epochs), or drop it: a third of the size.", flags=("--keep-optimizer/--drop-optimizer",), role="how")
    out: str | None = setting(None, "Run directory (default: runs/<method>-<dataset>-<time>).", path=True, role="how")


def method_settings() -> tuple[type, ...]:
    """Every settings class a registered method reads (``MethodEntry.reads``), each once:
    ``TrainConfig`` takes them from the registry, so a method's settings need no second
    list. Reversed, so that the fields of methods listed first come first."""
    seen: list[type] = []
    for entry in METHODS.values():
        seen += [c for c in entry.reads if c not in seen]
    return tuple(reversed(seen))


if TYPE_CHECKING:  # what the type checker sees; at run time, the registry's classes
    class _MethodSettings(DMUECenterSettings, DMUESettings, SCNSettings, RelabelSettings, CenterLossSettings):
        ...
else:
    _MethodSettings = dataclass(type("_MethodSettings", method_settings(), {}))


# Field order (dataclasses take base classes' fields last base first): the data and the
# optimisation, the methods' settings, then the run's.
@dataclass
class TrainConfig(RunSettings, _MethodSettings, DataAndOptimSettings):
    """Everything that decides what a training run does. Field names are the CLI options."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def effective_noise_seed(self) -> int:
        return self.seed if self.noise_seed is None else self.noise_seed


# ---------------------------------------------------------------------- derived from the specs
SPECS: dict[str, Spec] = specs(TrainConfig)
FIELDS: dict[str, dataclasses.Field[Any]] = {f.name: f for f in dataclasses.fields(TrainConfig)}

def readers(key: str) -> frozenset[str] | None:
    """The methods that read the setting ``key`` (those whose ``MethodEntry.reads`` declares
    it), from the registry as it is now; None for a shared setting, which every method
    reads. Every other method ignores a method's setting, so a sweep does not compare it
    between a stored run of such a method and the grid."""
    owner = SPECS[key].owner
    if owner in (RunSettings, DataAndOptimSettings):
        return None
    return frozenset(m for m, entry in METHODS.items() if any(issubclass(c, owner) for c in entry.reads))


# Settings added after runs were first written, each with the value that describes how a run
# written before it existed was trained: a stored config without the key reads as that
# value (so resuming such a run keeps training it as it was, and a sweep sees the difference).
INTRODUCED: dict[str, Any] = {n: s.setting.introduced for n, s in SPECS.items()
                              if s.setting.introduced is not NOT_INTRODUCED}

# Settings that say where and how a run is computed, not what: a resumed run or a sweep may
# change them (a grid started on the CPU may finish on a GPU). A resumed run may also change
# how long it trains.
HOW_TO_RUN: frozenset[str] = frozenset(n for n, s in SPECS.items() if s.setting.role == "how")
RESUMABLE: frozenset[str] = HOW_TO_RUN | {n for n, s in SPECS.items() if s.setting.role == "length"}


def applies(key: str, method: str) -> bool:
    """Whether ``method`` reads the setting ``key`` (:func:`readers`; a key that is no
    setting reads as shared)."""
    methods = readers(key) if key in SPECS else None
    return methods is None or method in methods


# ---------------------------------------------------------------------- presets
# Per data set: the hyperparameters the seed paper reports (gamma per data set) and the
# image size the references train at. ``synthetic`` is tuned to finish in minutes on 2 CPU
# cores while still relabelling: small images, few epochs, relabelling from epoch 4.
# A method's own settings for a data set are its registry entry's (``MethodEntry.on_dataset``),
# applied after the data set's preset.
PRESETS: dict[str, dict[str, Any]] = {
    "synthetic": {
        "image_size": 32,
        "epochs": 8,
        "relabel_epoch": 4,
        "embed_every": 1,
        "gamma": 0.01,
    },
    "rafdb": {"image_size": 224, "gamma": 0.01},
    "fer2013": {"image_size": 224, "gamma": 0.002},
    "ferplus": {"image_size": 224, "gamma": 0.1},
    "affectnet": {"image_size": 224, "gamma": 0.02},
    "affectnet8": {"image_size": 224, "gamma": 0.02},
    "imagefolder": {"image_size": 224, "gamma": 0.01},
}


# ---------------------------------------------------------------------- TOML
def _normalise_keys(values: Mapping[str, Any], where: str) -> dict[str, Any]:
    out = {}
    for key, value in values.items():
        name = key.replace("-", "_")
        if name not in SPECS:
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


def read_run_config(path: str | Path) -> dict[str, Any]:
    """A run's stored config.toml, with the settings it predates filled in (INTRODUCED)."""
    return {**INTRODUCED, **read_toml(path)}


def write_toml(config: TrainConfig, path: str | Path) -> None:
    """Write ``config`` as TOML (None values are left out: TOML has no null), atomically:
    another sweep process may read it at any moment."""
    values = {k: v for k, v in config.to_dict().items() if v is not None}
    with atomic_write(Path(path)) as fh:
        fh.write(tomli_w.dumps(values).encode())


def from_stored(values: Mapping[str, Any]) -> TrainConfig:
    """A TrainConfig from a stored config (a log's or a checkpoint's), keys it does not know
    (settings since removed) left out and settings it predates filled in (INTRODUCED)."""
    return TrainConfig(**{**INTRODUCED, **{k: v for k, v in values.items() if k in SPECS}})


# ---------------------------------------------------------------------- resolve and validate
def resolve(overrides: Mapping[str, Any] | None = None, config_file: str | Path | None = None) -> TrainConfig:
    """Defaults, then the method's and the data set's presets, then ``config_file``, then
    ``overrides``; validated.

    >>> cfg = resolve({"method": "rul", "noise": 0.2})
    >>> cfg.lr, cfg.image_size, cfg.noise     # RUL's preset, synthetic's preset, the option
    (0.0002, 32, 0.2)
    >>> paper = resolve({"method": "scn", "preset": "seed-paper", "dataset": "rafdb"})
    >>> paper.batch_size, paper.lr, paper.lr_schedule, paper.gamma, paper.epochs
    (1024, 0.1, 'step', 0.01, 70)
    """
    file_values = read_toml(config_file) if config_file else {}
    given = _normalise_keys(overrides or {}, "option")
    dataset = given.get("dataset", file_values.get("dataset", SPECS["dataset"].default))
    method = given.get("method", file_values.get("method", SPECS["method"].default))
    named = given.get("preset", file_values.get("preset", SPECS["preset"].default))
    preset = PRESETS.get(dataset, {})
    entry = METHODS.get(method)
    method_preset = entry.preset(named) if entry else {}
    per_method = entry.on_dataset.get(dataset, {}) if entry else {}
    values = {**method_preset, **preset, **per_method, **file_values, **given}
    return validate(TrainConfig(**values), str(config_file or "invalid setting"))


#: checks that involve more than one setting: each returns the problem, or None
RULES: list[Callable[[TrainConfig], str | None]] = [
    lambda c: "give one of noise, noise_file and noise_matrix, not several"
    if sum(map(bool, (c.noise, c.noise_file, c.noise_matrix))) > 1 else None,
    lambda c: "canary_matrix needs canaries > 0" if c.canary_matrix and not c.canaries else None,
    lambda c: split_problem(c.method, c.backbone) if METHODS[c.method].splits_backbone and not splits(c.backbone)
    else None,
]


def validate(cfg: TrainConfig, where: str = "config") -> TrainConfig:
    """Check every setting against its spec (type, allowed values, check) and the RULES;
    raise one line naming the setting. Returns ``cfg`` with ints made floats where a float
    is declared."""
    for name, spec in SPECS.items():
        try:
            setattr(cfg, name, checked(spec, getattr(cfg, name)))
        except ValueError as exc:
            raise RelabscopeError(f"{where}: {exc}") from None
    for rule in RULES:
        problem = rule(cfg)
        if problem is not None:
            raise RelabscopeError(f"{where}: {problem}")
    return cfg


def checked(spec: Spec, value: Any) -> Any:
    """``value`` as the setting holds it; ValueError with a sentence naming the setting when
    its type, allowed values or check refuse it."""
    s = spec.setting
    try:
        value = coerce(spec, value)
    except ValueError as exc:
        raise ValueError(f"{spec.name} {exc}") from None
    if value is None:
        return None
    if s.registry is not None and value not in s.registry:
        raise ValueError(f"unknown {spec.name} {value!r}; choose one of {', '.join(s.registry)}")
    if s.choices is not None and value not in s.choices:
        raise ValueError(f"{spec.name} must be one of {', '.join(map(str, s.choices))}, got {value!r}")
    problem = s.check(value) if s.check is not None else None
    if problem is not None:
        raise ValueError(f"{spec.name} {problem}")
    return value


# ---------------------------------------------------------------------- docs
def settings_markdown() -> str:
    """docs/settings.md: every setting, its default, who reads it and what it does."""
    rows = ["# Settings", "",
            "Generated from the setting specs by `python -m relabscope.config > docs/settings.md`; "
            "a test fails when this file is out of date. Every setting is a `relabscope train` option "
            "(`--name`, dashes for underscores) and a `--config` TOML key.", "",
            "| setting | type | default | read by | resume / sweep | what it does |", "|---|---|---|---|---|---|"]
    for name, spec in SPECS.items():
        methods = readers(name)
        read_by = "every method" if methods is None else ", ".join(sorted(methods))
        role = {"what": "", "how": "may change", "length": "resume may extend"}[spec.setting.role]
        allowed = spec.setting.choices or (tuple(spec.setting.registry) if spec.setting.registry else None)
        what = spec.setting.help + (f" One of: {', '.join(map(str, allowed))}." if allowed else "")
        rows.append(f"| `{name}` | {_type_text(spec)} | {_default_text(spec)} | {read_by} | {role} | {what} |")
    rows += ["", "Method presets (applied first) and data-set presets: `relabscope.methods.METHODS` and "
                 "`relabscope.config.PRESETS`; docs/methods.md says why.", ""]
    return "\n".join(rows)


def _type_text(spec: Spec) -> str:
    return type_name(spec.base) + (" or unset" if spec.optional else "")


def _default_text(spec: Spec) -> str:
    return "unset" if spec.default is None else f"`{spec.default!r}`"


if __name__ == "__main__":
    print(settings_markdown(), end="")
