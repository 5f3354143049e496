"""Canaries (``--canaries``): exactly the asked fraction of the training labels, moved to
another class, chosen by the seed alone, never in the test split, recorded in the log; and
what suspect_quality() estimates from them equals the same figures recomputed from the log."""

from __future__ import annotations

import numpy as np
import pytest

import relabscope as rs
from relabscope.analysis.suspects import delong_auroc
from relabscope.config import resolve
from relabscope.data.canaries import CANARY_COLUMN, plant_canaries
from relabscope.data.pipeline import prepare
from relabscope.errors import RelabscopeError

SYNTHETIC = {"dataset": "synthetic", "dataset_options": {"num_train": 400, "num_test": 64, "size": 32},
             "image_size": 16, "device": "cpu", "workers": 0}


def test_exactly_the_fraction_moves_each_to_another_class() -> None:
    labels = np.arange(1000) % 7
    planted, original = plant_canaries(labels, 0.02, 7, seed=3)
    chosen = np.flatnonzero(original >= 0)
    assert len(chosen) == 20
    assert (original[chosen] == labels[chosen]).all() and (planted[chosen] != labels[chosen]).all()
    others = np.setdiff1d(np.arange(1000), chosen)
    assert (planted[others] == labels[others]).all() and (original[others] == -1).all()
    assert len(np.flatnonzero(plant_canaries(labels, 0.0, 7, seed=3)[1] >= 0)) == 0


def test_the_seed_alone_chooses_them() -> None:
    labels = np.arange(500) % 5
    first, again, other = (plant_canaries(labels, 0.05, 5, seed=s) for s in (1, 1, 2))
    assert np.array_equal(first[0], again[0]) and np.array_equal(first[1], again[1])
    assert not np.array_equal(first[1] >= 0, other[1] >= 0)
    # the labels do not steer the choice: other labels, the same samples chosen
    assert np.array_equal(plant_canaries((labels + 1) % 5, 0.05, 5, seed=1)[1] >= 0, first[1] >= 0)


def test_a_canary_matrix_sends_them_where_its_rows_say(tmp_path) -> None:
    """--canary-matrix: a canary of class i goes to j != i in proportion to [i, j]; a row
    with nothing off its diagonal sends its canaries uniformly; the same samples are chosen
    as without the matrix."""
    like = np.eye(4)
    like[0] = [0.5, 0.5, 0.0, 0.0]  # class 0 only ever to 1
    like[1] = [0.1, 0.6, 0.0, 0.3]  # class 1 to 0 or 3, 1 : 3
    labels = np.arange(8000) % 4
    planted, original = plant_canaries(labels, 0.4, 4, seed=5, like=like)
    assert np.array_equal(original >= 0, plant_canaries(labels, 0.4, 4, seed=5)[1] >= 0)
    moved = {i: np.bincount(planted[(original >= 0) & (labels == i)], minlength=4) for i in range(4)}
    assert moved[0][[0, 2, 3]].sum() == 0 and moved[0][1] > 0
    assert moved[1][[1, 2]].sum() == 0 and 0.15 < moved[1][0] / (moved[1][0] + moved[1][3]) < 0.35
    for i in (2, 3):  # identity rows: uniform over the other classes
        others = np.delete(moved[i], i)
        assert moved[i][i] == 0 and others.min() > 0.25 * others.sum()
    np.savetxt(tmp_path / "like.csv", np.eye(7)[[1, 0, 3, 2, 5, 4, 6]] * 0.5 + np.eye(7) * 0.5, delimiter=",")
    data = prepare(resolve({**SYNTHETIC, "canaries": 0.1, "seed": 2, "canary_matrix": str(tmp_path / "like.csv")}))
    original = data.train.extras[CANARY_COLUMN]
    chosen = original >= 0
    pairs = {0: 1, 1: 0, 2: 3, 3: 2, 4: 5, 5: 4}
    assert all(data.train.labels[i] == pairs[original[i]] for i in np.flatnonzero(chosen) if original[i] != 6)
    with pytest.raises(RelabscopeError, match="canary_matrix needs canaries > 0"):
        resolve({**SYNTHETIC, "canary_matrix": str(tmp_path / "like.csv")})


def test_the_noise_matrix_estimate_is_the_calibrated_joint_by_column() -> None:
    from relabscope.analysis.suspects import noise_matrix_estimate

    given = np.repeat([0, 1], 10)
    confident = np.r_[[0] * 8, [1] * 2, [1] * 10]  # two given 0 are confidently 1
    estimate = noise_matrix_estimate(given, confident, 3)
    # joint [[8, 2], [0, 10]]: of the 12 found in class 1, 2 were given 0
    assert estimate == pytest.approx(np.array([[1, 0, 0], [2 / 12, 10 / 12, 0], [0, 0, 1]]))


