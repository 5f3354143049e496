"""The sweep's relabel-guard axis (``--guards``): parsing and naming its values, the cells
it adds (relabelling methods only), a two-guard sweep whose table carries each run's own
numbers per guard, resuming old manifests that predate the axis, and the CLI.

One tiny sweep (SCN, one noise level, one seed, guards none and floor=0.5, two epochs)
serves every test that trains."""

from __future__ import annotations

import numpy as np
import pytest
import tomli_w
from click.testing import CliRunner

import relabscope as rs
from relabscope.cli import main
from relabscope.config import load_toml
from relabscope.errors import RelabscopeError
from relabscope.sweep import accuracy_table, read_manifest, relabel_table, run_sweep, sweep_results, sweep_table
from relabscope.methods.guards import guard_settings, parse_guards
from relabscope.sweep.manifest import SWEEP_FILE, cells, manifest_cells
from tests.conftest import TINY, scratch

#: half the labels wrong, relabelling from the first epoch with the eagerest rule: the floor has work to do
SHARED = {k: v for k, v in TINY.items() if k not in ("noise", "seed")} | {
    "epochs": 2, "delta": 0.0, "keep_optimizer": False, "dataset_options": {"num_train": 48, "num_test": 16, "size": 32}}
GUARDS = ["none", "floor=0.5"]
QUIET = dict(progress=False, log=lambda line: None)


@pytest.fixture(scope="module")
def guard_sweep(tmp_path_factory: pytest.TempPathFactory):
    with scratch(tmp_path_factory, "guard-sweep") as root:
        out = root / "grid"
        result = run_sweep(out, methods=["scn"], noise=[0.5], seeds=1, guards=GUARDS, settings=SHARED, **QUIET)
        assert not result.failed and len(result.trained) == 2
        yield out


def test_guard_values_have_one_spelling_and_bad_ones_one_line() -> None:
    assert parse_guards(["none", " agree + floor=.50 ", "hysteresis=1"]) == ["none", "floor=0.5+agree", "hysteresis=1"]
    assert guard_settings("floor=0.5+agree") == {"relabel_floor": 0.5, "relabel_agree": True}
    assert guard_settings("hysteresis=2") == {"relabel_hysteresis": 2} and guard_settings("none") == {}
    for bad, message in [("flor=0.5", "unknown guard 'flor'"), ("floor", "floor needs a value"),
                         ("floor=1.5", "relabel_floor must be in"), ("hysteresis=0", "switches the guard off"),
                         ("hysteresis=x", "must be a whole number"), ("agree=1", "agree takes no value")]:
        with pytest.raises(RelabscopeError, match=message):
            parse_guards([bad])
    with pytest.raises(RelabscopeError, match="floor=0.5 is listed twice"):
        parse_guards(["floor=0.5", "floor=.5"])


def test_only_relabelling_methods_get_guarded_cells(tmp_path) -> None:
    grid = cells(tmp_path, ["baseline", "scn", "scn-c"], [0.3], [0], ["floor=0.5", "none"])
    assert [(c.method, c.guard, c.run_dir.relative_to(tmp_path).as_posix()) for c in grid] == [
        ("baseline", "none", "baseline/noise-30/seed-0"),  # once, whichever guards are asked
        ("scn", "floor=0.5", "scn/noise-30_floor-0.5/seed-0"),
        ("scn-c", "floor=0.5", "scn-c/noise-30_floor-0.5/seed-0"),
        ("scn", "none", "scn/noise-30/seed-0"),  # the layout of a sweep without the axis
        ("scn-c", "none", "scn-c/noise-30/seed-0"),
    ]
    with pytest.raises(RelabscopeError, match="no method of baseline, rul reads the relabel guards"):
        run_sweep(tmp_path / "x", methods=["baseline", "rul"], noise=[0.3], seeds=1, guards=["agree"],
                  settings=SHARED, **QUIET)
    with pytest.raises(RelabscopeError, match=r"relabel_floor is set by the sweep's grid \(--guards\)"):
        run_sweep(tmp_path / "x", methods=["scn"], noise=[0.3], seeds=1, settings={**SHARED, "relabel_floor": 0.5},
                  **QUIET)
    assert not (tmp_path / "x").exists()


