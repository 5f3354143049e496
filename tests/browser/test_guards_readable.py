"""The relabel guards' views in the browser, at the narrowest and the widest window
relabscope promises (1,280 and 1,920 px): the overview of a guarded run (the vetoes beside
the relabel events, the floor in the class sizes, the vetoed-relabels card) and the compare
page of it against an unguarded run, with no figure text that overlaps, runs out of its
figure or is too small (``tests.browser.overlap``), and no error. The tiny pair of
``tests.guarded`` is trained once here."""

from __future__ import annotations

from collections import Counter

import pytest

from relabscope.dashboard import ids
from tests.browser.conftest import TEXT_COUNTS, Board, free_port, until
from tests.browser.overlap import measure_text
from tests.browser.test_readable import _all_figures_drawn
from tests.conftest import scratch
from tests.guarded import GUARD_NAMES, GUARDED, OFF, train_pair

PAGES = {
    "overview-guarded": (f"/?run={GUARDED}", f"#{ids.ov_figure('relabels')} .js-plotly-plot"),
    "compare-guarded": (f"/compare?run={OFF}&against={GUARDED}", f"#{ids.cp_figure('vetoes')} .js-plotly-plot"),
}


@pytest.fixture(scope="module")
def guard_root(tmp_path_factory, _isolated_cache):
    with scratch(tmp_path_factory, "guard-browser") as root:
        train_pair(root)
        yield root


@pytest.fixture
def guard_board(dash_duo, guard_root) -> Board:
    from relabscope.dashboard import create_app

    app = create_app([guard_root], refresh_seconds=0)
    dash_duo.server(app, port=free_port(), debug=True, use_reloader=False, dev_tools_hot_reload=False,
                    dev_tools_ui=True, dev_tools_props_check=True)
    return Board(dash_duo)


def _svg_text(board: Board, selector: str) -> str:
    """The text of the SVG elements at ``selector`` (SVG has no innerText)."""
    return board.js("return Array.prototype.map.call(document.querySelectorAll(arguments[0]),"
                    " function (e) { return e.textContent; }).join(' ');", selector)


@pytest.mark.parametrize("width", (1280, 1920))
def test_guard_views_are_readable(guard_board, width, shoot) -> None:
    board = guard_board
    board.driver.set_window_size(width, 2600)
    problems, measured, counts = [], [], Counter[str]()
    for name, (path, ready) in PAGES.items():
        board.open(path, wait=ready, timeout=90)
        until(lambda: _all_figures_drawn(board), 90, f"{name}: figures not drawn")
        board.settle()
        shoot(f"{name}-{width}")
        check = measure_text(board.driver, f"#{ids.PAGE}")
        problems += [f"{name}: {p}" for p in check.problems]
        measured += [f"{name}: {fig.summary()}" for fig in check.figures]
        counts.update(check.counts)
        assert board.count(f"#{ids.PAGE} .error-card") == 0, f"{name}: error card"
        if name == "overview-guarded":  # what a reader sees: the card, every guard, the floor
            assert "relabels vetoed (" in board.text(f"#{ids.OV_NUMBERS}")
            legend = _svg_text(board, f"#{ids.ov_figure('relabels')} .legend text")
            assert all(f"vetoed by {g}" in legend for g in GUARD_NAMES), legend
            assert "relabel floor" in _svg_text(board, f"#{ids.ov_figure('classes')} .legend text")
    board.assert_no_errors()
    TEXT_COUNTS.append((f"guard views at {width} px", len(measured), dict(counts)))
    assert not problems, f"unreadable figure text at {width} px:\n" + "\n".join(problems) + \
        "\ntexts measured:\n" + "\n".join(measured)
