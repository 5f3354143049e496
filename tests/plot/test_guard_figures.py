"""The relabel-guard views on hand-made tables: the vetoes figure (bars per guard stacked
beside the granted relabels, hover naming the classes, totals, runs without guards) and
the relabel floor in the class-sizes figure (the guard's own rule, per class)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
import torch

from relabscope import plot
from relabscope.plot.guards import GUARD_COLORS, NO_GUARD
from relabscope.training.guards import floor_sizes

CLASSES = ["anger", "sadness", "neutral"]


def _vetoes(counts: dict[str, list[list[int]]]) -> pd.DataFrame:
    """``Run.vetoes()`` from guard -> (epochs x classes) counts."""
    rows = [{"epoch": e, "guard": g, "class_id": k, "class_name": CLASSES[k], "vetoed": v}
            for g, per_epoch in counts.items() for e, per_class in enumerate(per_epoch) for k, v in enumerate(per_class)]
    return pd.DataFrame(rows, columns=["epoch", "guard", "class_id", "class_name", "vetoed"])


def _metrics(relabels: list[int]) -> pd.DataFrame:
    return pd.DataFrame({"epoch": np.arange(len(relabels)), "relabels": relabels})


AGREE = [[0, 0, 0], [3, 1, 0], [0, 2, 5]]
FLOOR = [[0, 0, 0], [4, 0, 0], [0, 0, 1]]
GUARDED = _vetoes({"agree": AGREE, "floor": FLOOR})


def _bars(fig: go.Figure, name: str) -> list[go.Bar]:
    return [t for t in fig.data if isinstance(t, go.Bar) and t.name == name]


def test_vetoes_stack_per_guard_beside_the_granted_relabels() -> None:
    fig = plot.vetoes_figure({"scn": GUARDED}, {"scn": _metrics([0, 10, 6])}, guards={"scn": ["agree", "floor"]})
    granted, = _bars(fig, "relabel events (granted)")
    agree, = _bars(fig, "vetoed by agree")
    floor, = _bars(fig, "vetoed by floor")
    assert list(granted.y) == [0, 10, 6]
    assert list(agree.y) == [0, 4, 7] and list(floor.y) == [0, 4, 1]  # per epoch, summed over classes
    assert list(agree.base) == [0, 0, 0] and list(floor.base) == list(agree.y)  # floor stacked on agree
    assert agree.offsetgroup == floor.offsetgroup != granted.offsetgroup  # beside the granted bars
    assert agree.marker.color == GUARD_COLORS["agree"] != floor.marker.color
    # hovering names the classes the refused relabels would have left, most first
    assert list(agree.customdata) == ["—", "anger 3, sadness 1", "neutral 5, sadness 2"]
    assert fig.layout.meta["subtitle"] == "16 relabels vetoed (agree 11, floor 5) · 16 went through"
    assert "vetoes" in fig.layout.title.text


def test_vetoes_of_several_runs_panel_the_guarded_and_name_the_rest() -> None:
    tables = {"a": GUARDED, "b": _vetoes({"hysteresis": [[0, 0, 0]] * 3}), "c": _vetoes({})}
    metrics = {n: _metrics([1, 2, 3]) for n in tables}
    fig = plot.vetoes_figure(tables, metrics, guards={"a": ["agree", "floor"], "b": ["hysteresis"], "c": []})
    panels = {t.xaxis for t in fig.data}
    assert panels == {"x", "x2"}  # a and b; c had no guard
    # each series once in the legend, however many panels draw it
    legend = [t.name for t in fig.data if t.showlegend is not False]
    assert sorted(legend) == sorted(["relabel events (granted)", "vetoed by agree", "vetoed by floor",
                                     "vetoed by hysteresis"])
    subtitle = fig.layout.meta["subtitle"]
    assert "b: 0 relabels vetoed (hysteresis 0)" in subtitle  # a guard that refused nothing still shows
    assert f"c: {NO_GUARD}" in subtitle


def test_vetoes_of_runs_without_guards_is_a_note() -> None:
    fig = plot.vetoes_figure({"scn": _vetoes({})}, {"scn": _metrics([3])}, guards={"scn": []})
    assert plot.figure_note(fig) == NO_GUARD and not fig.data


@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.3, 1 / 3, 0.5, 0.7, 0.9, 1.0])
def test_floor_counts_is_the_guards_rule(fraction: float) -> None:
    given = np.arange(0, 200)
    assert plot.floor_counts(given, fraction).tolist() == floor_sizes(torch.from_numpy(given), fraction).tolist()


def _counts(given: list[int], counts: list[list[int]]) -> pd.DataFrame:
    rows = [{"epoch": e, "class_id": k, "class_name": CLASSES[k], "count": c, "given": given[k],
             "clean": np.nan, "fraction_of_given": c / given[k]}
            for e, per_class in enumerate(counts) for k, c in enumerate(per_class)]
    return pd.DataFrame(rows)


def _floor_lines(fig: go.Figure) -> list[go.Scatter]:
    return [t for t in fig.data if t.legendgroup == "relabel floor"]


def test_class_sizes_draw_each_class_floor_when_a_floor_was_set() -> None:
    given = [15, 16, 7]
    table = _counts(given, [given, [8, 9, 10], [8, 8, 12]])
    fig = plot.class_counts_figure({"guarded": table, "free": table}, floors={"guarded": 0.5, "free": 0.0})
    lines = _floor_lines(fig)
    assert {t.xaxis for t in lines} == {"x"}  # only the guarded run's panel
    shares = {t.hovertemplate.split(":")[0]: t.y[0] for t in lines}
    # ceil(0.5 x 15) = 8, ceil(0.5 x 16) = 8, ceil(0.5 x 7) = 4: as shares of the given sizes
    assert shares == pytest.approx({"anger": 8 / 15, "sadness": 8 / 16, "neutral": 4 / 7})
    assert all(list(t.x) == [0, 2] for t in lines)  # across the panel's epochs
    assert [t.name for t in lines if t.showlegend] == ["relabel floor (F = 0.5)"]  # labelled, once
    assert "relabel floor" in fig.layout.meta["subtitle"]
    # drawn over the classes' lines (a class held at its floor runs along it), last in the legend
    last_class = max(i for i, t in enumerate(fig.data) if t.name in CLASSES and t.xaxis == "x")
    assert min(i for i, t in enumerate(fig.data) if t.legendgroup == "relabel floor") > last_class
    assert all(t.legendrank > 1000 for t in lines)


def test_class_sizes_without_a_floor_are_unchanged() -> None:
    table = _counts([4, 4, 4], [[4, 4, 4], [2, 6, 4]])
    for floors in (None, {"scn": 0.0}):
        fig = plot.class_counts_figure({"scn": table}, floors=floors)
        assert not _floor_lines(fig) and "floor" not in fig.layout.meta["subtitle"]