def test_each_guard_cell_is_a_run_with_its_guard_and_the_table_has_its_numbers(guard_sweep) -> None:
    assert read_manifest(guard_sweep)["guards"] == GUARDS
    results = sweep_results(guard_sweep).set_index("guard")
    for cell in manifest_cells(guard_sweep):
        with rs.open_run(cell.run_dir) as run:
            assert run.status == "finished" and run.num_epochs == 2
            assert run.config["relabel_floor"] == (0.5 if cell.guard == "floor=0.5" else 0.0)
            row = results.loc[cell.guard]
            assert row["vetoed"] == run.vetoes()["vetoed"].sum()
            assert row["classes_emptied"] == (run.class_warnings()["kind"] == "emptied").sum()
            recovery = run.noise_recovery().iloc[-1]
            assert row["noisy_corrected"] == pytest.approx(recovery["noisy_corrected"])
            assert row["clean_corrupted"] == pytest.approx(recovery["clean_corrupted"])
            assert row["closer_vs_control"] == pytest.approx(run.consistency()["closer_vs_control"], nan_ok=True)
            if cell.guard == "floor=0.5":  # the guard held: no class below half its given size
                counts = run.class_counts()
                assert (counts["count"] >= np.ceil(0.5 * counts["given"]) - 1e-9).all()
    assert results.loc["none", "vetoed"] == 0
    table = sweep_table(guard_sweep)
    assert list(table["guard"]) == GUARDS and (table["seeds"] == 1).all()
    assert table.set_index("guard")["vetoed_mean"].to_dict() == results["vetoed"].to_dict()
    wide = accuracy_table(table)
    assert list(wide.index) == [("scn", "none"), ("scn", "floor=0.5")] and list(wide.columns) == ["noise 50%"]
    relabel = relabel_table(table).set_index("guard")
    assert {"vetoed", "noisy labels corrected", "clean labels corrupted", "classes emptied",
            "relabelled − control"} <= set(relabel.columns)
    assert relabel.loc["floor=0.5", "vetoed"] == f"{results.loc['floor=0.5', 'vetoed']:.1f}"


def test_a_manifest_from_before_the_axis_reads_as_none_and_grows(guard_sweep, tmp_path) -> None:
    """A sweep.toml without ``guards`` (written before the axis existed) means every cell
    unguarded: its runs are where they always were, rerunning skips them, and asking for a
    guard grows the grid around them."""
    import shutil

    old = tmp_path / "old"
    shutil.copytree(guard_sweep / "scn" / "noise-50", old / "scn" / "noise-50")  # only the unguarded run
    manifest = {k: v for k, v in load_toml(guard_sweep / SWEEP_FILE).items() if k != "guards"}
    (old / SWEEP_FILE).write_text(tomli_w.dumps(manifest))
    assert read_manifest(old)["guards"] == ["none"]
    assert [c.run_dir for c in manifest_cells(old)] == [old / "scn" / "noise-50" / "seed-0"]
    grid = dict(methods=["scn"], noise=[0.5], seeds=1, settings=SHARED, **QUIET)
    assert len(run_sweep(old, **grid).skipped) == 1
    shutil.copytree(guard_sweep / "scn" / "noise-50_floor-0.5", old / "scn" / "noise-50_floor-0.5")
    result = run_sweep(old, guards=["floor=0.5"], **grid)
    assert [c.guard for c in result.skipped] == ["floor=0.5"] and not result.trained
    assert read_manifest(old)["guards"] == GUARDS


def test_cli_takes_guards_and_prints_them(guard_sweep) -> None:
    args = ["sweep", "--methods", "scn", "--noise", "0.5", "--seeds", "1", "--out", str(guard_sweep), "-q"]
    for key, value in SHARED.items():
        if key == "dataset_options":
            args += [a for k, v in value.items() for a in ("-O", f"{k}={v}")]
        elif key != "keep_optimizer":
            args += [f"--{key.replace('_', '-')}", str(value)]
    result = CliRunner().invoke(main, [*args, "--guards", "none,floor=0.5"])
    assert result.exit_code == 0, result.output
    assert result.output.count("finished before, skipped") == 2
    rows = [line for line in (guard_sweep / "table.md").read_text().splitlines() if line.startswith("| scn")]
    assert len(rows) == 4 and sum("floor=0.5" in line for line in rows) == 2  # accuracy and relabel tables
    assert rows[0] in result.output
    bad = CliRunner().invoke(main, [*args, "--guards", "none,flor=1"])
    assert bad.exit_code != 0 and "unknown guard 'flor'" in bad.output and "Traceback" not in bad.output
    flags = {o for p in main.commands["sweep"].params for o in (*p.opts, *p.secondary_opts)}
    assert "--guards" in flags and not flags & {"--relabel-floor", "--relabel-hysteresis", "--relabel-agree"}
