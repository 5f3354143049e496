"""The embedding map's images in the browser: hovering a point shows a card with that
sample's image (decoded: naturalWidth > 0) beside the point, inside the window, on the
side with room; a lasso fills a grid of loaded thumbnails (the first ``GRID_CAP``, in the
order ``grid_ids`` gives) whose tiles open the inspector; clearing the selection clears the grid.
The figure texts stay readable (``tests.browser.overlap``) and the grid's tiles do not
overlap one another.

The map is the PCA (drawn at once): how it is computed is the other map tests' business."""

from __future__ import annotations

import time

from relabscope.dashboard import embedding_map as mppage
from relabscope.dashboard import ids
from tests.browser.conftest import MOVE_MS, TIMINGS, until
from tests.browser.overlap import measure_text
from tests.browser.test_map import GRAPH, _plot_area, _points

GRID = f"#{ids.MP_GRID}"


def _hover_at(board, x: float, y: float) -> None:
    from selenium.webdriver.common.actions.action_builder import ActionBuilder

    actions = ActionBuilder(board.driver, duration=MOVE_MS)
    actions.pointer_action.move_to_location(int(round(x)), int(round(y)))
    actions.pointer_action.pause(0.2)
    actions.perform()


def _card(board) -> dict | None:
    """The hover card as drawn (the tooltip's content box): its box (viewport px), text,
    image, which side of the point it opened on, whether any of its content runs out of
    it, and the window's size; None while it is hidden."""
    return board.js(
        """
        var card = document.getElementById(arguments[0]);
        var r = card && card.getBoundingClientRect();
        if (!card || !r.width || getComputedStyle(card).visibility !== 'visible') return null;
        var img = card.querySelector('img');
        var anchor = card.closest('.dcc-tooltip-bounding-box').querySelector('.hover');
        var clipped = Array.prototype.some.call(card.querySelectorAll('*'), function (e) {
            var c = e.getBoundingClientRect();
            return c.left < r.left - 1 || c.right > r.right + 1 || c.top < r.top - 1 || c.bottom > r.bottom + 1;
        });
        return {left: r.left, right: r.right, top: r.top, bottom: r.bottom, text: card.innerText,
                side: anchor ? anchor.className : '', src: img && img.getAttribute('src'),
                width: img && img.complete ? img.naturalWidth : 0, clipped: clipped,
                vw: window.innerWidth, vh: window.innerHeight};
        """, ids.MP_TOOLTIP)


def _hover_shows(board, point: dict, timeout: float = 30) -> dict:
    """Hover ``point`` (from ``_points``); the card once it shows that sample's decoded image."""
    board.js("""window.__hovered = [];
        document.querySelector(arguments[0] + ' .js-plotly-plot').on('plotly_hover', function (e) {
            window.__hovered.push(e.points.map(function (p) { return [p.customdata[0], !!p.bbox]; })); });""", GRAPH)
    _hover_at(board, point["px"], point["py"])
    card, end = None, time.monotonic() + timeout
    while time.monotonic() < end:
        card = _card(board)
        if card and f"sample {point['id']}\n" in card["text"] + "\n" and card["width"] > 0:
            return card
        time.sleep(0.1)
    raise AssertionError(f"no hover card with the image of sample {point['id']} after {timeout:.0f} s; the card: "
                         f"{card}; plotly_hover events (sample id, bbox): {board.js('return window.__hovered')}")


def _settled_points(board, timeout: float = 15) -> list[dict]:
    """``_points`` once two readings half a second apart agree (plotly may still be fitting
    the graph to its cell after the last callback)."""
    readings = [_points(board)]

    def settled():
        time.sleep(0.5)
        readings.append(_points(board))
        return readings[-1] if readings[-1] == readings[-2] else None
    return until(settled, timeout, "the map's points keep moving")