@pytest.mark.parametrize("fraction", [-0.1, 0.5, 1.0])
def test_a_fraction_out_of_range_is_refused(fraction: float) -> None:
    with pytest.raises(ValueError, match=r"canary fraction must be in \[0, 0.5\)"):
        plant_canaries(np.zeros(10, np.int64), fraction, 3, seed=0)
    with pytest.raises(RelabscopeError, match=r"canaries must be in \[0, 0.5\)"):
        resolve({**SYNTHETIC, "canaries": fraction})


def test_canaries_are_planted_after_noise_and_limit_in_the_training_split_only() -> None:
    data = prepare(resolve({**SYNTHETIC, "noise": 0.2, "limit": 300, "canaries": 0.05, "seed": 4}))
    noisy_only = prepare(resolve({**SYNTHETIC, "noise": 0.2, "limit": 300, "seed": 4}))
    original = data.train.extras[CANARY_COLUMN]
    chosen = np.flatnonzero(original >= 0)
    assert len(data.train) == 300 and len(chosen) == 15
    assert np.array_equal(original[chosen], noisy_only.train.labels[chosen])  # moved from the noisy label
    assert (data.train.labels[chosen] != original[chosen]).all()
    assert np.array_equal(np.delete(data.train.labels, chosen), np.delete(noisy_only.train.labels, chosen))
    assert np.array_equal(data.train.clean_labels, noisy_only.train.clean_labels)  # not promoted to clean
    assert (data.test.extras[CANARY_COLUMN] == -1).all()
    table = data.sample_table()
    assert np.array_equal(table.extras[CANARY_COLUMN][:300], original)


@pytest.fixture(scope="module")
def canary_run(tmp_path_factory: pytest.TempPathFactory):
    """SCN relabelling from the second epoch with a low threshold: relabels for sure."""
    from relabscope.training.runner import train

    out = tmp_path_factory.mktemp("canaries") / "run"
    train({**SYNTHETIC, "method": "scn", "noise": 0.2, "limit": 300, "canaries": 0.05, "epochs": 3, "seed": 4,
           "relabel_epoch": 1, "delta": 0.05, "out": str(out)}, progress=False, log=lambda line: None)
    return out


def test_the_log_records_them_and_suspect_quality_measures_against_them(canary_run) -> None:
    from sklearn.metrics import average_precision_score, roc_auc_score

    with rs.open_run(canary_run) as run:
        assert run.has_canaries and int((run.canary_labels >= 0).sum()) == 15
        assert (run.canary_labels[~run.train_mask] == -1).all()
        assert run.config["canaries"] == 0.05
        quality = run.suspect_quality()
        assert quality.attrs["truth"] == "canaries"
        score = quality.set_index("scorer").loc["score"]
        table = run.suspects()
        canary = run.canary_labels[table["sample_id"].to_numpy()] >= 0
        scores = table["score"].to_numpy()
        expected = delong_auroc(scores[canary], scores[~canary], 1.959963984540054)
        assert (score["auroc"], score["auroc_low"], score["auroc_high"]) == pytest.approx(expected)
        assert score["auroc"] == pytest.approx(roc_auc_score(canary, scores))
        assert score["average_precision"] == pytest.approx(average_precision_score(canary, scores))
        assert score["ap_low"] < score["average_precision"] < score["ap_high"]
        assert score["noisy"] == 15 and score["n"] == 300
        # the synthetic set knows clean labels too: that truth stays one argument away
        assert run.suspect_quality(truth="clean").attrs["truth"] == "clean"


def test_a_run_estimates_its_noise_matrix_without_its_canaries(canary_run) -> None:
    from relabscope.analysis.suspects import noise_matrix_estimate

    with rs.open_run(canary_run) as run:
        estimate = run.noise_matrix_estimate()
        table = run.suspects()
        real = run.canary_labels[table["sample_id"].to_numpy()] < 0
    assert estimate.shape == (7, 7) and np.allclose(estimate.sum(axis=1), 1.0) and (estimate >= 0).all()
    assert np.allclose(estimate, noise_matrix_estimate(table["given_label"][real], table["confident_label"][real], 7))


