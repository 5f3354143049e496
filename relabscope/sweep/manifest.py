"""A sweep folder's manifest and grid, read without training anything.

Layout of a sweep folder::

    OUT/sweep.toml                          the grid and the settings shared by every run
    OUT/<method>/noise-<pct>/seed-<s>/      one ordinary run directory per cell
    OUT/table.csv, OUT/table.md             written after the grid (see ``table.py``)

The dashboard and the report read sweeps through this module (no torch); ``grid.py``
trains them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import tomli_w

from relabscope.atomic import atomic_write
from relabscope.config import HOW_TO_RUN, load_toml
from relabscope.errors import RunDirError

SWEEP_FILE = "sweep.toml"
# Settings that decide a cell, not the shared setting; the CLI's sweep options set them.
GRID_KEYS = ("method", "noise", "seed", "out")


@dataclass(frozen=True)
class Cell:
    """One run of the grid."""

    method: str
    noise: float
    seed: int
    run_dir: Path


def noise_dir(noise: float) -> str:
    """``noise-30`` for 0.3: the noise level in percent."""
    return f"noise-{noise * 100:g}"


def cells(out: str | Path, methods: Iterable[str], noises: Iterable[float], seeds: Iterable[int]) -> list[Cell]:
    """The grid in the order it runs: noise level, then seed, then method, so an
    interrupted sweep has whole method comparisons done first."""
    out = Path(out)
    methods, seeds = list(methods), list(seeds)
    return [
        Cell(m, float(p), int(s), out / m / noise_dir(p) / f"seed-{s}")
        for p in noises for s in seeds for m in methods
    ]


def read_manifest(out: str | Path) -> dict[str, Any]:
    """``sweep.toml`` of a sweep folder: methods, noise, seeds and the shared settings."""
    path = Path(out) / SWEEP_FILE
    try:
        manifest = load_toml(path)
    except FileNotFoundError:
        raise RunDirError(f"{out}: not a sweep folder ({SWEEP_FILE} not found)") from None
    for key in ("methods", "noise", "seeds"):
        if not isinstance(manifest.get(key), list):
            raise RunDirError(f"{path}: missing the list {key!r}")
    manifest.setdefault("settings", {})
    return manifest


def is_sweep(path: str | Path) -> bool:
    return (Path(path) / SWEEP_FILE).is_file()


def manifest_cells(out: str | Path) -> list[Cell]:
    """The cells a sweep folder's manifest names."""
    m = read_manifest(out)
    return cells(out, m["methods"], m["noise"], m["seeds"])


def write_manifest(out: Path, methods: list[str], noise: list[float], seeds: list[int], settings: dict) -> None:
    """Create ``sweep.toml``, or grow the grid of an existing one with the same settings."""
    if out.exists() and not out.is_dir():
        raise RunDirError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not is_sweep(out):
        raise RunDirError(f"{out}: folder is not empty and holds no {SWEEP_FILE}; give an empty or new --out")
    if is_sweep(out):
        old = read_manifest(out)
        before, now = what_is_computed(old["settings"]), what_is_computed(settings)
        if before != now:
            key = next(k for k in sorted({*before, *now}) if before.get(k) != now.get(k))
            raise RunDirError(
                f"{out / SWEEP_FILE}: this sweep was started with other settings ({key}: "
                f"{old['settings'].get(key)!r} then, {settings.get(key)!r} now); use another --out"
            )
        methods = _union(old["methods"], methods)
        noise = _union([float(p) for p in old["noise"]], noise)
        seeds = _union(old["seeds"], seeds)
    out.mkdir(parents=True, exist_ok=True)
    manifest = {"methods": methods, "noise": noise, "seeds": seeds, "settings": settings}
    with atomic_write(out / SWEEP_FILE) as fh:
        fh.write(tomli_w.dumps(manifest).encode())


def what_is_computed(settings: dict) -> dict:
    """``settings`` without those that say only where and how a run is computed (HOW_TO_RUN)."""
    return {k: v for k, v in settings.items() if k.replace("-", "_") not in HOW_TO_RUN}


def _union(first: list, second: list) -> list:
    return list(dict.fromkeys([*first, *second]))
