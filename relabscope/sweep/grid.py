"""A sweep's grid: every (method, noise, seed) run under one folder, trained or resumed.

Layout of a sweep folder::

    OUT/sweep.toml                          the grid and the settings shared by every run
    OUT/<method>/noise-<pct>/seed-<s>/      one ordinary run directory per cell
    OUT/table.csv, OUT/table.md             written after the grid (see ``table.py``)

Running a sweep again continues it: finished runs are skipped, a run killed mid-way is
resumed from its last checkpoint, a run killed before its first epoch starts over. Several
processes may run the same sweep at once (one per GPU, or two on a CPU with a thread
each): a cell another process is training is skipped, so they share the grid. A run
directory whose stored settings differ from what the sweep asks is refused (one line
naming it) rather than silently mixed into the table. A run that diverges is reported and
the sweep goes on with the others.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from relabscope.atomic import atomic_write
from relabscope.errors import RelabscopeError, RunDirError, RunLockedError

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


@dataclass
class SweepResult:
    """What a sweep did: cells trained now, cells already finished, cells that failed."""

    out: Path
    trained: list[Cell] = field(default_factory=list)
    skipped: list[Cell] = field(default_factory=list)
    busy: list[Cell] = field(default_factory=list)  # being trained by another process
    failed: list[tuple[Cell, str]] = field(default_factory=list)


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
    from relabscope.config import load_toml

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


def run_sweep(
    out: str | Path,
    *,
    methods: Iterable[str],
    noise: Iterable[float],
    seeds: int | Iterable[int],
    settings: Mapping[str, Any] | None = None,
    progress: bool = True,
    hooks: Iterable[Any] = (),
    log: Callable[[str], None] | None = None,
) -> SweepResult:
    """Train every (method, noise, seed) cell into ``out`` and return what happened.

    ``seeds`` is a count (seeds 0..n-1) or the seeds themselves. ``settings`` are train
    options shared by every run (dataset, epochs, ...; not method, noise, seed or out). A
    folder already holding a sweep must have been started with the same settings; its grid
    grows to include the new methods, noise levels and seeds.
    """
    from relabscope.config import resolve

    log = log or (lambda line: print(line, file=sys.stderr))
    out = Path(out)
    methods, noise = list(methods), [float(p) for p in noise]
    seeds = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    settings = dict(settings or {})
    _check_grid(methods, noise, seeds, settings)
    for p in noise:  # validate every setting before any run starts
        for m in methods:
            resolve({**settings, "method": m, "noise": p, "seed": seeds[0]})
    _write_manifest(out, methods, noise, seeds, settings)

    result = SweepResult(out)
    grid = cells(out, methods, noise, seeds)
    for i, cell in enumerate(grid, 1):
        where = f"[{i}/{len(grid)}] {cell.method}, noise {cell.noise:g}, seed {cell.seed}"
        try:
            if _train_cell(cell, settings, progress, list(hooks), log, where):
                result.trained.append(cell)
            else:
                result.skipped.append(cell)
        except RunLockedError:
            log(f"sweep: {where}: another process is training it, skipped")
            result.busy.append(cell)
        except RunDirError:
            raise  # a foreign or mismatched run directory: the user must decide
        except RelabscopeError as exc:
            log(f"sweep: {where} failed: {exc}")
            result.failed.append((cell, str(exc)))
    return result


def cell_config(cell: Cell, settings: Mapping[str, Any]) -> Any:
    """The resolved TrainConfig of one cell."""
    from relabscope.config import resolve

    return resolve({**settings, "method": cell.method, "noise": cell.noise, "seed": cell.seed,
                    "out": str(cell.run_dir)})


def _train_cell(cell: Cell, settings: Mapping[str, Any], progress: bool, hooks: list, log: Callable[[str], None],
                where: str) -> bool:
    """Train, resume or skip one cell; True when something was trained."""
    from relabscope.config import applies, read_run_config
    from relabscope.training.runner import CONFIG_NAME, RESUMABLE, locked_elsewhere, train

    cfg = cell_config(cell, settings)
    stored_path = cell.run_dir / CONFIG_NAME
    if not stored_path.is_file():
        log(f"sweep: {where}: training into {cell.run_dir}")
        train(cfg, overwrite=True, progress=progress, hooks=hooks, log=log)
        return True
    stored = read_run_config(stored_path)
    wanted = cfg.to_dict()
    for key, value in wanted.items():
        if key in RESUMABLE or value is None and key not in stored or not applies(key, cell.method):
            continue
        if stored.get(key) != value:
            raise RunDirError(
                f"{cell.run_dir}: holds a run with {key} = {stored.get(key)!r} but the sweep asks {value!r}; "
                "use another --out or remove that run"
            )
    if _finished(cell.run_dir, cfg.epochs):
        log(f"sweep: {where}: finished before, skipped")
        return False
    if locked_elsewhere(cell.run_dir):
        raise RunLockedError(f"{cell.run_dir}: another process is training into this run directory")
    log(f"sweep: {where}: resuming {cell.run_dir}")
    train({"epochs": cfg.epochs}, resume=cell.run_dir, progress=progress, hooks=hooks, log=log)
    return True


def _finished(run_dir: Path, epochs: int) -> bool:
    from relabscope.analysis.summary import run_numbers

    try:
        numbers = run_numbers(run_dir)
    except RunDirError:
        return False
    return numbers["status"] == "finished" and numbers["epochs"] >= epochs


def _check_grid(methods: list[str], noise: list[float], seeds: list[int], settings: Mapping[str, Any]) -> None:
    from relabscope.methods import METHODS

    if not methods:
        raise RelabscopeError("sweep: no method given")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise RelabscopeError(f"sweep: unknown method {unknown[0]!r}; choose from {', '.join(METHODS)}")
    if len(set(methods)) != len(methods) or len(set(noise)) != len(noise) or len(set(seeds)) != len(seeds):
        raise RelabscopeError("sweep: a method, noise level or seed is listed twice")
    if not noise or not seeds:
        raise RelabscopeError("sweep: give at least one noise level and one seed")
    if any(s < 0 for s in seeds):
        raise RelabscopeError("sweep: seeds must be >= 0")
    grid_keys = sorted(k for k in settings if k.replace("-", "_") in GRID_KEYS)
    if grid_keys:
        raise RelabscopeError(f"sweep: {grid_keys[0]} is set by the sweep's grid, not as a shared setting")


def _write_manifest(out: Path, methods: list[str], noise: list[float], seeds: list[int], settings: dict) -> None:
    """Create ``sweep.toml``, or grow the grid of an existing one with the same settings."""
    import tomli_w

    if out.exists() and not out.is_dir():
        raise RunDirError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not is_sweep(out):
        raise RunDirError(f"{out}: folder is not empty and holds no {SWEEP_FILE}; give an empty or new --out")
    if is_sweep(out):
        old = read_manifest(out)
        before, now = _what_is_computed(old["settings"]), _what_is_computed(settings)
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


def _what_is_computed(settings: dict) -> dict:
    """``settings`` without those that say only where and how a run is computed (HOW_TO_RUN)."""
    from relabscope.training.runner import HOW_TO_RUN

    return {k: v for k, v in settings.items() if k.replace("-", "_") not in HOW_TO_RUN}


def _union(first: list, second: list) -> list:
    return list(dict.fromkeys([*first, *second]))
