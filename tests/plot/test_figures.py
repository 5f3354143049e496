"""Figure builders on hand-made tables: what is drawn, in which colour, with which numbers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from relabscope import plot
from relabscope.plot import _style

CLASSES = ["Surprise", "Fear", "Disgust", "Happiness", "Sadness", "Anger", "Neutral"]  # RAF-DB order
K = len(CLASSES)


def _bars(fig: go.Figure) -> list[go.Bar]:
    """Bar traces that hold data (legend-only dummies have x == [None])."""
    return [t for t in fig.data if isinstance(t, go.Bar) and t.x is not None and list(t.x) != [None]]


# ---------------------------------------------------------------- style
def test_class_colours_follow_names_across_datasets():
    raf = plot.class_colors(CLASSES)
    fer = plot.class_colors(["Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral"])
    assert raf["Happiness"] == fer["Happy"] and raf["Anger"] == fer["Angry"] and raf["Sadness"] == fer["Sad"]
    assert len(set(raf.values())) == K
    odd = plot.class_colors(["cat", "dog"])
    assert len(set(odd.values())) == 2


def test_display_order_is_canonical_then_the_rest():
    assert plot.ordered_names(CLASSES) == ["Neutral", "Happiness", "Surprise", "Sadness", "Anger", "Disgust", "Fear"]
    assert plot.ordered_names(["zeta", "Fear", "alpha", "Neutral"]) == ["Neutral", "Fear", "zeta", "alpha"]


# ---------------------------------------------------------------- Fig. 1/4
def _profile(epochs=(0, 1, 3), given=3, effect=(3, 6, 6), clean=1, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for e, eff in zip(epochs, effect):
        for k, name in enumerate(CLASSES):
            rows.append({"epoch": e, "class_id": k, "class_name": name, "distance": float(rng.uniform(1, 10)),
                         "is_given": k == given, "is_effect": k == eff, "is_clean": k == clean,
                         "label_in_effect": eff})
    return pd.DataFrame(rows)


def test_distance_bars_colour_roles_and_heights():
    prof = _profile()
    events = pd.DataFrame({"epoch": [0], "sample_id": [7], "old": [3], "new": [6]})
    fig = plot.distance_bars_figure(prof, events=events, class_names=CLASSES, sample_id=7, run_name="scn")
    bars = _bars(fig)
    assert len(bars) == 3  # one panel per epoch
    for bar, e in zip(bars, (0, 1, 3)):
        want = prof[prof["epoch"] == e].set_index("class_name")
        got = dict(zip(bar.x, bar.y))
        assert got == pytest.approx(want["distance"].to_dict())  # heights are the input numbers
        colours = dict(zip(bar.x, bar.marker.color))
        assert colours["Happiness"] == _style.GIVEN  # given label: green
        for name in CLASSES:
            if name == "Happiness":
                continue
            expected = _style.EFFECT if (e > 0 and name == "Neutral") else _style.OTHER
            assert colours[name] == expected, (e, name)
        widths = dict(zip(bar.x, bar.marker.line.width))
        assert widths["Fear"] > 0 and sum(w > 0 for w in widths.values()) == 1  # clean label outlined
        assert list(bar.x) == plot.ordered_names(CLASSES)
    assert "sample 7" in fig.layout.title.text and "scn" in fig.layout.title.text
    assert "Happiness → Neutral in epoch 0" in fig.layout.title.subtitle.text  # says when the label changed
    assert "relabelled → Neutral" in fig.layout.annotations[0].text  # panel of the relabel epoch
    legend = {t.name for t in fig.data if t.showlegend is not False and t.name}
    assert {"given label", "other classes"} <= legend
    # each panel names its nearest class above that bar, as an annotation (drawn over the bars)
    labels = [a for a in fig.layout.annotations if a.name == "nearest"]
    assert len(labels) == 3 and all(a.text == "nearest" for a in labels)
    for label, bar in zip(labels, bars):
        heights = dict(zip(bar.x, bar.y))
        assert label.x == min(heights, key=heights.get) and label.y == min(heights.values())


def test_distance_bars_without_events_say_never_relabelled():
    fig = plot.distance_bars_figure(_profile(epochs=(0, 3), effect=(3, 3)), class_names=CLASSES, sample_id=1)
    assert "never relabelled" in fig.layout.title.subtitle.text
    for bar in _bars(fig):
        assert _style.EFFECT not in list(bar.marker.color)  # effect == given: green, no amber


def test_compactness_one_and_two_runs():
    a = pd.DataFrame({"n": [10, 5, 0], "mean": [2.0, 3.0, np.nan], "std": [0.5, 0.1, np.nan],
                      "ratio": [0.6, 0.9, np.nan], "nearest_own": [0.9, 0.6, np.nan], "silhouette": [0.4, 0.1, np.nan]},
                     index=pd.Index(["Fear", "Neutral", "Anger"], name="class"))
    fig = plot.compactness_figure({"scn": a}, class_names=["Fear", "Neutral", "Anger"])
    ratio, raw = _bars(fig)
    assert ratio.xaxis == "x" and raw.xaxis == "x2"  # scale-free first, raw beside it
    assert dict(zip(ratio.x, ratio.y))["Fear"] == 0.6
    assert dict(zip(raw.x, raw.y))["Fear"] == 2.0 and dict(zip(raw.x, raw.error_y.array))["Neutral"] == 0.1
    assert "Anger" not in list(raw.x) and "Anger" in fig.layout.title.subtitle.text  # empty: named, not drawn
    assert "model units" in fig.layout.annotations[1].text
    b = a.assign(mean=[1.5, 3.5, np.nan], ratio=[0.5, 0.8, np.nan])
    fig2 = plot.compactness_figure({"scn": a, "scn-c": b}, class_names=["Fear", "Neutral", "Anger"])
    bars = _bars(fig2)
    assert [(t.name, t.xaxis) for t in bars] == [("scn", "x"), ("scn", "x2"), ("scn-c", "x"), ("scn-c", "x2")]
    assert dict(zip(bars[2].x, bars[2].y))["Neutral"] == 0.8
    assert "scn vs scn-c" in fig2.layout.title.text


# ---------------------------------------------------------------- Fig. 3
def _flip_table(num_epochs=6, n=30, seed=1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        spent = rng.multinomial(num_epochs, rng.dirichlet(np.ones(K) * 0.4))
        changes = int(rng.integers(0, 5))
        rows.append({"sample_id": i, "given_label": int(rng.integers(K)), "clean_label": int(rng.integers(K)),
                     "final_label": int(np.argmax(spent)), "changes": changes,
                     "flipflops": int(rng.integers(0, changes + 1)) if changes else 0,
                     "labels_visited": int((spent > 0).sum()),
                     **{f"epochs_{c}": int(v) for c, v in zip(CLASSES, spent)},
                     "first_relabel_epoch": 1 if changes else -1, "last_relabel_epoch": 4 if changes else -1,
                     "final_is_clean": False})
    return pd.DataFrame(rows)


def test_flipflops_segments_sum_to_epochs_and_order_by_flipflops():
    table = _flip_table(num_epochs=6)
    fig = plot.flipflops_figure(table, CLASSES, top=10, run_name="scn")
    bars = _bars(fig)
    assert [b.name for b in bars] == plot.ordered_names(CLASSES)  # one segment per class
    assert fig.layout.barmode == "stack"
    colours = plot.class_colors(CLASSES)
    assert all(b.marker.color == colours[b.name] for b in bars)
    totals = np.sum([np.asarray(b.x, float) for b in bars], axis=0)
    assert len(totals) == 10 and np.all(totals == 6)
    shown = table[table["changes"] > 0].sort_values(["flipflops", "changes", "sample_id"],
                                                    ascending=[False, False, True]).head(10)
    ids = [int(label.split()[0][1:]) for label in bars[0].y]
    assert ids == shown["sample_id"].tolist()
    assert "scn" in fig.layout.title.text


def test_flipflop_views_say_when_the_method_never_relabels():
    table = _flip_table()
    fig = plot.flipflops_figure(table, CLASSES, relabels_at_all=False, method="baseline")
    assert plot.figure_note(fig) == "baseline never relabels" and not fig.data
    osc = pd.DataFrame(np.zeros((K, K), int), index=CLASSES, columns=CLASSES)
    assert plot.figure_note(plot.oscillation_heatmap_figure(osc, relabels_at_all=False, method="baseline"))
    none = table.assign(changes=0, flipflops=0)
    assert plot.figure_note(plot.flipflops_figure(none, CLASSES)) == "no sample was relabelled"


def test_oscillation_heatmap_counts():
    m = np.arange(K * K).reshape(K, K)
    fig = plot.oscillation_heatmap_figure(pd.DataFrame(m, index=CLASSES, columns=CLASSES))
    (hm,) = fig.data
    order = plot.ordered_names(CLASSES)
    z = np.asarray(hm.z)
    assert list(hm.x) == order and list(hm.y) == order
    i, j = order.index("Fear"), order.index("Anger")
    assert z[i, j] == m[CLASSES.index("Fear"), CLASSES.index("Anger")]


def test_label_timeline_marks_given_clean_and_final():
    fig = plot.label_timeline_figure([3, 3, 6, 3, 6], CLASSES, given=3, clean=1, final=3, sample_id=4)
    names = [t.name for t in fig.data]
    assert "given: Happiness" in names and "clean: Fear" in names and "after the last epoch" in names
    effect = next(t for t in fig.data if t.name == "label in effect")
    assert list(effect.y) == ["Happiness", "Happiness", "Neutral", "Happiness", "Neutral"]
    assert list(fig.layout.yaxis.categoryarray) == plot.ordered_names(CLASSES)


def test_flipflop_totals_leave_out_runs_that_never_relabel():
    tables = {"scn": _flip_table(), "baseline": _flip_table().assign(changes=0, flipflops=0)}
    fig = plot.flipflop_totals_figure(tables, relabels_at_all={"scn": True, "baseline": False},
                                      methods={"scn": "scn", "baseline": "baseline"})
    assert [b.name for b in _bars(fig)] == ["scn"]
    assert "baseline never relabels" in fig.layout.title.subtitle.text
    (bar,) = _bars(fig)
    assert dict(zip(bar.x, bar.y))["flip-flop events"] == tables["scn"]["flipflops"].sum()


# ---------------------------------------------------------------- training
def _metrics(n=5, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"epoch": np.arange(n), "test_acc": rng.uniform(0, 1, n), "train_acc": rng.uniform(0, 1, n),
                       "train_loss": rng.uniform(0, 2, n), "lr": 1e-3, "seconds": 1.0,
                       "relabels": rng.integers(0, 50, n)})
    for c in CLASSES:
        df[f"acc_{c}"] = rng.uniform(0, 1, n)
    return df


def test_accuracy_curves_overlay_runs():
    a, b = _metrics(seed=0), _metrics(seed=1)
    fig = plot.accuracy_curves_figure({"scn": a, "scn-c": b})
    test = [t for t in fig.data if t.name.endswith(": test")]
    assert [t.name for t in test] == ["scn: test", "scn-c: test"]
    assert list(test[1].y) == pytest.approx(b["test_acc"].tolist())
    assert test[0].line.color != test[1].line.color
    assert "scn vs scn-c" in fig.layout.title.text


def test_relabels_per_epoch_notes_instead_of_empty_chart():
    m = _metrics()
    only = plot.relabels_per_epoch_figure({"baseline": m}, relabels_at_all=False, methods={"baseline": "baseline"})
    assert plot.figure_note(only) == "baseline never relabels" and not only.data
    both = plot.relabels_per_epoch_figure({"scn": m, "base": m}, relabels_at_all={"scn": True, "base": False},
                                          methods={"scn": "scn", "base": "baseline"})
    (bar,) = _bars(both)
    assert bar.name == "scn" and list(bar.y) == m["relabels"].tolist()
    assert "base (baseline) never relabels" in both.layout.title.subtitle.text


def test_confusion_and_class_accuracy():
    counts = pd.DataFrame(np.eye(K, dtype=int) * 4 + 1, index=CLASSES, columns=CLASSES)
    fig = plot.confusion_figure(counts)
    z = np.asarray(fig.data[0].z)
    assert np.allclose(z.sum(axis=1), 1.0) and z[0, 0] == pytest.approx(5 / 11)
    ca = plot.class_accuracy_figure(_metrics(), CLASSES, run_name="r")
    assert [t.name for t in ca.data] == plot.ordered_names(CLASSES)


# ---------------------------------------------------------------- consistency
def _summary(closer, undone=0.1, rel=-0.1, control=np.nan, control_n=0) -> pd.Series:
    return pd.Series({"events": 10, "evaluated": 8, "closer_before": 0.9, "closer_to_new": closer,
                      "control": control_n, "control_closer": control, "matched_events": 8 if control_n else 0,
                      "closer_vs_control": closer - control, "mean_gap_change": -0.3, "mean_rel_gap_change": rel,
                      "undone": 1, "undone_fraction": undone}, dtype=object)


def test_consistency_summary_side_by_side():
    fig = plot.consistency_summary_figure({"scn": _summary(0.6, rel=0.05, control=0.45, control_n=20),
                                           "scn-c": _summary(0.9), "base": None},
                                          relabels_at_all={"scn": True, "scn-c": True, "base": False},
                                          methods={"base": "baseline"})
    closer = [t for t in _bars(fig) if t.xaxis == "x" and t.offsetgroup == "relabelled"]
    assert {t.x[0]: t.y[0] for t in closer} == {"scn": 0.6, "scn-c": 0.9}
    control = {t.x[0]: t.y[0] for t in _bars(fig) if t.offsetgroup == "control"}
    assert control["scn"] == 0.45 and np.isnan(control["scn-c"])  # scn-c: no control group
    assert {t.x[0]: t.text[0] for t in closer} == {"scn": "60%", "scn-c": "90%"}
    diffs = {a.x: a.text for a in fig.layout.annotations if a.text.endswith(" pts")}
    assert diffs == {"scn": "+15 pts"}  # the difference over the pair, where a control exists
    assert "no control group" in fig.layout.title.subtitle.text and "scn-c" in fig.layout.title.subtitle.text
    gaps = [t for t in _bars(fig) if t.xaxis == "x3"]  # the scale-free gap change, not the raw one
    assert {t.x[0]: t.y[0] for t in gaps} == {"scn": 0.05, "scn-c": -0.1}
    assert "never relabels" in fig.layout.title.subtitle.text
    all_silent = plot.consistency_summary_figure({"base": None}, relabels_at_all=False, methods={"base": "baseline"})
    assert plot.figure_note(all_silent)


def _lag_table(closer, control, first=2) -> pd.DataFrame:
    lags = np.arange(len(closer))
    return pd.DataFrame({"pass": "train", "lag": lags, "trained_on_new": lags >= first, "events": 10,
                         "closer_to_new": closer, "control": 5, "control_closer": control, "matched_events": 9,
                         "closer_vs_control": np.asarray(closer) - np.asarray(control)})


def test_consistency_by_lag_draws_relabelled_control_and_difference():
    fig = plot.consistency_by_lag_figure({"scn": _lag_table([0.9, 0.6, 0.7], [0.7, 0.3, 0.3]), "base": None},
                                         relabels_at_all={"scn": True, "base": False}, methods={"base": "baseline"})
    by_name = {t.name: t for t in fig.data}
    assert list(by_name["scn"].y) == [0.9, 0.6, 0.7] and by_name["scn"].xaxis == "x"
    assert list(by_name["scn: control"].y) == [0.7, 0.3, 0.3] and by_name["scn: control"].line.dash == "dash"
    assert np.allclose(by_name["scn: difference"].y, [0.2, 0.3, 0.4]) and by_name["scn: difference"].xaxis == "x2"
    assert [s.x0 for s in fig.layout.shapes if s.type == "line" and s.line.dash == "dot"] == [1.5, 1.5]
    assert "from lag 2 on" in fig.layout.title.subtitle.text and "never relabels" in fig.layout.title.subtitle.text
    empty = plot.consistency_by_lag_figure({"scn": _lag_table([], [])})
    assert plot.figure_note(empty)


def test_gap_change_histogram_and_scatter():
    rng = np.random.default_rng(0)
    ev = pd.DataFrame({"epoch": [0, 0, 1, 3], "sample_id": [1, 2, 1, 5], "old": [0, 1, 2, 3], "new": [2, 3, 0, 1],
                       "d_old_before": rng.uniform(1, 2, 4), "d_new_before": rng.uniform(1, 2, 4),
                       "after_epoch": pd.array([2, 2, 3, pd.NA], dtype="Int64"),
                       "d_old_after": [1.0, 2.0, 1.5, np.nan], "d_new_after": [0.5, 2.5, 1.0, np.nan],
                       "closer_to_new": pd.array([True, False, True, pd.NA], dtype="boolean"),
                       "gap_change": [-0.5, 0.2, -0.1, np.nan], "undone": [True, False, False, False]})
    fig = plot.gap_change_histogram_figure({"scn": ev})
    (h,) = fig.data
    assert sorted(h.x) == [-0.5, -0.1, 0.2]  # NaN (no epoch trained on new) left out
    sc = plot.consistency_scatter_figure(ev, CLASSES)
    pts = [t for t in sc.data if isinstance(t, go.Scattergl)]
    assert sum(len(t.x) for t in pts) == 3


# ---------------------------------------------------------------- projection
def _proj(n=40, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    given = rng.integers(0, K, n)
    label = given.copy()
    label[:5] = (label[:5] + 1) % K
    return pd.DataFrame({"sample_id": np.arange(n) * 2, "x": rng.normal(size=n), "y": rng.normal(size=n),
                         "label": label, "given_label": given, "clean_label": np.full(n, -1)})


def test_projection_by_class_uses_webgl_and_class_colours():
    df = _proj()
    fig = plot.projection_figure(df, CLASSES, color="effect", run_name="scn")
    pts = [t for t in fig.data if t.x is not None and list(t.x) != [None]]
    assert all(isinstance(t, go.Scattergl) for t in pts)
    assert sum(len(t.x) for t in pts) == len(df)
    colours = plot.class_colors(CLASSES)
    for t in pts:
        assert t.marker.color == colours[t.name.split(" (")[0]]
    moved = sum(list(t.marker.symbol).count(4) for t in pts)  # 4: plotly's "x" symbol
    assert moved == 5  # crosses: label in effect != given
    assert all(set(t.marker.symbol) <= {0, 4} for t in pts)  # 0: circle
    assert plot.figure_note(plot.projection_figure(df, CLASSES, color="clean")) == \
        "clean labels are unknown for this data set"


def test_large_projection_hovers_the_sample_id_only(monkeypatch):
    from relabscope.plot import embedding_maps

    df = _proj()
    detailed = plot.projection_figure(df, CLASSES, color="effect")
    assert all(t.customdata.shape[1] == 4 for t in detailed.data if t.customdata is not None)
    monkeypatch.setattr(embedding_maps, "HOVER_DETAIL_POINTS", len(df) - 1)
    for color in ("effect", "sample_id"):
        fig = plot.projection_figure(df, CLASSES, color=color)
        drawn = [t for t in fig.data if t.customdata is not None]
        assert sorted(np.concatenate([t.customdata[:, 0] for t in drawn]).tolist()) == sorted(df["sample_id"])
        assert all(t.customdata.dtype.kind in "iuf" for t in drawn)  # numbers: sent as binary arrays
        assert "hover shows the sample id" in fig.layout.title.subtitle.text


def test_a_host_with_its_own_hover_card_gets_ids_alone_and_no_hover_note(monkeypatch):
    """The dashboard's map shows a card of its own: every point carries its sample id (what
    the card and the lasso read), plotly draws no label, and the subtitle says nothing
    about hovering, at any size."""
    from relabscope.plot import embedding_maps

    df = _proj()
    for limit in (len(df) + 1, len(df) - 1):  # below and above the detail limit
        monkeypatch.setattr(embedding_maps, "HOVER_DETAIL_POINTS", limit)
        for color in ("effect", "sample_id"):
            fig = plot.projection_figure(df, CLASSES, color=color, hover_labels=False, caveat="training pass")
            drawn = [t for t in fig.data if t.customdata is not None]
            assert sorted(np.concatenate([t.customdata[:, 0] for t in drawn]).tolist()) == sorted(df["sample_id"])
            # a plain list in the figure's JSON: Dash's events index it (a typed array they cannot)
            for t in drawn:
                sent = t.to_plotly_json()["customdata"]
                assert isinstance(sent, np.ndarray) and sent.dtype == object
                assert all(isinstance(v, int) for v in sent[:, 0])
            assert all(t.hoverinfo == "none" and t.hovertemplate is None for t in fig.data)
            assert "hover" not in fig.layout.title.subtitle.text and "training pass" in fig.layout.title.subtitle.text


def test_projection_by_number():
    df = _proj()
    values = pd.Series(np.arange(len(df), dtype=float)[::-1], index=df["sample_id"], name="flipflops")
    fig = plot.projection_figure(df, CLASSES, color="flipflops", values=values)
    t = fig.data[0]
    assert list(t.marker.color) == values.tolist() and t.marker.colorbar.title.text == "flipflops"


# ---------------------------------------------------------------- Grad-CAM
def test_gradcam_layout():
    n, h = 2, 8
    img = np.zeros((n, h, h, 3), np.uint8)
    fig = plot.gradcam_figure(img, img + 10, img + 20, sample_ids=[5, 9], given_labels=[3, 1],
                                   effect_labels=[6, 1], class_names=CLASSES,
                                   probabilities=np.full((n, K), 1 / K), run_name="scn")
    assert len(fig.data) == 3 * n and all(isinstance(t, go.Image) for t in fig.data)
    titles = [a.text for a in fig.layout.annotations]
    assert titles[:3] == ["sample 5", "given: Happiness (p=0.14)", "in effect: Neutral (p=0.14)"]
    assert titles[5].endswith("= given")
    assert int(np.asarray(fig.data[2].z).max()) == 20


# ---------------------------------------------------------------- dynamics
def test_data_map_marks_noisy_samples():
    dyn = pd.DataFrame({"sample_id": [0, 1, 2, 3], "confidence_given": [0.9, 0.1, 0.5, 0.8],
                        "variability_given": [0.1, 0.05, 0.3, 0.2]})
    noisy = pd.Series(pd.array([False, True, pd.NA, False], dtype="boolean"))
    fig = plot.data_map_figure(dyn, noisy=noisy)
    by = {t.name.split(" (")[0]: t for t in fig.data}
    assert list(by["noisy"].x if "noisy" in by else by["noisy (given ≠ clean)"].x) == [0.05]
    assert by["clean"].marker.color == _style.FAINT
    unknown = plot.data_map_figure(dyn)
    assert len(unknown.data) == 1 and "unknown" in unknown.layout.annotations[0].text


def test_noise_recovery_and_detection():
    df = pd.DataFrame({"epoch": [0, 1], "relabels": [5, 3], "relabel_precision": [0.4, 0.5],
                       "relabel_recall": [0.1, 0.2], "noisy_corrected": [0.1, 0.3], "clean_corrupted": [0.05, 0.06]})
    fig = plot.noise_recovery_figure(df, run_name="scn")
    names = [t.name for t in fig.data]
    assert "relabel events" in names and len(names) == 5
    # the lines overlay the bars (plotly draws an overlaying axis's traces on top): bars never hide them
    assert {t.yaxis for t in fig.data if t.type == "bar"} == {"y"} and {t.yaxis for t in fig.data if t.type == "scatter"} == {"y2"}
    assert fig.layout.yaxis2.overlaying == "y" and fig.layout.yaxis2.side == "left"
    assert plot.figure_note(plot.noise_recovery_figure(df, relabels_at_all=False, method="baseline"))
    det = pd.DataFrame({"score": ["aum_given", "flipflops"], "auroc": [0.8, np.nan], "direction": ["low", "high"],
                        "n": [10, 10]})
    dfig = plot.noise_detection_figure(det)
    assert dict(zip(dfig.data[0].y, dfig.data[0].text)) == {"aum_given": "0.800", "flipflops": "n/a"}


def test_probability_trace():
    probs = np.full((4, K), 1 / K)
    probs[:, 3] = np.linspace(0.2, 0.8, 4)
    fig = plot.probability_trace_figure(probs, CLASSES, given=3, labels=[3, 6, 6, 3], clean=1, sample_id=2)
    lines = {t.name: t for t in fig.data if t.mode == "lines"}
    assert lines["Happiness (given)"].line.width > lines["Anger"].line.width
    assert "Fear (clean)" in lines
    marks = next(t for t in fig.data if t.name == "label in effect")
    assert list(marks.y) == pytest.approx([probs[0, 3], probs[1, 6], probs[2, 6], probs[3, 3]])


def test_every_figure_uses_the_template():
    fig = plot.accuracy_curves_figure({"r": _metrics()})
    assert fig.layout.template.layout.font.family.startswith("Inter")


def test_a_run_before_its_first_relabel_says_so_and_counts_from_zero(tmp_path):
    from relabscope import open_run
    from relabscope.examples import live_example_run

    with live_example_run(tmp_path / "live", epochs_done=1) as path:
        run = open_run(path)
        assert len(run.relabel_events()) == 0  # the example relabels from its second epoch
        recovery = plot.noise_recovery(run)
        counts = recovery.layout.yaxis  # the relabel counts' axis (the fractions overlay it)
        assert counts.title.text == "relabel events" and list(counts.range) == [0, 1] and counts.dtick == 1
        summary = plot.consistency_summary(run)
        assert "no relabel event so far" in summary.layout.title.subtitle.text


def test_projection_names_only_filtered_classes_as_relabelled_away():
    df = _proj()
    df = df[df["label"].isin([0, 1])].copy()  # a map filtered to two classes
    df["given_label"] = (df["label"] + 1) % K  # every shown point came from another class
    shown = [0, 1]
    filtered = plot.projection_figure(df, CLASSES, classes=shown)
    assert filtered.layout.title.subtitle.text is None  # the other given labels were filtered out, not emptied
    missing = 2  # asked for, given to some shown points, in effect for none
    flagged = plot.projection_figure(df, CLASSES, classes=[*shown, missing])
    assert CLASSES[missing] in flagged.layout.title.subtitle.text
