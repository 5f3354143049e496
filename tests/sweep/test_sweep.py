"""``relabscope sweep``: the grid trains every method, a second call skips what finished,
a killed run is resumed, mismatched folders are refused, and the table's numbers are the
runs' own (mean and sample std over seeds)."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from relabscope.analysis.summary import run_numbers
from relabscope.cli import main
from relabscope.errors import DivergedError, RelabscopeError, RunDirError
from relabscope.methods import METHODS, default_sweep
from relabscope.sweep import (accuracy_table, is_sweep, read_manifest, relabel_table, run_sweep, sweep_results,
                              sweep_table, write_tables)
from relabscope.sweep.manifest import cells, write_manifest
from relabscope.training.hooks import Hook
from tests.conftest import TINY, scratch

ALL = default_sweep()
SHARED = {k: v for k, v in TINY.items() if k not in ("noise", "seed")} | {"epochs": 2}
#: the in-suite grid's settings: batches of 32, half the steps (the 8 DMUE runs dominate)
GRID = SHARED | {"batch_size": 32}


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory: pytest.TempPathFactory):
    """Every method, noise 0 and 0.3, two seeds: the in-suite sweep (its finished runs drop
    their optimiser state, which would otherwise take 6 GB of disk)."""
    with scratch(tmp_path_factory, "sweep") as root:
        out = root / "grid"
        result = run_sweep(out, methods=ALL, noise=[0.0, 0.3], seeds=2, settings={**GRID, "keep_optimizer": False},
                           progress=False, log=lambda line: None)
        assert not result.failed
        assert len(result.trained) == len(ALL) * 2 * 2 and not result.skipped
        yield out


def test_every_cell_is_a_finished_run_of_its_method(sweep_dir) -> None:
    assert set(METHODS) >= set(ALL)
    for cell in cells(sweep_dir, ALL, [0.0, 0.3], [0, 1]):
        numbers = run_numbers(cell.run_dir)
        assert numbers["status"] == "finished" and numbers["epochs"] == 2
        import relabscope as rs

        with rs.open_run(cell.run_dir) as run:
            assert run.method == cell.method
            assert run.config["noise"] == cell.noise and run.config["seed"] == cell.seed
            assert run.relabels_at_all == cell.method.startswith("scn")
            if not run.relabels_at_all:
                assert len(run.relabel_events()) == 0
    manifest = read_manifest(sweep_dir)
    assert manifest["methods"] == ALL and manifest["noise"] == [0.0, 0.3] and manifest["seeds"] == [0, 1]


def test_table_numbers_are_mean_and_std_over_seeds(sweep_dir) -> None:
    results = sweep_results(sweep_dir)
    table = sweep_table(results)
    assert len(table) == len(ALL) * 2
    assert list(dict.fromkeys(table["method"])) == ALL  # the sweep's order, not alphabetical
    for row in table.itertuples():
        accs = [run_numbers(c.run_dir)["test_acc"] for c in cells(sweep_dir, [row.method], [row.noise], [0, 1])]
        assert row.seeds == 2
        assert row.test_acc_mean == pytest.approx(np.mean(accs))
        assert row.test_acc_std == pytest.approx(np.std(accs, ddof=1))
    wide = accuracy_table(table)
    assert list(wide.index) == ALL and list(wide.columns) == ["noise 0%", "noise 30%"]
    first = table.iloc[0]
    assert wide.iloc[0, 0] == f"{100 * first.test_acc_mean:.2f} ± {100 * first.test_acc_std:.2f}"
    relabel = relabel_table(table).set_index(["method", "noise"])
    for method in (m for m in ALL if not METHODS[m].relabels):
        assert relabel.loc[(method, "30%"), "flip-flops"] == "no relabelling"
    best = sweep_table(results, epoch="best")
    assert (best["test_acc_mean"] >= table["test_acc_mean"] - 1e-12).all()


def test_cli_reruns_skip_finished_runs_and_print_the_table(sweep_dir) -> None:
    args = ["sweep", "--methods", ",".join(ALL), "--noise", "0,0.3", "--seeds", "2", "--out", str(sweep_dir), "-q",
            "--epochs", "2", "--config", str(sweep_dir.parent / "shared.toml")]
    import tomli_w

    (sweep_dir.parent / "shared.toml").write_text(tomli_w.dumps({k: v for k, v in GRID.items() if k != "epochs"}))
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert result.output.count("finished before, skipped") == len(ALL) * 4
    assert "| method" in result.output and "noise 30%" in result.output
    md = (sweep_dir / "table.md").read_text()
    csv = pd.read_csv(sweep_dir / "table.csv")
    assert len(csv) == len(ALL) * 2 and "test_acc_mean" in csv
    assert accuracy_table(sweep_table(sweep_dir)).to_markdown() in md


def test_killed_run_is_resumed_and_matches_an_uninterrupted_one(tmp_path) -> None:
    class Stop(Hook):
        def on_epoch_complete(self, epoch, metrics):
            raise KeyboardInterrupt  # Ctrl-C after the first epoch is on disk

    out, settings = tmp_path / "sw", {**SHARED, "epochs": 3}
    grid = dict(methods=["rul"], noise=[0.3], seeds=[1], settings=settings, progress=False)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(out, hooks=[Stop()], log=lambda line: None, **grid)
    cell = cells(out, ["rul"], [0.3], [1])[0]
    assert 0 < run_numbers(cell.run_dir)["epochs"] < 3  # the epoch in flight may commit too
    (cell.run_dir / "config.toml").unlink()  # its settings are in the log too: resumed, never trained over
    lines: list[str] = []
    result = run_sweep(out, log=lines.append, **grid)
    assert result.trained == [cell] and any("resuming" in line for line in lines)
    reference = tmp_path / "ref"
    run_sweep(reference, log=lambda line: None, **grid)
    import relabscope as rs

    with rs.open_run(cell.run_dir) as a, rs.open_run(cells(reference, ["rul"], [0.3], [1])[0].run_dir) as b:
        assert a.num_epochs == b.num_epochs == 3
        np.testing.assert_array_equal(a.predictions(), b.predictions())
        np.testing.assert_allclose(a.field("uncertainty"), b.field("uncertainty"), rtol=1e-5)


def test_goes_on_with_other_settings_of_where_and_how(tmp_path) -> None:
    """Settings that do not change what a cell computes (device, cache size, whether a
    finished run keeps its optimiser state) may differ between calls on one grid."""
    import torch

    out, quiet = tmp_path / "sw", dict(progress=False, log=lambda line: None)
    first = {**SHARED, "epochs": 1, "keep_optimizer": False}
    run_sweep(out, methods=["baseline"], noise=[0.0], seeds=1, settings=first, **quiet)
    later = {**SHARED, "epochs": 1, "device": "auto", "cache_gb": 1.0}
    result = run_sweep(out, methods=["baseline", "scn"], noise=[0.0], seeds=1, settings=later, **quiet)
    assert [c.method for c in result.skipped] == ["baseline"] and [c.method for c in result.trained] == ["scn"]
    kept = {c.method: "optimizer" in torch.load(c.run_dir / "checkpoints" / "last.pt", weights_only=False)
            for c in cells(out, ["baseline", "scn"], [0.0], [0])}
    assert kept == {"baseline": False, "scn": True}


def test_refuses_mismatched_folders_and_grid_settings(tmp_path) -> None:
    out = tmp_path / "sw"
    quiet = dict(progress=False, log=lambda line: None)
    run_sweep(out, methods=["baseline"], noise=[0.0], seeds=1, settings={**SHARED, "epochs": 1}, **quiet)
    assert is_sweep(out)
    with pytest.raises(RunDirError, match="started with other settings .*epochs"):
        run_sweep(out, methods=["baseline"], noise=[0.0], seeds=1, settings={**SHARED, "epochs": 2}, **quiet)
    # a run directory left by another setting is never mixed into the table
    cell = cells(out, ["baseline"], [0.0], [0])[0]
    cfg = (cell.run_dir / "config.toml").read_text().replace("lr = 0.001", "lr = 0.5")
    (cell.run_dir / "config.toml").write_text(cfg)
    with pytest.raises(RunDirError, match=r"holds a run with lr = 0.5 but the sweep asks 0.001"):
        run_sweep(out, methods=["baseline"], noise=[0.0], seeds=1, settings={**SHARED, "epochs": 1}, **quiet)
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(RunDirError, match="not empty and holds no sweep.toml"):
        run_sweep(other, methods=["baseline"], noise=[0.0], seeds=1, settings=SHARED, **quiet)
    with pytest.raises(RelabscopeError, match="seed is set by the sweep's grid"):
        run_sweep(tmp_path / "x", methods=["baseline"], noise=[0.0], seeds=1, settings={"seed": 3}, **quiet)
    with pytest.raises(RelabscopeError, match="unknown method 'scn-x'"):
        run_sweep(tmp_path / "x", methods=["scn-x"], noise=[0.0], seeds=1, settings=SHARED, **quiet)
    with pytest.raises(RelabscopeError, match="noise must be in"):
        run_sweep(tmp_path / "x", methods=["baseline"], noise=[1.5], seeds=1, settings=SHARED, **quiet)
    assert not (tmp_path / "x").exists()  # nothing was created for a sweep that cannot start


def test_runs_from_before_a_setting_existed(tmp_path) -> None:
    """A stored config without a setting added later (dmue_center_ramp) reads as the value
    that run was trained with: methods that ignore the setting are still skipped, an old
    DMUE-C run is refused (it was trained differently), and resuming it keeps its value."""
    from relabscope.rundir import resume_config

    out = tmp_path / "sw"
    grid = dict(noise=[0.3], seeds=1, settings={**SHARED, "epochs": 1}, progress=False, log=lambda line: None)
    run_sweep(out, methods=["baseline", "dmue", "dmue-c"], **grid)
    for cell in cells(out, ["baseline", "dmue", "dmue-c"], [0.3], [0]):
        path = cell.run_dir / "config.toml"
        text = path.read_text()
        assert "dmue_center_ramp = true" in text
        path.write_text(text.replace("dmue_center_ramp = true\n", ""))
    result = run_sweep(out, methods=["baseline", "dmue"], **grid)
    assert len(result.skipped) == 2 and not result.trained
    with pytest.raises(RunDirError, match="holds a run with dmue_center_ramp = False but the sweep asks True"):
        run_sweep(out, methods=["dmue-c"], **grid)
    old = cells(out, ["dmue-c"], [0.3], [0])[0].run_dir
    assert resume_config(old, {"epochs": 2}).dmue_center_ramp is False


def test_a_failed_run_is_reported_and_the_rest_go_on(tmp_path, monkeypatch) -> None:
    import relabscope.sweep.grid as grid

    real = grid.train

    def flaky(cfg, **kwargs):
        if cfg.method == "scn":
            raise DivergedError(f"{cfg.out}: loss became NaN or infinite in epoch 1; training stopped")
        return real(cfg, **kwargs)

    monkeypatch.setattr(grid, "train", flaky)
    out = tmp_path / "sw"
    result = run_sweep(out, methods=["scn", "baseline"], noise=[0.0], seeds=1, settings={**SHARED, "epochs": 1},
                       progress=False, log=lambda line: None)
    assert [c.method for c, _ in result.failed] == ["scn"] and [c.method for c in result.trained] == ["baseline"]
    table, markdown = write_tables(out)
    assert list(table["method"]) == ["baseline"]
    assert "Not in the table: scn/noise 0/seed 0 (missing)" in markdown


def test_a_cell_another_process_trains_is_skipped_and_its_lock_kept(tmp_path) -> None:
    from relabscope.rundir import LOCK_NAME, RunDirLock

    out = tmp_path / "sw"
    grid = dict(methods=["baseline"], noise=[0.0], settings={**SHARED, "epochs": 1}, progress=False,
                log=lambda line: None)
    run_sweep(out, seeds=[0], **grid)
    other = cells(out, ["baseline"], [0.0], [1])[0]
    with RunDirLock(other.run_dir):  # as a second `relabscope sweep` would while training it
        result = run_sweep(out, seeds=[0, 1], **grid)
        assert result.busy == [other] and [c.seed for c in result.skipped] == [0] and not result.trained
        assert (other.run_dir / LOCK_NAME).exists()  # the other process's lock file is left alone
    assert run_sweep(out, seeds=[0, 1], **grid).trained == [other]


@pytest.mark.parametrize("method", ["rul", "dmue-c"])
def test_new_methods_work_in_every_per_run_view(sweep_dir, method) -> None:
    """Grad-CAM rebuilds the method's network from the log's config; the method's own
    quantities are logged for every sample and drawn by the sample inspector's view."""
    import relabscope as rs
    from relabscope import plot

    run_dir = cells(sweep_dir, [method], [0.3], [0])[0].run_dir
    with rs.open_run(run_dir) as run:
        sid = int(np.flatnonzero(run.train_mask)[0])
        cam = run.gradcam([sid], label="given")
        assert cam.heatmaps.shape[0] == 1 and np.isfinite(cam.heatmaps).all()
        np.testing.assert_allclose(cam.probabilities.sum(axis=1), 1.0, rtol=1e-4)
        expected = {"rul": ["uncertainty"], "dmue-c": ["weight", "latent"]}[method]
        assert run.fields == expected
        fig = plot.method_fields(run, sid)
        first = run.field(expected[0], sample_id=sid)
        assert first.shape == (run.num_epochs,)
        np.testing.assert_allclose(np.asarray(fig.data[0].y, dtype=float), first, rtol=1e-6)
        if method == "dmue-c":
            latent = run.field("latent", -1)[run.train_mask]
            np.testing.assert_allclose(latent.sum(axis=1), 1.0, rtol=1e-4)
            given = run.given_labels[run.train_mask]
            assert np.all(latent[np.arange(len(given)), given] == 0)
            assert len(fig.data) == 1 + run.num_classes  # the weight line, a stacked area per class
        assert plot.figure_note(plot.flipflops(run)) is not None  # never relabels: a note, not an empty chart


