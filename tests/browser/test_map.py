"""Page 4 in the browser: the embedding map draws a WebGL scatter; a lasso drawn with the
mouse lists the enclosed samples; clicking a point opens it in the sample inspector.

The map uses t-SNE (``method=tsne``): UMAP's first call compiles numba code for ~10 s on
this machine, which the browser suite cannot afford; the page code is the same."""

from __future__ import annotations

import time

import numpy as np

import pytest

from relabscope.dashboard import ids
from tests.browser.conftest import TIMINGS, until

GRAPH = f"#{ids.MP_GRAPH}"


def _points(board) -> list[dict]:
    """Every drawn point of the map: its sample id and its viewport coordinates."""
    return board.js(
        """
        var gd = document.querySelector(arguments[0] + ' .js-plotly-plot');
        gd.scrollIntoView({block: 'center'});
        var fl = gd._fullLayout, xa = fl.xaxis, ya = fl.yaxis;
        var r = gd.querySelector('.main-svg').getBoundingClientRect();
        var out = [];
        gd._fullData.forEach(function (t) {
            if (!t.customdata || !t.x) return;
            for (var i = 0; i < t.x.length; i++) {
                out.push({id: parseInt(t.customdata[i][0], 10),
                          px: r.left + xa._offset + xa.c2p(t.x[i]), py: r.top + ya._offset + ya.c2p(t.y[i])});
            }
        });
        return out;
        """, GRAPH)


def _plot_area(board) -> dict:
    return board.js(
        """
        var gd = document.querySelector(arguments[0] + ' .js-plotly-plot');
        var s = gd._fullLayout._size, r = gd.querySelector('.main-svg').getBoundingClientRect();
        return {left: r.left + s.l, top: r.top + s.t, right: r.left + s.l + s.w, bottom: r.top + s.t + s.h};
        """, GRAPH)


def _table_ids(board) -> list[int]:
    return [int(t) for t in board.texts(f"#{ids.MP_TABLE} td[data-dash-column='sample_id']")]


def test_map_webgl_lasso_selection_and_click_to_inspector(board, dash_app, shoot) -> None:
    from relabscope.dashboard import app as app_module

    if "map" not in app_module.PAGES:
        pytest.fail("the embedding map page is not registered in relabscope.dashboard.app.PAGES")
    run = dash_app.relabscope.registry.get("scn")
    epoch = run.embedding_epochs()[-1]

    seconds = board.open("/map?run=scn&method=tsne", wait=f"{GRAPH} .js-plotly-plot", timeout=60)
    # the t-SNE itself, not the PCA preview drawn while it is computed
    fig = board.wait_figure(GRAPH, timeout=60, predicate=lambda f: f["title"].startswith("t-SNE of the embeddings"))
    board.settle(60)
    TIMINGS.append(("embedding map load (t-SNE of 96 points)", seconds))
    n_train = int(run.train_mask.sum())
    assert sum(t["drawn"] for t in fig["traces"] if t["type"] == "scattergl") >= n_train
    assert len(_points(board)) == n_train  # one point (with its sample id) per training sample
    assert f"epoch {epoch}" in fig["title"]
    board.duo.wait_for_text_to_equal(
        f"#{ids.MP_STATUS}", f"{n_train:,} of {n_train:,} training samples; × marks a label in effect ≠ given")
    # WebGL: plotly's gl canvases exist, are sized, and hold a live context
    gl = board.js(
        """
        var gd = document.querySelector(arguments[0] + ' .js-plotly-plot');
        var cs = gd.querySelectorAll('canvas');
        return {n: cs.length, sized: Array.prototype.filter.call(cs, function (c) { return c.width > 0; }).length,
                regl: !!(gd._fullLayout._glcanvas && gd._fullLayout._glcanvas.data()[0].regl)};
        """, GRAPH)
    assert gl["n"] >= 1 and gl["sized"] >= 1 and gl["regl"], gl
    shoot("map")

    # lasso (the map's drag mode) around the left part of the cloud, drawn with the mouse
    points = _points(board)
    assert len(points) == n_train
    area = _plot_area(board)
    xs = sorted(p["px"] for p in points)
    k = min(15, len(xs) - 1)
    gaps = [(xs[i + 1] - xs[i], i) for i in range(max(3, k - 8), k + 1)]
    gap, i = max(gaps)
    assert gap > 1, "no gap between points to draw the lasso edge in"
    cut = (xs[i] + xs[i + 1]) / 2
    top, bottom, left = area["top"] + 3, area["bottom"] - 3, area["left"] + 3
    inside = sorted(p["id"] for p in points if p["px"] < cut and top < p["py"] < bottom)
    assert 0 < len(inside) < len(points)

    t0 = time.perf_counter()
    corners = [(left, top), (cut, top), (cut, bottom), (left, bottom), (left, top + 2)]
    board.drag_path(corners)
    board.duo.wait_for_contains_text(f"#{ids.MP_COUNT}", f"{len(inside):,} samples selected", timeout=15)
    until(lambda: _table_ids(board) == inside[:20], 10, "the selection table does not list the lassoed samples")
    TIMINGS.append(("lasso -> selection table", time.perf_counter() - t0))
    links = board.js(f"return Array.prototype.map.call(document.querySelectorAll('#{ids.MP_TABLE} a'),"
                     " function (a) { return a.getAttribute('href'); });")
    assert len(links) == min(len(inside), 20) and all("/sample?run=scn&sample=" in h for h in links)
    shoot("lasso")

    # click the most isolated point outside the lasso (a click inside the kept selection
    # grabs the selection outline instead): the inspector opens on that sample
    def isolation(pt):
        return min(((q["px"] - pt["px"]) ** 2 + (q["py"] - pt["py"]) ** 2) for q in points if q is not pt)
    margin = 8
    candidates = [pt for pt in points if cut + margin < pt["px"] < area["right"] - margin
                  and area["top"] + margin < pt["py"] < area["bottom"] - margin]
    target = max(candidates, key=isolation)
    points = _points(board)  # unchanged layout, but re-read after the selection restyled the traces
    target = next(pt for pt in points if pt["id"] == target["id"])
    t0 = time.perf_counter()
    board.js("""window.__clicks = [];
                document.querySelector(arguments[0] + ' .js-plotly-plot').on('plotly_click', function (e) {
                    window.__clicks.push(e.points.map(function (p) { return p.customdata && p.customdata[0]; }));
                });""", GRAPH)
    board.click_at(target["px"], target["py"])
    until(lambda: board.js("return window.location.pathname") == "/sample", 15,
          f"clicking sample {target['id']} did not open the inspector (plotly_click events: "
          f"{board.js('return window.__clicks')})")
    assert board.search() == {"run": "scn", "sample": str(target["id"])}
    board.duo.wait_for_text_to_equal(f"#{ids.PAGE} h2", f"Sample {target['id']} — scn")
    board.wait_figure(f"#{ids.SM_TIMELINE}")
    TIMINGS.append(("map point click -> sample inspector", time.perf_counter() - t0))
    board.settle()
    shoot("clicked-point")
    board.assert_no_errors()


