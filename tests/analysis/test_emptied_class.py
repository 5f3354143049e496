"""Every Run and Comparison call, and every figure, on a log in which relabelling empties a
class: none raises, numbers stay numbers, and what has no value (the emptied class's
center) is named instead of drawn as NaN."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

import relabscope as rs
from relabscope.plot import figure_note

SAMPLE_MOVED = 48  # an "anger" sample: relabelled away in epoch 1


@pytest.fixture(scope="module")
def run(emptied_run):
    with rs.open_run(emptied_run) as r:
        yield r


ANGER = 3  # "anger": emptied by the relabels of epoch 1 (relabscope.examples.EXAMPLE)
ANGER_IDS = np.arange(48, 64)  # its 16 training samples, given (and clean) label anger
TRAIN = np.arange(64)


def _no_anger_after_epoch_1(labels: np.ndarray) -> None:
    assert (labels[1, ANGER_IDS] == ANGER).all() and not (labels[2:, TRAIN] == ANGER).any()


def _events(ev: pd.DataFrame) -> None:
    out = ev[ev["old"] == ANGER]
    assert sorted(out["sample_id"]) == ANGER_IDS.tolist() and (out["epoch"] == 1).all()
    assert not (ev["new"] == ANGER).any()


def _consistency(cons: pd.Series) -> None:
    # the 16 events out of anger have no "after" (no anger mean from epoch 2 on): not evaluated, not NaN'd
    assert cons["events"] == 38 and cons["evaluated"] == 14 and 0.0 <= cons["closer_to_new"] <= 1.0


def _consistency_events(ev: pd.DataFrame) -> None:
    out = ev[ev["old"] == ANGER]
    assert len(out) == 16 and out["closer_to_new"].isna().all() and out["d_old_after"].isna().all()
    assert np.isfinite(out["d_old_before"]).all()  # epoch 1 still had an anger mean


def _without_mean(table: pd.DataFrame, n: int, without: int) -> None:
    assert table.loc["anger", "n"] == n and table.loc["anger", "n_without_mean"] == without
    assert table.loc["anger", ["mean", "ratio"]].isna().all()
    assert table.drop(index="anger")[["mean", "ratio"]].notna().all().all()


def _profile(profile: pd.DataFrame) -> None:
    anger = profile[profile["class_name"] == "anger"].set_index("epoch")
    assert np.isfinite(anger.loc[1, "distance"]) and anger.loc[2:, "distance"].isna().all()
    assert anger["is_given"].all() and (profile.loc[profile["epoch"] == 2, "label_in_effect"] == 0).all()


def _dynamics(dyn: pd.DataFrame) -> None:
    anger = dyn.set_index("sample_id").loc[ANGER_IDS]
    # the model still predicts anger for them: a large margin for the given label, a negative one for the new
    assert anger["aum_given"].mean() > 1.0 > 0.0 > anger["aum_effect"].mean()


def _counts(counts: pd.DataFrame) -> None:
    anger = counts[counts["class_name"] == "anger"].set_index("epoch")
    assert anger.loc[1, "count"] == 16 and (anger.loc[2:, "count"] == 0).all() and (anger["given"] == 16).all()


def _warnings(w: pd.DataFrame) -> None:
    anger = w.set_index("class_name").loc["anger"]
    assert anger["kind"] == "emptied" and anger["emptied_epoch"] == 1 and anger["final"] == 0


API_CALLS = {
    "labels": (lambda r: r.labels(), _no_anger_after_epoch_1),
    "final_labels": (lambda r: r.final_labels(), lambda f: (f[ANGER_IDS] == ANGER_IDS % 2).all()),
    "predictions": (lambda r: r.predictions(), lambda p: (p[:, ANGER_IDS] == ANGER).mean() > 0.9),
    "probabilities": (lambda r: r.probabilities(), lambda p: (p[:, ANGER_IDS].argmax(-1) == ANGER).mean() > 0.9),
    "relabel_events": (lambda r: r.relabel_events(), _events),
    "distances": (lambda r: r.distances(), lambda d: np.isnan(d[:, ANGER]).all() and np.isfinite(d[:, :ANGER]).all()),
    "class_means": (lambda r: r.class_means(), lambda m: np.isnan(m[ANGER]).all() and np.isfinite(m[:ANGER]).all()),
    "embeddings": (lambda r: r.embeddings(), lambda e: np.isfinite(e[ANGER_IDS].astype(float)).all()),
    "field": (lambda r: r.field("weight"), lambda w: np.isfinite(w[:, ANGER_IDS]).all()),
    "metrics": (lambda r: r.metrics(), lambda m: (m["acc_anger"] == 1.0).all()),  # 4 anger test samples, all right
    "confusion": (lambda r: r.confusion(), lambda c: c.loc["anger"].sum() == 4 and c.loc["anger", "anger"] == 4),
    "flipflops": (lambda r: r.flipflops(), lambda f: (f.set_index("sample_id").loc[ANGER_IDS, "epochs_anger"] == 2).all()),
    "oscillation_matrix": (lambda r: r.oscillation_matrix(),
                           lambda o: o.loc["anger"].sum() == 0 and o["anger"].sum() == 0 and o.to_numpy().sum() > 0),
    "oscillations": (lambda r: r.oscillations(), lambda o: len(o) > 0 and not o[["a", "b"]].isin([ANGER]).any().any()),
    "consistency": (lambda r: r.consistency(), _consistency),
    "consistency_events": (lambda r: r.consistency_events(), _consistency_events),
    # lag 0 (epoch 1) measures all 38 events, anger's too (it still had a mean); lag 2 leaves its 16 out
    "consistency_by_lag": (lambda r: r.consistency_by_lag(),
                           lambda lag: lag.set_index("lag").loc[[0, 2], "events"].tolist() == [38, 14]),
    "compactness": (lambda r: r.compactness(), lambda t: _without_mean(t, 0, 0)),  # no sample left in anger
    "compactness_given": (lambda r: r.compactness(labels="given"), lambda t: _without_mean(t, 16, 16)),
    "compactness_clean": (lambda r: r.compactness(labels="clean"), lambda t: _without_mean(t, 16, 16)),
    "distance_profile": (lambda r: r.distance_profile(SAMPLE_MOVED), _profile),
    "dynamics": (lambda r: r.dynamics(), _dynamics),
    "noise_detection": (lambda r: r.noise_detection(), lambda t: (t["n"] == 64).all()),  # anger samples scored too
    "noise_recovery": (lambda r: r.noise_recovery(),
                       lambda t: t.set_index("epoch").loc[1, "clean_corrupted"] >= 16 / 62),  # anger was clean
    "class_counts": (lambda r: r.class_counts(), _counts),
    "class_warnings": (lambda r: r.class_warnings(), _warnings),
    "label_flow": (lambda r: r.label_flow(), lambda f: f.loc["anger"].tolist() == [8, 8, 0, 0] and f["anger"].sum() == 0),
    "project_tsne": (lambda r: r.project("tsne"),
                     lambda p: (p["given_label"] == ANGER).sum() == 16 and not (p["label"] == ANGER).any()),
}


@pytest.mark.parametrize("name", API_CALLS)
def test_every_run_call_answers_about_the_emptied_class(run, name) -> None:
    call, check = API_CALLS[name]
    assert check(call(run)) in (None, True), name


def test_numbers_stay_numbers(run) -> None:
    cons = run.consistency()
    for key in ("closer_before", "closer_to_new", "mean_gap_change", "mean_rel_gap_change", "undone_fraction"):
        assert math.isfinite(float(cons[key])), key
    # the example's probabilities leave no sample just below the threshold: no control, said as NaN and 0
    assert cons["control"] == 0 and math.isnan(cons["closer_vs_control"])
    comp = run.compactness()
    assert comp.loc["anger", "n"] == 0 and comp.drop(index="anger")[["mean", "std"]].notna().all().all()
    dyn = run.dynamics()
    assert not dyn.isna().any().any()
    from relabscope.analysis.compare import headline

    numbers = headline(run)
    assert not numbers.drop(["control_closer", "closer_vs_control"]).isna().any(), numbers[numbers.isna()]
    assert numbers["classes_compared"] == 3  # anger has no mean


def test_every_figure_draws_and_geometry_names_the_emptied_class(run, emptied_pair) -> None:
    other = rs.open_run(emptied_pair[1])
    geometry = {
        "compactness": rs.plot.compactness(run),
        "compactness (two runs)": rs.plot.compactness([run, other]),
        "distance bars": rs.plot.distance_bars(run, SAMPLE_MOVED),
        "consistency": rs.plot.consistency_summary(run),
        "gap change": rs.plot.gap_change_histogram([run, other]),
        "consistency scatter": rs.plot.consistency_scatter(run),
        "projection": rs.plot.projection(run, method="tsne"),
        "class counts": rs.plot.class_counts([run, other]),
        "label flow": rs.plot.label_flow(run),
    }
    for name, fig in geometry.items():
        words = " ".join(str(t) for t in (fig.layout.title.subtitle.text, *(a.text for a in fig.layout.annotations)))
        assert "anger" in words, (name, words)
        assert figure_note(fig) is None, name
    bars = geometry["compactness"].data[0]
    assert "anger" not in list(bars.x) and np.isfinite(np.asarray(bars.y, float)).all()
    others = [rs.plot.accuracy_curves(run), rs.plot.relabels_per_epoch(run), rs.plot.class_accuracy(run),
              rs.plot.confusion(run), rs.plot.flipflops(run), rs.plot.oscillation_heatmap(run),
              rs.plot.flipflop_totals([run, other]), rs.plot.label_timeline(run, SAMPLE_MOVED),
              rs.plot.probability_trace(run, SAMPLE_MOVED), rs.plot.data_map(run), rs.plot.noise_recovery(run),
              rs.plot.noise_detection(run), rs.plot.method_fields(run, SAMPLE_MOVED)]
    assert all(figure_note(f) is None for f in others)


def test_comparison_calls_answer(emptied_pair) -> None:
    comp = rs.compare(*emptied_pair)
    for call in (comp.metrics, comp.compactness, comp.consistency, comp.samples, comp.class_counts,
                 comp.class_warnings, lambda: comp.summary(warn=False)):
        assert len(call()) > 0
    summary = comp.summary(warn=False)
    no_control = ["control_closer", "closer_vs_control"]  # neither example run has a control group
    assert not summary.drop(index=no_control, columns=summary.columns[2]).isna().any().any()
    assert summary.loc[no_control].isna().all().all()
    assert comp.shared_classes() == ["neutral", "happiness", "sadness"] and comp.geometry_note() is None
    assert isinstance(comp.class_warnings(), pd.DataFrame) and comp.class_warnings()["run"].nunique() == 2