def test_report_of_a_sweep_folder(sweep_dir, tmp_path) -> None:
    out = tmp_path / "report"
    result = CliRunner().invoke(main, ["report", str(sweep_dir), "--out", str(out), "--no-png"])
    assert result.exit_code == 0, result.output
    index = (out / "index.html").read_text()
    table = accuracy_table(sweep_table(sweep_dir))
    for method in ALL:
        assert f"<td>{table.loc[method, 'noise 30%']}</td>" in index
    for name in ("sweep__accuracy_vs_noise", "sweep__relabelling_vs_noise", "highest-noise__consistency",
                 "highest-noise__compactness"):
        assert (out / "figures" / f"{name}.html").is_file()
    assert pd.read_csv(out / "tables" / "sweep__numbers.csv").shape[0] == len(ALL) * 2
    assert "Every method at noise 30%, seed 0" in index


def _grow(out: str, method: str, start) -> None:
    start.wait(timeout=60)
    write_manifest(Path(out), [method], [0.0], [0], {"epochs": 1})


def test_sweeps_started_together_grow_one_grid(tmp_path) -> None:
    """Processes that start one sweep in one new folder at the same moment (``--gpus``,
    several terminals) never see each other's temporary files as a foreign folder, and the
    manifest names every method any of them asked for."""
    ctx = multiprocessing.get_context("fork")
    start = ctx.Barrier(6)
    methods = [f"m{i}" for i in range(6)]
    procs = [ctx.Process(target=_grow, args=(str(tmp_path / "sw"), m, start)) for m in methods]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
    assert [p.exitcode for p in procs] == [0] * 6
    assert sorted(read_manifest(tmp_path / "sw")["methods"]) == methods
