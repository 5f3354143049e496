"""Page 2 in the browser: the flip-flop table with its thumbnails, a row click that shows
the sample's label timeline, and an oscillation-matrix cell click that filters the table."""

from __future__ import annotations

import time

from relabscope.dashboard import ids
from tests.browser.conftest import TIMINGS, until

ROWS = f"#{ids.FF_TABLE} tbody tr"


def _table_ids(board) -> list[int]:
    """Sample ids of the table rows shown (their "sample" column)."""
    return board.js(
        """
        return Array.prototype.map.call(document.querySelectorAll(arguments[0]),
                                        function (td) { return parseInt(td.innerText, 10); });
        """, f"#{ids.FF_TABLE} td[data-dash-column='sample_id']")


def test_table_thumbnails_row_click_and_matrix_filter(board, dash_app, shoot) -> None:
    from relabscope.dashboard.flipflops import PAGE_SIZE, select_rows, sort_rows

    run = dash_app.relabscope.registry.get("scn")
    flip = run.flipflops()
    expected = sort_rows(select_rows(flip, mode="flipflopping"), None)
    assert len(expected) > 0, "the tiny scn run should flip-flop"

    seconds = board.open("/flipflops?run=scn", wait=f"#{ids.FF_TABLE} td[data-dash-column='sample_id']")
    TIMINGS.append(("flip-flops page load, /flipflops?run=scn", seconds))

    # the table: the flip-flopping samples, most flip-flops first, one page
    board.duo.wait_for_contains_text(f"#{ids.FF_COUNT}", f"{len(expected):,} of {len(flip):,} training samples")
    row_ids = _table_ids(board)
    assert row_ids == [int(s) for s in expected["sample_id"].head(PAGE_SIZE)]

    # a thumbnail per row, served by the image route and decoded by the browser
    imgs = board.wait_images(f"#{ids.FF_TABLE}", minimum=len(row_ids))
    assert len(imgs) == len(row_ids)
    assert all(i["width"] > 0 for i in imgs), imgs
    assert all("/_relabscope/image?" in i["src"] for i in imgs)
    shoot("table")

    # clicking a row shows that sample's label timeline
    sid = row_ids[1] if len(row_ids) > 1 else row_ids[0]
    cells = board.duo.find_elements(f"#{ids.FF_TABLE} td[data-dash-column='sample_id']")
    board.click(cells[row_ids.index(sid)])
    fig = board.wait_figure(f"#{ids.FF_DETAIL}", predicate=lambda f: f"sample {sid}" in f["title"])
    assert f"Label timeline of sample {sid}" in fig["title"]
    markers = [t for t in fig["traces"] if t["name"] == "label in effect"]
    assert markers and markers[0]["n"] == run.num_epochs
    thumb = board.wait_images(f"#{ids.FF_DETAIL}")
    assert thumb[0]["width"] > 0 and f"sample={sid}" in thumb[0]["src"]
    link = board.duo.find_element(f"#{ids.FF_DETAIL} a")
    assert f"sample={sid}" in link.get_attribute("href")
    shoot("row-clicked")

    # clicking a non-zero cell of the A -> B -> A matrix keeps the samples with that cycle
    matrix = run.oscillation_matrix()
    cells_nz = [(a, b, int(matrix.loc[a, b])) for a in matrix.index for b in matrix.columns if matrix.loc[a, b] > 0]
    assert cells_nz, "the tiny scn run should have A -> B -> A cycles"
    a, b, count = max(cells_nz, key=lambda c: c[2])
    heat = board.wait_figure(f"#{ids.FF_HEATMAP}", predicate=lambda f: f["traces"][0]["type"] == "heatmap")
    assert heat["traces"][0]["type"] == "heatmap"
    osc = run.oscillations()
    ai, bi = run.class_names.index(a), run.class_names.index(b)
    cycle_rows = sort_rows(select_rows(flip, mode="flipflopping", cycle=(ai, bi), oscillations=osc), None)
    assert 0 < len(cycle_rows) <= count

    t0 = time.perf_counter()
    x, y = board.client_point(f"#{ids.FF_HEATMAP}", b, a)  # columns B (x), rows A (y)
    board.click_at(x, y)
    board.duo.wait_for_contains_text(f"#{ids.FF_CELL_CHIP}", f"cycle {a} → {b} → {a}")
    board.duo.wait_for_contains_text(f"#{ids.FF_COUNT}",
                                     f"{len(cycle_rows):,} of {len(flip):,} training samples")
    until(lambda: _table_ids(board) == [int(s) for s in cycle_rows["sample_id"].head(PAGE_SIZE)], 15,
          "the table did not show the cycle's samples")
    TIMINGS.append(("matrix cell click -> filtered table", time.perf_counter() - t0))
    board.wait_images(f"#{ids.FF_TABLE}", minimum=min(len(cycle_rows), PAGE_SIZE))
    shoot("cycle-filter")

    # and the clear button brings the whole list back
    board.click(f"#{ids.FF_CLEAR}")
    board.duo.wait_for_contains_text(f"#{ids.FF_COUNT}", f"{len(expected):,} of {len(flip):,} training samples")
    board.settle()
    board.assert_no_errors()