def test_map_draws_a_pca_preview_at_once_then_the_map(board, dash_app, shoot, monkeypatch) -> None:
    """A t-SNE slowed by 8 s (the dashboard's server runs in this process): the PCA of the
    same points is drawn first, the page polls, and the t-SNE replaces it when ready."""
    from relabscope.analysis import projection

    layout = projection._layout

    def slow_layout(x, method, seed):
        time.sleep(8)
        return layout(x, method, seed)

    monkeypatch.setattr(projection, "_layout", slow_layout)
    run = dash_app.relabscope.registry.get("scn")
    classes = [0, 1]  # a map no other test computed (maps are cached next to the log)
    shown = int((run.train_mask & np.isin(run.labels()[-1], classes)).sum())

    t0 = time.perf_counter()
    board.open("/map?run=scn&method=tsne&classes=0,1", wait=f"{GRAPH} .js-plotly-plot", timeout=60)
    preview = board.wait_figure(GRAPH, timeout=30, predicate=lambda f: "while the t-SNE computes" in
                                f["title"].replace("<br>", " "))
    first_drawing = time.perf_counter() - t0
    assert preview["title"].startswith("PCA (epoch")
    assert sum(t["drawn"] for t in preview["traces"] if t["type"] == "scattergl") >= shown
    assert len(_points(board)) == shown
    assert "computing the t-SNE" in board.text(f"#{ids.MP_STATUS}")
    board.duo.wait_for_contains_text(f"#{ids.MP_STATUS}", "PCA preview", timeout=10)
    shoot("map-preview")

    final = board.wait_figure(GRAPH, timeout=120, predicate=lambda f: f["title"].startswith("t-SNE of the embeddings"))
    ready = time.perf_counter() - t0
    assert ready >= 8  # the slowed t-SNE, not the preview
    assert len(_points(board)) == shown and sum(t["drawn"] for t in final["traces"] if t["type"] == "scattergl") >= shown
    board.duo.wait_for_text_to_equal(
        f"#{ids.MP_STATUS}", f"{shown:,} of {int(run.train_mask.sum()):,} training samples; × marks a label in effect ≠ given")
    TIMINGS.append(("embedding map: PCA preview drawn (t-SNE slowed to 8 s)", first_drawing))
    TIMINGS.append(("embedding map: the t-SNE replaces the preview", ready))
    board.settle()
    shoot("map-after-preview")
    board.assert_no_errors()
