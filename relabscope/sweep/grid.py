"""A sweep's grid: every (method, noise, seed) run, and under each relabel-guard setting
for the methods that relabel (``guards.py``), under one folder, trained or resumed (the
folder's layout and manifest: ``manifest.py``).

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
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from relabscope.analysis.summary import run_numbers
from relabscope.config import RESUMABLE, TrainConfig, applies, resolve
from relabscope.errors import RelabscopeError, RunDirError, RunLockedError
from relabscope.methods import METHODS
from relabscope.rundir import holds_run, locked_elsewhere, stored_config
from relabscope.methods.guards import GUARD_SETTINGS, NONE, guard_settings, parse_guards
from relabscope.sweep.guards import reads_guards
from relabscope.sweep.manifest import GRID_KEYS, Cell, cells, write_manifest
from relabscope.training.distributed import World, joined, on_main
from relabscope.training.hooks import Hook
from relabscope.training.runner import train


@dataclass
class SweepResult:
    """What a sweep did: cells trained now, cells already finished, cells that failed."""

    out: Path
    trained: list[Cell] = field(default_factory=list)
    skipped: list[Cell] = field(default_factory=list)
    busy: list[Cell] = field(default_factory=list)  # being trained by another process
    failed: list[tuple[Cell, str]] = field(default_factory=list)


def run_sweep(
    out: str | Path,
    *,
    methods: Iterable[str],
    noise: Iterable[float],
    seeds: int | Iterable[int],
    settings: Mapping[str, Any] | None = None,
    guards: Iterable[str] = (NONE,),
    progress: bool = True,
    hooks: Iterable[Hook] = (),
    log: Callable[[str], None] | None = None,
) -> SweepResult:
    """Train every (method, noise, seed) cell into ``out``, each relabelling method once
    per guard setting, and return what happened.

    ``seeds`` is a count (seeds 0..n-1) or the seeds themselves. ``guards`` are values of
    the guard axis (``"none"``, ``"floor=0.5"``, ``"hysteresis=1"``, ``"agree"``, or several
    joined by ``+``: ``relabscope.sweep.guards``); methods that do not relabel train under
    ``"none"`` only. ``settings`` are train options shared by every run (dataset, epochs,
    ...; not method, noise, seed, out or a guard setting). A folder already holding a sweep
    must have been started with the same settings; its grid grows to include the new
    methods, noise levels, seeds and guards.
    """
    out = Path(out)
    methods, noise = list(methods), [float(p) for p in noise]
    seeds = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    guards = parse_guards(guards)
    settings = dict(settings or {})
    _check_grid(methods, noise, seeds, guards, settings)
    for p in noise:  # validate every setting before any run starts
        for m in methods:
            for g in guards if reads_guards(m) else [NONE]:
                resolve({**settings, **guard_settings(g), "method": m, "noise": p, "seed": seeds[0]})
    with joined(str(settings.get("device", "auto"))) as world:  # under torchrun: every cell on every rank
        say = (log or (lambda line: print(line, file=sys.stderr))) if world.is_main else _quiet
        on_main(world, lambda: write_manifest(out, methods, noise, seeds, settings, guards))
        grid = cells(out, methods, noise, seeds, guards)
        return _run_grid(world, out, grid, settings, progress, list(hooks), say)


def _quiet(line: str) -> None:
    """The log of a rank other than 0 (rank 0 speaks for the job)."""


def _run_grid(world: World, out: Path, grid: list[Cell], settings: Mapping[str, Any], progress: bool,
              hooks: list[Hook], log: Callable[[str], None]) -> SweepResult:
    """Train, resume or skip each cell; rank 0 decides which (every rank then acts on it)."""
    result = SweepResult(out)
    for i, cell in enumerate(grid, 1):
        where = f"[{i}/{len(grid)}] {cell.method}, noise {cell.noise:g}, seed {cell.seed}"
        if cell.guard != NONE:
            where += f", guards {cell.guard}"
        try:
            action = on_main(world, partial(_plan_cell, cell, settings, log, where))
            if action == "skip":
                result.skipped.append(cell)
                continue
            cfg = cell_config(cell, settings)
            if action == "train":
                train(cfg, overwrite=True, progress=progress, hooks=hooks, log=log)
            else:
                train({"epochs": cfg.epochs}, resume=cell.run_dir, progress=progress, hooks=hooks, log=log)
            result.trained.append(cell)
        except RunLockedError:
            log(f"sweep: {where}: another process is training it, skipped")
            result.busy.append(cell)
        except RunDirError:
            raise  # a foreign or mismatched run directory: the user must decide
        except RelabscopeError as exc:
            log(f"sweep: {where} failed: {exc}")
            result.failed.append((cell, str(exc)))
    return result


def cell_config(cell: Cell, settings: Mapping[str, Any]) -> TrainConfig:
    """The resolved TrainConfig of one cell."""
    return resolve({**settings, **guard_settings(cell.guard), "method": cell.method, "noise": cell.noise,
                    "seed": cell.seed, "out": str(cell.run_dir)})


def _plan_cell(cell: Cell, settings: Mapping[str, Any], log: Callable[[str], None], where: str) -> str:
    """What to do with one cell: "train" it, "resume" it or "skip" it (finished); raises
    RunLockedError when another process trains it, RunDirError when it holds another run."""
    cfg = cell_config(cell, settings)
    if not holds_run(cell.run_dir):
        log(f"sweep: {where}: training into {cell.run_dir}")
        return "train"
    stored = stored_config(cell.run_dir)
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
        return "skip"
    if locked_elsewhere(cell.run_dir):
        raise RunLockedError(f"{cell.run_dir}: another process is training into this run directory")
    log(f"sweep: {where}: resuming {cell.run_dir}")
    return "resume"


def _finished(run_dir: Path, epochs: int) -> bool:
    try:
        numbers = run_numbers(run_dir)
    except RunDirError:
        return False
    return numbers["status"] == "finished" and numbers["epochs"] >= epochs


def _check_grid(methods: list[str], noise: list[float], seeds: list[int], guards: list[str],
                settings: Mapping[str, Any]) -> None:
    if not methods:
        raise RelabscopeError("sweep: no method given")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise RelabscopeError(f"sweep: unknown method {unknown[0]!r}; choose from {', '.join(METHODS)}")
    if len(set(methods)) != len(methods) or len(set(noise)) != len(noise) or len(set(seeds)) != len(seeds):
        raise RelabscopeError("sweep: a method, noise level or seed is listed twice")
    if not noise or not seeds or not guards:
        raise RelabscopeError("sweep: give at least one noise level, one seed and one guard setting (none: no guard)")
    if any(s < 0 for s in seeds):
        raise RelabscopeError("sweep: seeds must be >= 0")
    if any(g != NONE for g in guards) and not any(reads_guards(m) for m in methods):
        raise RelabscopeError(f"sweep: no method of {', '.join(methods)} reads the relabel guards; --guards "
                              f"applies to {', '.join(m for m in METHODS if reads_guards(m))}")
    grid_keys = sorted(k for k in settings if k.replace("-", "_") in GRID_KEYS)
    if grid_keys:
        how = " (--guards)" if grid_keys[0].replace("-", "_") in GUARD_SETTINGS.values() else ""
        raise RelabscopeError(f"sweep: {grid_keys[0]} is set by the sweep's grid{how}, not as a shared setting")