def test_canary_recovery_counts_planted_errors_undone_and_other_labels_moved(canary_run) -> None:
    with rs.open_run(canary_run) as run:
        recovery = run.canary_recovery()
        train = run.train_mask
        labels, final = run.labels()[:, train], run.final_labels()[train]
        original, given = run.canary_labels[train], run.given_labels[train]
        canary = original >= 0
        for e in range(run.num_epochs):
            after = labels[e + 1] if e + 1 < run.num_epochs else final
            row = recovery.iloc[e]
            assert row["canaries_back"] == pytest.approx(np.mean(after[canary] == original[canary]))
            assert row["others_away"] == pytest.approx(np.mean(after[~canary] != given[~canary]))
        assert recovery["relabels"].sum() > 0 and recovery["canaries_back"].iloc[-1] > 0
        summary = rs.compare(run, run).summary(warn=False)
        assert summary.loc["canaries_back"].iloc[0] == recovery["canaries_back"].iloc[-1]
        assert summary.loc["others_away"].iloc[0] == recovery["others_away"].iloc[-1]


def test_exports_never_hold_canaries(canary_run, tmp_path) -> None:
    from relabscope.analysis.export import export_suspects, suspect_rows

    with rs.open_run(canary_run) as run:
        rows = suspect_rows(run)
        assert len(rows) == 300 - 15 and (run.canary_labels[rows["sample_id"].to_numpy()] == -1).all()
        written = export_suspects(run, tmp_path / "suspects.csv", top=None)
        import pandas as pd
        assert set(pd.read_csv(written[0])["sample_id"]).isdisjoint(np.flatnonzero(run.canary_labels >= 0))


def test_a_run_without_canaries_says_so(tmp_path) -> None:
    from relabscope.training.runner import train

    train({**SYNTHETIC, "method": "baseline", "limit": 100, "epochs": 1, "out": str(tmp_path / "run")},
          progress=False, log=lambda line: None)
    with rs.open_run(tmp_path / "run") as run:
        assert not run.has_canaries and (run.canary_labels == -1).all()
        assert run.suspect_quality().attrs["truth"] == "clean"  # auto: the clean labels the data set knows
        with pytest.raises(ValueError, match="no canaries"):
            run.suspect_quality(truth="canaries")


def test_the_review_page_hides_canaries_and_says_what_they_measured(canary_run) -> None:
    from relabscope.dashboard import review
    from relabscope.dashboard.context import Context
    from relabscope.dashboard.registry import RunRegistry

    ctx = Context(RunRegistry([canary_run]))
    run_id = ctx.registry.ids()[0]
    run = ctx.run(run_id)
    table = review.suspects(ctx, run_id)
    assert len(table) == 285 and (run.canary_labels[table["sample_id"].to_numpy()] == -1).all()
    line = review.canary_line(run)
    full = run.suspects()
    depth = int(full["flag"].sum()) or 15
    planted = full[run.canary_labels[full["sample_id"].to_numpy()] >= 0]
    found = int((planted["rank"] <= depth).sum())
    auroc = run.suspect_quality().set_index("scorer").loc["score", "auroc"]
    assert line is not None and f"puts {found} of its 15 canaries" in line and f"in its top {depth}" in line
    assert f"AUROC {auroc:.2f}" in line
    with pytest.raises(ValueError, match=r"are canaries .* no decision is taken on them"):
        run.review([int(planted["sample_id"].iloc[0])], "keep", reviewer="ann")


def test_runcapture_plants_them_and_a_loop_trains_on_them(tmp_path) -> None:
    """RunCapture(canaries=...) for a loop of one's own: the labels in effect start from
    the planted labels, the log records the canaries and suspect_quality reads them."""
    import torch

    from relabscope.integrations import RunCapture

    given = torch.arange(200) % 4
    cap = RunCapture(tmp_path / "run.h5", given, torch.arange(20) % 4, canaries=0.05, canary_seed=7)
    planted, original = plant_canaries(given.numpy(), 0.05, 4, seed=7)
    assert torch.equal(cap.labels(), torch.as_tensor(planted))  # what the loop trains on
    with cap:
        for _ in range(2):
            for start in range(0, 200, 50):
                ids = torch.arange(start, start + 50)
                cap.log(ids, torch.nn.functional.one_hot(cap.labels(ids), 4).float(), torch.randn(50, 3))
            cap.log(torch.arange(20), torch.randn(20, 4), torch.randn(20, 3), phase="test")
            cap.end_epoch()
    with rs.open_run(tmp_path / "run.h5") as run:
        assert np.array_equal(run.canary_labels[:200], original) and (run.canary_labels[200:] == -1).all()
        assert np.array_equal(run.given_labels[:200], planted) and run.config["canaries"] == 0.05
        assert run.suspect_quality().attrs["truth"] == "canaries"
    with pytest.raises(RelabscopeError, match=r"canaries: canary fraction must be in \[0, 0.5\)"):
        RunCapture(tmp_path / "other.h5", given, canaries=0.6)


