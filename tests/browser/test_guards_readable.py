"""The relabel guards' views in the browser, at the narrowest and the widest window
relabscope promises (1,280 and 1,920 px): the overview of a guarded run (the vetoes beside
the relabel events, the floor in the class sizes, the vetoed-relabels card) with no figure
text that overlaps, runs out of its figure or is too small (``tests.browser.overlap``),
and no error. The tiny guarded run of ``tests.guarded`` is trained once here (the compare
page draws the same vetoes figure; its callbacks are checked in tests/dashboard)."""

from __future__ import annotations

import pytest

from relabscope.dashboard import ids
from tests.browser.conftest import TEXT_COUNTS, Board, free_port, until
from tests.browser.overlap import measure_text
from tests.browser.test_readable import _all_figures_drawn
from tests.conftest import scratch
from tests.guarded import GUARD_NAMES, GUARDED, train_guarded

OVERVIEW = f"/?run={GUARDED}"


@pytest.fixture(scope="module")
def guard_root(tmp_path_factory, _isolated_cache):
    with scratch(tmp_path_factory, "guard-browser") as root:
        train_guarded(root)
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
def test_guarded_overview_is_readable(guard_board, width, shoot) -> None:
    board = guard_board
    board.driver.set_window_size(width, 2600)
    board.open(OVERVIEW, wait=f"#{ids.ov_figure('relabels')} .js-plotly-plot", timeout=90)
    until(lambda: _all_figures_drawn(board), 90, "figures not drawn")
    board.settle()
    shoot(f"overview-guarded-{width}")
    check = measure_text(board.driver, f"#{ids.PAGE}")
    assert board.count(f"#{ids.PAGE} .error-card") == 0
    # what a reader sees: the card, every guard in the vetoes' legend, the floor in the class sizes'
    assert "relabels vetoed (" in board.text(f"#{ids.OV_NUMBERS}")
    legend = _svg_text(board, f"#{ids.ov_figure('relabels')} .legend text")
    assert all(f"vetoed by {g}" in legend for g in GUARD_NAMES), legend
    assert "relabel floor" in _svg_text(board, f"#{ids.ov_figure('classes')} .legend text")
    board.assert_no_errors()
    TEXT_COUNTS.append((f"guarded overview at {width} px", len(check.figures), dict(check.counts)))
    assert not check.problems, f"unreadable figure text at {width} px:\n" + "\n".join(check.problems) + \
        "\ntexts measured:\n" + "\n".join(fig.summary() for fig in check.figures)
