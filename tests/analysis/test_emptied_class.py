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


API_CALLS = {
    "labels": lambda r: r.labels(),
    "final_labels": lambda r: r.final_labels(),
    "predictions": lambda r: r.predictions(),
    "probabilities": lambda r: r.probabilities(),
    "relabel_events": lambda r: r.relabel_events(),
    "distances": lambda r: r.distances(),
    "class_means": lambda r: r.class_means(),
    "embeddings": lambda r: r.embeddings(),
    "field": lambda r: r.field("weight"),
    "metrics": lambda r: r.metrics(),
    "confusion": lambda r: r.confusion(),
    "flipflops": lambda r: r.flipflops(),
    "oscillation_matrix": lambda r: r.oscillation_matrix(),
    "oscillations": lambda r: r.oscillations(),
    "consistency": lambda r: r.consistency(),
    "consistency_events": lambda r: r.consistency_events(),
    "compactness": lambda r: r.compactness(),
    "compactness_given": lambda r: r.compactness(labels="given"),
    "compactness_clean": lambda r: r.compactness(labels="clean"),
    "distance_profile": lambda r: r.distance_profile(SAMPLE_MOVED),
    "dynamics": lambda r: r.dynamics(),
    "noise_detection": lambda r: r.noise_detection(),
    "noise_recovery": lambda r: r.noise_recovery(),
    "class_counts": lambda r: r.class_counts(),
    "class_warnings": lambda r: r.class_warnings(),
    "label_flow": lambda r: r.label_flow(),
    "project_tsne": lambda r: r.project("tsne"),
}


@pytest.mark.parametrize("name", API_CALLS)
def test_every_run_call_answers(run, name) -> None:
    out = API_CALLS[name](run)
    assert len(out) > 0


def test_numbers_stay_numbers(run) -> None:
    cons = run.consistency()
    for key in ("closer_before", "closer_to_new", "mean_gap_change", "mean_rel_gap_change", "undone_fraction"):
        assert math.isfinite(float(cons[key])), key
    assert int(cons["evaluated"]) > 0  # events into or out of the emptied class are skipped, not NaN'd
    comp = run.compactness()
    assert comp.loc["anger", "n"] == 0 and comp.drop(index="anger")[["mean", "std"]].notna().all().all()
    dyn = run.dynamics()
    assert not dyn.isna().any().any()
    from relabscope.analysis.compare import headline

    numbers = headline(run)
    assert not numbers.isna().any(), numbers[numbers.isna()]


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
    assert not summary.drop(columns=summary.columns[2]).isna().any().any()
    assert isinstance(comp.class_warnings(), pd.DataFrame) and comp.class_warnings()["run"].nunique() == 2