def test_hover_card_and_lasso_grid_show_loaded_images(board, dash_app, shoot) -> None:
    ctx = dash_app.relabscope
    run = ctx.registry.get("scn")
    epoch = run.embedding_epochs()[-1]
    board.driver.set_window_size(1500, 1100)
    board.open("/map?run=scn&method=pca", wait=f"{GRAPH} .js-plotly-plot", timeout=60)
    board.wait_figure(GRAPH, timeout=60, predicate=lambda f: f["title"].startswith("PCA of the embeddings"))
    board.settle()
    points = _settled_points(board)
    area = _plot_area(board)
    middle = board.js("var r = document.querySelector(arguments[0]).getBoundingClientRect();"
                      " return r.left + r.width / 2;", GRAPH)

    def isolation(pt):  # a point with a close neighbour may hand the hover to it
        return min((q["px"] - pt["px"]) ** 2 + (q["py"] - pt["py"]) ** 2 for q in points if q is not pt)

    def loneliest(side):
        return max((p for p in points if (p["px"] < middle) == (side == "right")
                    and area["top"] + 130 < p["py"] < area["bottom"] - 130), key=isolation)

    # hover a point in the graph's left half, then one in its right: the card opens towards
    # the middle, whole
    for point, side in ((loneliest("right"), "right"), (loneliest("left"), "left")):
        t0 = time.perf_counter()
        card = _hover_shows(board, point)
        TIMINGS.append((f"map hover -> card with its image ({side})", time.perf_counter() - t0))
        assert card["src"] == f"/_relabscope/image?run=scn&sample={point['id']}&size={mppage.TIP_PX}"
        assert card["width"] == mppage.TIP_PX
        given = run.class_names[run.given_labels[point["id"]]]
        effect = run.class_names[run.labels()[epoch, point["id"]]]
        assert f"given: {given}" in card["text"] and f"in effect: {effect} (epoch {epoch})" in card["text"]
        assert 0 <= card["left"] and card["right"] <= card["vw"] and 0 <= card["top"] and card["bottom"] <= card["vh"]
        assert not card["clipped"] and card["side"].endswith(f"hover-{side}"), card
        if side == "right":  # to the right of the point, close to it
            assert 0 < card["left"] - point["px"] < 40 and point["px"] < middle
        else:
            assert 0 < point["px"] - card["right"] < 40 and point["px"] > middle
            shoot("hover")
    # off the points: the card goes
    _hover_at(board, area["left"] - 60, area["top"] - 60)
    until(lambda: _card(board) is None, 10, "the hover card stays after the pointer left the point")

    # a lasso around the plot area but its top left corner (where a double-click will clear
    # it: one inside a selection grabs it) holds more points than the grid shows
    corner = 60

    def lasso(a):
        left, top, right, bottom = a["left"] + 2, a["top"] + 2, a["right"] - 2, a["bottom"] - 2
        return [(left + corner, top), (right, top), (right, bottom), (left, bottom), (left, top + corner)]
    inside = sorted(p["id"] for p in points if (p["px"] - area["left"]) + (p["py"] - area["top"]) > corner + 6)
    assert mppage.GRID_CAP < len(inside) and len(points) - len(inside) <= 1
    t0 = time.perf_counter()
    board.drag_path(lasso(area))
    board.duo.wait_for_contains_text(GRID, f"{mppage.GRID_CAP} of {len(inside)} selected samples", timeout=20)
    imgs = board.wait_images(GRID, minimum=mppage.GRID_CAP, timeout=30)
    TIMINGS.append((f"lasso -> grid of {len(imgs)} loaded thumbnails", time.perf_counter() - t0))
    assert len(imgs) == mppage.GRID_CAP and all(i["width"] == mppage.TILE_PX for i in imgs)
    df = run.project("pca", epoch, max_points=ctx.max_points)
    want = mppage.grid_ids(df, inside, run.class_names, "effect")[0]
    assert [int(i["src"].split("sample=")[1].split("&")[0]) for i in imgs] == want
    assert f"{len(inside) - mppage.GRID_CAP} more in the table below" in board.text(GRID)
    tiles = board.js(
        """return Array.prototype.map.call(document.querySelectorAll(arguments[0] + ' .sample-tile'), function (t) {
            var r = t.getBoundingClientRect();
            return {href: t.getAttribute('href'), left: r.left, right: r.right, top: r.top, bottom: r.bottom};
        });""", GRID)
    assert [t["href"] for t in tiles] == [f"/sample?run=scn&sample={sid}" for sid in want]
    overlapping = [(a["href"], b["href"]) for i, a in enumerate(tiles) for b in tiles[i + 1:]
                   if a["left"] < b["right"] and b["left"] < a["right"]
                   and a["top"] < b["bottom"] and b["top"] < a["bottom"]]
    assert not overlapping, overlapping[:3]
    check = measure_text(board.driver, f"#{ids.PAGE}")
    assert not check.problems, check.report()
    board.js("document.querySelector(arguments[0]).scrollIntoView({block: 'start'});", f"#{ids.MP_COUNT}")
    shoot("lasso-grid")

    # double-clicking the plot outside the lasso clears the selection, and with it the grid
    board.js("arguments[0].scrollIntoView({block: 'center'});", board.duo.find_element(GRAPH))
    area = _plot_area(board)
    _hover_at(board, area["left"] + 8, area["top"] + 8)
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(board.driver).double_click().perform()
    until(lambda: board.count(f"{GRID} .sample-tile") == 0, 15, "the grid stays after the selection was cleared")

    # a tile opens its sample in the inspector
    time.sleep(0.6)  # past plotly's double-click window (300 ms): a press in it is no new drag
    board.drag_path(lasso(_plot_area(board)))  # measured again: the emptied grid shortened the page
    board.wait_images(GRID, minimum=mppage.GRID_CAP, timeout=30)
    board.click(f"{GRID} .sample-tile")
    until(lambda: board.js("return window.location.pathname") == "/sample", 15, "a tile did not open the inspector")
    assert board.search() == {"run": "scn", "sample": str(want[0])}
    board.duo.wait_for_text_to_equal(f"#{ids.PAGE} h2", f"Sample {want[0]} — scn")
    board.settle()
    board.assert_no_errors()
