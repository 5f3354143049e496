"""A tiny pair of SCN runs on the same noisy data, one with relabel guards on and one
without, for the tests of the guard views (figures, compare summary, dashboard pages,
report, browser). The cheapest setting of tests/training/test_guards.py: 64 training
samples, half their labels wrong, the eagerest relabel rule; unguarded, relabelling there
empties a class, and the guards switched on (hysteresis, floor) veto relabels. About 8 s
a run on one CPU thread; each test module trains what it needs once (``train_pair``, or
``train_guarded`` alone)."""

from __future__ import annotations

from pathlib import Path

from relabscope.methods.guards import guards_on

#: the data and training of both runs
BASE = {
    "method": "scn", "noise": 0.5, "delta": 0.0, "relabel_epoch": 1, "epochs": 3, "seed": 1,
    "dataset_options": {"num_train": 64, "num_test": 16, "size": 32}, "image_size": 16,
    "batch_size": 16, "workers": 0, "device": "cpu", "embed_every": 1,
}
#: the guarded run's guards, in the order they apply
GUARDS = {"relabel_hysteresis": 1, "relabel_floor": 0.5}
GUARD_NAMES = guards_on(GUARDS)
#: the runs' folder names (and so their names in views)
OFF, GUARDED = "scn-unguarded", "scn-guarded"


def train_guarded(root: Path) -> Path:
    """Train the guarded run alone under ``root``; its run directory. Checks that its
    guards logged vetoes."""
    import relabscope as rs
    from relabscope.training.runner import train

    result = train({**BASE, **GUARDS, "out": str(root / GUARDED)}, progress=False, log=lambda line: None)
    assert result.status == "finished", result
    with rs.open_run(root / GUARDED) as run:
        assert run.log.guards == GUARD_NAMES and run.vetoes()["vetoed"].sum() > 0, run.vetoes()
    return root / GUARDED


def train_pair(root: Path) -> dict[str, Path]:
    """Train both runs under ``root``; {name: run directory}. Checks what the tests rely
    on: the guarded run logged vetoes, the unguarded one none (which guard vetoed how many
    depends on floating point, so no test assumes it)."""
    import relabscope as rs
    from relabscope.training.runner import train

    result = train({**BASE, "out": str(root / OFF)}, progress=False, log=lambda line: None)
    assert result.status == "finished", result
    with rs.open_run(root / OFF) as run:
        assert run.log.guards == [] and run.vetoes().empty
    return {OFF: root / OFF, GUARDED: train_guarded(root)}
