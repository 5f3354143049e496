"""A sweep folder's manifest and grid, read without training anything.

Layout of a sweep folder::

    OUT/sweep.toml                          the grid and the settings shared by every run
    OUT/<method>/noise-<pct>/seed-<s>/      one ordinary run directory per cell
    OUT/<method>/noise-<pct>_<guards>/seed-<s>/   a cell under relabel guards (``guards.py``)
    OUT/table.csv, OUT/table.md             written after the grid (see ``table.py``)

The guard axis sits in the noise level's folder name, so every run directory stays three
levels below the sweep folder (where the dashboard looks for a run's sweep), SCN and SCN-C
under one guard stay counterparts at the same noise and seed, and a sweep without the axis
(every cell ``none``) keeps the layout it always had. A manifest written before the axis
existed names no guards: it reads as ``["none"]``.

The dashboard and the report read sweeps through this module (no torch); ``grid.py``
trains them.
"""

from __future__ import annotations

import contextlib
import fcntl
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import tomli_w

from relabscope.atomic import atomic_write
from relabscope.config import HOW_TO_RUN, load_toml
from relabscope.errors import RunDirError
from relabscope.methods.guards import GUARD_SETTINGS, NONE
from relabscope.sweep.guards import guard_suffix, reads_guards

SWEEP_FILE = "sweep.toml"
#: held (``flock``) while a process reads and rewrites the manifest: sweeps started together
#: (``--gpus``, several terminals) grow one grid instead of racing on an empty folder
MANIFEST_LOCK = SWEEP_FILE + ".lock"
# Settings that decide a cell, not the shared setting; the CLI's sweep options set them
# (the guard settings through --guards).
GRID_KEYS = ("method", "noise", "seed", "out", *GUARD_SETTINGS.values())


@dataclass(frozen=True)
class Cell:
    """One run of the grid; ``guard`` is a canonical guard-axis value (``guards.py``)."""

    method: str
    noise: float
    seed: int
    run_dir: Path
    guard: str = NONE


def noise_dir(noise: float) -> str:
    """``noise-30`` for 0.3: the noise level in percent."""
    return f"noise-{noise * 100:g}"


def cells(out: str | Path, methods: Iterable[str], noises: Iterable[float], seeds: Iterable[int],
          guards: Iterable[str] = (NONE,)) -> list[Cell]:
    """The grid in the order it runs: noise level, then seed, then guard, then method, so
    an interrupted sweep has whole method and guard comparisons done first. A method that
    does not read the guard settings has one cell per noise level and seed, its ``none``
    one (with the first guard's), whichever guards the axis lists."""
    out = Path(out)
    methods, seeds, guards = list(methods), list(seeds), list(guards)
    return [
        Cell(m, float(p), int(s), out / m / (noise_dir(p) + guard_suffix(g)) / f"seed-{s}", g)
        for p in noises for s in seeds for i, guard in enumerate(guards) for m in methods
        for g in ([guard] if reads_guards(m) else [NONE] if i == 0 else [])
    ]


def read_manifest(out: str | Path) -> dict[str, Any]:
    """``sweep.toml`` of a sweep folder: methods, noise, seeds, guards (``["none"]`` for a
    manifest written before the guard axis existed) and the shared settings."""
    path = Path(out) / SWEEP_FILE
    try:
        manifest = load_toml(path)
    except FileNotFoundError:
        raise RunDirError(f"{out}: not a sweep folder ({SWEEP_FILE} not found)") from None
    for key in ("methods", "noise", "seeds"):
        if not isinstance(manifest.get(key), list):
            raise RunDirError(f"{path}: missing the list {key!r}")
    manifest.setdefault("settings", {})
    manifest.setdefault("guards", [NONE])
    if not isinstance(manifest["guards"], list) or not all(isinstance(g, str) for g in manifest["guards"]):
        raise RunDirError(f"{path}: 'guards' is not a list of guard names")
    return manifest


def is_sweep(path: str | Path) -> bool:
    return (Path(path) / SWEEP_FILE).is_file()


def manifest_cells(out: str | Path) -> list[Cell]:
    """The cells a sweep folder's manifest names."""
    m = read_manifest(out)
    return cells(out, m["methods"], m["noise"], m["seeds"], m["guards"])


def write_manifest(out: Path, methods: list[str], noise: list[float], seeds: list[int], settings: dict,
                   guards: Iterable[str] = (NONE,)) -> None:
    """Create ``sweep.toml``, or grow the grid of an existing one with the same settings.

    Processes that start one sweep together take turns (``MANIFEST_LOCK``), so each sees
    the manifest the one before it wrote and the grid is the union of what they asked for.
    """
    if out.exists() and not out.is_dir():
        raise RunDirError(f"{out}: exists and is not a folder")
    _refuse_foreign_folder(out)  # before the lock file is made in someone else's folder
    out.mkdir(parents=True, exist_ok=True)
    with _manifest_lock(out):
        _refuse_foreign_folder(out)
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
            guards = _union(old["guards"], guards)
        manifest = {"methods": methods, "noise": noise, "seeds": seeds, "guards": list(guards), "settings": settings}
        with atomic_write(out / SWEEP_FILE) as fh:
            fh.write(tomli_w.dumps(manifest).encode())


def _refuse_foreign_folder(out: Path) -> None:
    """Refuse a folder holding files but no manifest (the manifest's own lock and temporary
    files, ``sweep.toml.*``, are those of a sweep starting there)."""
    if out.is_dir() and not is_sweep(out) and any(not p.name.startswith(SWEEP_FILE) for p in out.iterdir()):
        raise RunDirError(f"{out}: folder is not empty and holds no {SWEEP_FILE}; give an empty or new --out")


@contextlib.contextmanager
def _manifest_lock(out: Path) -> Iterator[None]:
    """Hold the sweep folder's manifest lock (blocking: the holder only reads and writes a
    small file)."""
    with open(out / MANIFEST_LOCK, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def what_is_computed(settings: dict) -> dict:
    """``settings`` without those that say only where and how a run is computed (HOW_TO_RUN)."""
    return {k: v for k, v in settings.items() if k.replace("-", "_") not in HOW_TO_RUN}


def _union(first: Iterable, second: Iterable) -> list:
    return list(dict.fromkeys([*first, *second]))