def test_the_overview_shows_what_relabelling_did_to_the_canaries(canary_run) -> None:
    from relabscope import plot
    from relabscope.dashboard import overview

    with rs.open_run(canary_run) as run:
        recovery = run.canary_recovery()
        numbers = overview.headline(run, run.flipflops())
        assert numbers["canaries_back"] == recovery["canaries_back"].iloc[-1]
        assert numbers["others_away"] == recovery["others_away"].iloc[-1]
        card = next(c for c in overview.headline_cards(numbers) if c[0] == "canaries relabelled back")
        assert card[1] == f"{100 * recovery['canaries_back'].iloc[-1]:.1f}%"
        fig = plot.canary_recovery(run)
        lines = {t.name: list(t.y) for t in fig.data if t.type == "scatter"}
        assert lines["canaries relabelled back to their label (planted errors undone)"] == \
            recovery["canaries_back"].tolist()
        assert lines["other samples moved off their given label (at most the corrupted)"] == \
            recovery["others_away"].tolist()
        # with clean labels known the overview's recovery figure stays the clean-label one
        assert "Noise recovery" in overview.figure(run, "recovery").layout.title.text


def test_the_sweep_table_carries_them(canary_run) -> None:
    import pandas as pd

    from relabscope.sweep.manifest import Cell
    from relabscope.sweep.table import relabel_table, run_row, sweep_table

    row = run_row(Cell("scn", 0.2, 4, canary_run))
    with rs.open_run(canary_run) as run:
        recovery = run.canary_recovery()
    assert row["canaries_back"] == recovery["canaries_back"].iloc[-1]
    assert row["others_away"] == recovery["others_away"].iloc[-1]
    table = relabel_table(sweep_table(pd.DataFrame([row])))
    assert table.loc[0, "canaries relabelled back"] == f"{recovery['canaries_back'].iloc[-1]:.1%}"
    assert table.loc[0, "other labels moved"] == f"{recovery['others_away'].iloc[-1]:.1%}"
    without = {**row, "canaries_back": np.nan, "others_away": np.nan}
    assert "canaries relabelled back" not in relabel_table(sweep_table(pd.DataFrame([without])))


def test_class_sizes_shown_as_given_are_the_data_sets(canary_run) -> None:
    with rs.open_run(canary_run) as run:
        counts = run.class_counts()
        given = counts[counts["epoch"] == 0].set_index("class_id")["given"]
        before = run.dataset_labels[run.train_mask]
        assert given.tolist() == np.bincount(before, minlength=run.num_classes).tolist()
        assert not np.array_equal(before, run.given_labels[run.train_mask])  # the canaries moved some


def test_the_map_and_the_flip_flop_table_can_hide_them(canary_run) -> None:
    from relabscope.dashboard import embedding_map, flipflops, ids
    from relabscope.dashboard.components import HIDE_CANARIES, without_canaries
    from relabscope.dashboard.context import Context
    from relabscope.dashboard.registry import RunRegistry

    ctx = Context(RunRegistry([canary_run]))
    run_id = ctx.registry.ids()[0]
    run = ctx.run(run_id)
    planted = set(np.flatnonzero(run.canary_labels >= 0).tolist())

    def drawn(fig) -> set[int]:
        return {int(c[0]) for trace in fig.data if trace.customdata is not None for c in trace.customdata}

    shown, line, _ = embedding_map.map_figure(ctx, run_id, "pca", run.num_epochs - 1, None, "effect")
    hidden, hidden_line, _ = embedding_map.map_figure(ctx, run_id, "pca", run.num_epochs - 1, None, "effect",
                                                      [HIDE_CANARIES])
    assert planted <= drawn(shown) and not planted & drawn(hidden)
    assert drawn(shown) - drawn(hidden) == planted and "285 of 300 training samples (15 canaries hidden)" in hidden_line
    flip = ctx.flipflops(run_id)
    kept = without_canaries(run, flip, [HIDE_CANARIES])
    assert len(kept) == len(flip) - 15 and not planted & set(kept["sample_id"])
    assert without_canaries(run, flip, []) is flip
    # the toggle is on both pages, shown for a run with canaries
    for page, toggle in ((embedding_map, ids.MP_CANARIES), (flipflops, ids.FF_CANARIES)):
        found = [c for c in _walk(page.layout(ctx, run_id, {})) if getattr(c, "id", None) == toggle]
        assert len(found) == 1 and found[0].style is None


def _walk(component):
    yield component
    children = getattr(component, "children", None)
    for child in children if isinstance(children, (list, tuple)) else [children] if children is not None else []:
        if hasattr(child, "to_plotly_json"):
            yield from _walk(child)
