"""Positive controls for the readability check (``tests.browser.overlap``): figures made
unreadable (tick labels of two subplots, heatmap cells, Sankey nodes or annotations that
collide; heatmap labels shrunk to nothing; a text past the figure's edge or clipped by
its plot area) fail it, each with the problem it was made to have; a figure with every
kind of text the check knows passes it, with the texts of each kind counted; and a
selector that matches nothing (or, for tick labels, only the first subplot's, as the
check once did) fails it through the minimum counts instead of passing silently.

Every figure is drawn once, on one page (plotly.js from the installed plotly package, read
from disk: nothing is downloaded), in a browser shared by the module's tests.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import pytest
from plotly.offline import get_plotlyjs
from plotly.subplots import make_subplots

from tests.browser.conftest import until
from tests.browser.overlap import KINDS, NOUNS, TextCheck, measure_text


# ---------------------------------------------------------------------- figures
def every_kind() -> go.Figure:
    """Clean: every kind of text the check knows, nothing overlapping. The bars' category
    labels are turned 45 degrees, close enough that their upright bounding boxes would
    overlap (the check compares the turned rectangles)."""
    fig = make_subplots(rows=2, cols=2, specs=[[{}, {}], [{}, {"type": "domain"}]],
                        subplot_titles=("Points", "Bars", "Cells", "Flow"), horizontal_spacing=0.18,
                        vertical_spacing=0.3)
    fig.add_trace(go.Scatter(x=[1, 2, 3], y=[1, 3, 2], mode="markers+text", text=["low", "high", "mid"],
                             textposition=["middle right", "middle right", "middle left"], name="points"),
                  row=1, col=1)
    fig.add_trace(go.Bar(x=["category one", "category two", "category three", "category four"], y=[3, 4, 2, 5],
                         text=["3", "4", "2", "5"], textposition="inside", name="bars"), row=1, col=2)
    fig.add_trace(go.Heatmap(z=[[1, 2], [3, 4]], x=["a", "b"], y=["c", "d"], texttemplate="%{z}",
                             colorbar=dict(title=dict(text="z"), x=0.43, len=0.35, y=0.17, thickness=10)),
                  row=2, col=1)
    fig.add_trace(go.Sankey(node=dict(label=["source", "kept", "moved"]),
                            link=dict(source=[0, 0], target=[1, 2], value=[3, 1])), row=2, col=2)
    fig.update_xaxes(tickangle=-45, row=1, col=2)
    fig.update_xaxes(title_text="x", row=1, col=1)
    fig.update_yaxes(title_text="y", row=1, col=1)
    fig.update_layout(title="Every kind of text", width=800, height=720, showlegend=True,
                      legend=dict(title=dict(text="traces"), orientation="h", x=0, y=-0.08, yanchor="top"))
    return fig


def colliding_subplot_ticks() -> go.Figure:
    """Three stacked subplots without space between them; the third writes its x tick
    labels inside its top edge, just where the second's hang below its bottom edge: x2
    and x3 tick labels collide (the first subplot hides its own, so no x tick label is
    involved)."""
    fig = make_subplots(rows=3, cols=1, vertical_spacing=0)
    for row in (1, 2, 3):
        fig.add_trace(go.Scatter(x=[0, 10], y=[0, 1], showlegend=False), row=row, col=1)
    fig.update_xaxes(showticklabels=False, row=1, col=1)
    fig.update_xaxes(side="top", ticklabelposition="inside", row=3, col=1)
    fig.update_layout(title="Colliding subplot ticks", width=600, height=600)
    return fig


def crowded_heatmap(size: float | None = 12) -> go.Figure:
    """Long cell labels in 12 x 12 cells of about 25 px, written ``size`` px high (None:
    plotly.js's default "auto", which shrinks them to fit)."""
    n = 12
    fig = go.Figure(go.Heatmap(z=[[i * n + j for j in range(n)] for i in range(n)],
                               text=[[f"row {i} column {j}" for j in range(n)] for i in range(n)],
                               texttemplate="%{text}", textfont=dict(size=size), showscale=False))
    fig.update_layout(title="Crowded heatmap", width=420, height=420)
    return fig


def crowded_sankey() -> go.Figure:
    """One source flowing into 24 targets, 8 px apart, labelled in 12 px type."""
    targets = 24
    fig = go.Figure(go.Sankey(node=dict(label=["source"] + [f"target number {i}" for i in range(targets)], pad=1),
                              link=dict(source=[0] * targets, target=list(range(1, targets + 1)),
                                        value=[1] * targets)))
    fig.update_layout(title="Crowded Sankey", width=500, height=320)
    return fig


def stacked_annotations() -> go.Figure:
    fig = go.Figure(go.Scatter(x=[0, 1], y=[0, 1]))
    for text, dy in (("first note", 0.0), ("second note", 0.01)):
        fig.add_annotation(text=text, x=0.5, y=0.5 + dy, xref="paper", yref="paper", showarrow=False)
    fig.update_layout(title="Stacked annotations", width=500, height=400)
    return fig


def label_past_the_plot_area() -> go.Figure:
    """A point's label written to the right of the last point: the plot area clips it."""
    fig = go.Figure(go.Scatter(x=[1, 2, 3], y=[1, 3, 2], mode="markers+text", text=["low", "high", "clipped label"],
                               textposition="middle right"))
    fig.update_layout(title="Past the plot area", width=500, height=400)
    return fig


def annotation_off_the_edge() -> go.Figure:
    fig = go.Figure(go.Scatter(x=[0, 1], y=[0, 1]))
    fig.add_annotation(text="this note runs off the right edge", x=1.05, y=0.5, xref="paper", yref="paper",
                       xanchor="left", showarrow=False)
    fig.update_layout(title="Off the edge", width=500, height=400)
    return fig


#: figure made unreadable -> (how it is drawn, a pattern one of its problems must match)
UNREADABLE: dict[str, tuple[Callable[[], go.Figure], str]] = {
    "subplot-ticks": (colliding_subplot_ticks, r'x2 tick "[^"]+" overlaps x3 tick|x3 tick "[^"]+" overlaps x2 tick'),
    "heatmap-cells": (crowded_heatmap, r'heatmap "row \d+ column \d+" overlaps heatmap "row \d+ column \d+"'),
    "heatmap-cells-shrunk": (lambda: crowded_heatmap(size=None),
                             r'heatmap "row \d+ column \d+" is drawn in a [0-9.]+ px font, under the legible \d+ px'),
    "sankey-nodes": (crowded_sankey, r'sankey "target number \d+" overlaps sankey "target number \d+"'),
    "annotations": (stacked_annotations, r'annotation "first note" overlaps annotation "second note"'),
    "cut-off": (annotation_off_the_edge, r'annotation "this note runs off the right edge" runs out of the figure'),
    "clipped": (label_past_the_plot_area, r'point "clipped label" runs out of the plot area of subplot xy'),
}
CLEAN = "every-kind"
FIGURES: dict[str, Callable[[], go.Figure]] = {CLEAN: every_kind, **{k: make for k, (make, _) in UNREADABLE.items()}}


# ---------------------------------------------------------------------- the page
@pytest.fixture(scope="module")
def driver(_browser_env, tmp_path_factory) -> Iterator[Any]:
    """A browser showing every figure of ``FIGURES``, each in a ``<div id=name>``."""
    from selenium import webdriver

    from tests.browser.conftest import pytest_setup_options

    folder: Path = tmp_path_factory.mktemp("overlap-controls")
    (folder / "plotly.min.js").write_text(get_plotlyjs(), encoding="utf-8")
    figures = "\n".join(make().to_html(full_html=False, include_plotlyjs=False, div_id=name)
                        for name, make in FIGURES.items())
    page = folder / "controls.html"
    page.write_text(f'<!DOCTYPE html><html><head><meta charset="utf-8"><script src="plotly.min.js"></script>'
                    f"</head><body>{figures}</body></html>", encoding="utf-8")
    browser = webdriver.Chrome(options=pytest_setup_options())
    try:
        browser.get(page.as_uri())
        until(lambda: browser.execute_script(
            "var gds = document.querySelectorAll('.js-plotly-plot');"
            "return gds.length === arguments[0] && Array.prototype.every.call(gds, function (gd) {"
            " return !!gd._fullLayout; });", len(FIGURES)), 30, "the control figures were not drawn")
        yield browser
    finally:
        browser.quit()


def measure(driver: Any, name: str, **kwargs: Any) -> TextCheck:
    return measure_text(driver, f"#{name}", **kwargs)


# ---------------------------------------------------------------------- the clean figure
def test_clean_figure_passes_and_counts_every_kind_of_text(driver) -> None:
    check = measure(driver, CLEAN)
    assert not check.problems, check.report()
    [fig] = check.figures
    assert fig.title == "Every kind of text"
    missing = [kind for kind in KINDS if not fig.counts.get(kind)]
    assert not missing, f"the clean figure yields no {', '.join(NOUNS[k] for k in missing)}:\n{check.report()}"
    assert "other" not in fig.counts, f"texts no selector of KINDS matches:\n{check.report()}"
    # one per heatmap cell, Sankey node, bar, labelled point; four subplot titles, a plot
    # title, two axis titles; two legend entries and the legend's title
    exact = {"heatmap": 4, "sankey": 3, "bar": 4, "point": 3, "annotation": 4, "title": 3, "legend": 3}
    assert {k: fig.counts.get(k) for k in exact} == exact, check.report()
    ticks = {m.axis: m.found for m in fig.minimums if m.kind == "tick"}
    assert set(ticks) == {"x", "y", "x2", "y2", "x3", "y3"}, f"tick minimums for axes {set(ticks)}"
    assert ticks["x2"] == 4 and ticks["x3"] == ticks["y3"] == 2, ticks  # the bars' and the cells' categories
    assert all(m.met for m in fig.minimums), check.report()


# ---------------------------------------------------------------------- unreadable figures
@pytest.mark.parametrize("name", list(UNREADABLE))
def test_figure_made_unreadable_fails(driver, name: str) -> None:
    check = measure(driver, name)
    pattern = UNREADABLE[name][1]
    assert check.problems, f"{name}: the check passed a figure made to fail:\n{check.report()}"
    assert any(re.search(pattern, p) for p in check.problems), \
        f"{name}: no problem matches {pattern!r}:\n{check.report()}"
    assert all(p.startswith(f"{name} (") for p in check.problems), check.report()  # named after the figure


# ---------------------------------------------------------------------- minimum counts
@pytest.mark.parametrize("kind", list(KINDS))
def test_a_selector_that_matches_nothing_fails_the_minimum(driver, kind: str) -> None:
    broken = {**KINDS, kind: "text.no-such-plotly-class"}
    check = measure(driver, CLEAN, kinds=broken)
    expected = f"0 {NOUNS[kind]} measured"
    assert any(expected in p and "text.no-such-plotly-class" in p for p in check.problems), \
        f"with {kind} texts unselected, no problem says {expected!r}:\n{check.report()}"


def test_first_subplot_tick_selector_fails_on_the_other_subplots(driver) -> None:
    """The selectors the check once used for tick labels (``.xtick text``, ``.ytick text``)
    see only the first subplot's: every other axis now fails its minimum."""
    check = measure(driver, CLEAN, kinds={**KINDS, "tick": ".xtick > text, .ytick > text"})
    unmet = sorted(m.axis or "" for fig in check.figures for m in fig.minimums if m.kind == "tick" and not m.met)
    assert unmet == ["x2", "x3", "y2", "y3"], check.report()
    assert any("0 tick labels measured on axis x3, expected at least 1 (axis x3 is visible and shows tick labels)"
               in p for p in check.problems), check.report()


def test_a_root_without_figures_fails(driver) -> None:
    check = measure_text(driver, "#no-such-figure")
    assert check.problems == ["0 plotly figures under #no-such-figure, expected at least 1"]
