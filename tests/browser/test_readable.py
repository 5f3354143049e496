"""Every page, at the narrowest and the widest window relabscope promises (1,280 and 1,920
px): no text of any figure overlaps another, runs out of its figure or plot area, or is
too small to read (titles, subplot titles and other annotations, axis titles and the tick
labels of every subplot, legends, colour bars, bar, heatmap-cell and Sankey-node labels),
each figure yields the texts it asks for, and each page draws at least one figure (see
``tests.browser.overlap``); a screenshot of each page is saved. Pages are shown for the
tiny trained runs, for a pair of runs whose relabelling emptied a class (warning cards,
class sizes, label flow) and for a run still training after one epoch."""

from __future__ import annotations

import shutil
from collections import Counter

import pytest

from relabscope.dashboard import ids
from tests.browser.conftest import TEXT_COUNTS, until
from tests.browser.overlap import measure_text

WIDTHS = (1280, 1920)
#: page -> (URL, a CSS selector present once the page's main figure is drawn)
PAGES = {
    "overview": ("/?run=scn", f"#{ids.ov_figure('accuracy')} .js-plotly-plot"),
    "flipflops": ("/flipflops?run=scn", f"#{ids.FF_TABLE} td"),
    "sample": ("/sample?run=scn&sample=SAMPLE", f"#{ids.SM_DISTANCES} .js-plotly-plot"),
    "map": ("/map?run=scn&method=tsne", f"#{ids.MP_GRAPH} .js-plotly-plot"),
    "compactness": ("/compactness?run=scn&against=scn-c", f"#{ids.CM_FIGURE} .js-plotly-plot"),
    "compare": ("/compare?run=scn&against=scn-c", f"#{ids.CP_SUMMARY_TABLE} td"),
    "overview-emptied": ("/?run=emptied", f"#{ids.ov_figure('accuracy')} .js-plotly-plot"),
    "compare-emptied": ("/compare?run=emptied&against=emptied-scn", f"#{ids.CP_SUMMARY_TABLE} td"),
    "overview-training": ("/?run=live", f"#{ids.ov_figure('accuracy')} .js-plotly-plot"),
}


@pytest.fixture(scope="module")
def readable_root(served, emptied_pair, tmp_path_factory):
    """The served tiny runs, the emptied pair, and ``live``: one epoch committed by a
    writer that stays open (the dashboard sees a run in training)."""
    from relabscope import open_run
    from relabscope.examples import live_example_run

    root = tmp_path_factory.mktemp("readable")
    for name in ("scn", "scn-c"):
        shutil.copytree(served / name, root / name)
        with open_run(root / name) as run:
            # the synthetic images are drawn (and cached) here, not in a dashboard thread
            # that the end of a test may stop halfway
            run.images([0])
    for path in emptied_pair:
        shutil.copytree(path, root / path.name)
    with live_example_run(root / "live", epochs_done=1):
        yield root


@pytest.fixture
def readable_board(dash_duo, readable_root):
    from relabscope.dashboard import create_app
    from tests.browser.conftest import Board, free_port

    app = create_app([readable_root], refresh_seconds=0)
    dash_duo.server(app, port=free_port(), debug=True, use_reloader=False, dev_tools_hot_reload=False,
                    dev_tools_ui=True, dev_tools_props_check=True)
    return Board(dash_duo), app


def _all_figures_drawn(board) -> bool:
    """Every graph on the page has drawn (plotly's ``_fullLayout``) and none still shows
    the loading spinner."""
    return board.js("""
        var graphs = document.querySelectorAll('#%s .dash-graph');
        if (!graphs.length) return false;
        for (var i = 0; i < graphs.length; i++) {
            var gd = graphs[i].querySelector('.js-plotly-plot');
            if (!gd || !gd._fullLayout) return false;
        }
        return document.querySelectorAll('#%s ._dash-loading-callback').length === 0;
    """ % (ids.PAGE, ids.PAGE))


@pytest.mark.parametrize("width", WIDTHS)
def test_no_figure_text_overlaps_on_any_page(readable_board, width, shoot) -> None:
    board, app = readable_board
    run = app.relabscope.registry.get("scn")
    sample = int(run.flipflops().sort_values("flipflops").iloc[-1]["sample_id"])
    board.driver.set_window_size(width, 2600)
    problems, measured, counts = [], [], Counter[str]()
    for name, (path, ready) in PAGES.items():
        board.open(path.replace("SAMPLE", str(sample)), wait=ready, timeout=90)
        until(lambda: _all_figures_drawn(board), 90, f"{name}: figures not drawn")
        board.settle()
        shoot(f"{name}-{width}")
        check = measure_text(board.driver, f"#{ids.PAGE}")
        problems += [f"{name}: {p}" for p in check.problems]
        measured += [f"{name}: {fig.summary()}" for fig in check.figures]
        counts.update(check.counts)
        assert board.count(f"#{ids.PAGE} .error-card") == 0, f"{name}: error card"
    TEXT_COUNTS.append((f"dashboard pages at {width} px", len(measured), dict(counts)))
    assert not problems, f"unreadable figure text at {width} px:\n" + "\n".join(problems) + \
        "\ntexts measured:\n" + "\n".join(measured)
