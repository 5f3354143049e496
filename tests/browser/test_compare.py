"""Pages 5 and 6 in the browser: two runs compared side by side (``?run=scn&against=scn-c``)
show both runs' numbers (``Comparison.summary``), figures and one sample in both runs; the
compactness page of the same pair draws its table and figure."""

from __future__ import annotations

import pytest

from relabscope.dashboard import ids
from tests.browser.conftest import TIMINGS


def _summary_cells(board) -> dict[str, tuple[str, str, str]]:
    """The summary table: what -> (A, B, difference) as shown."""
    rows = board.js(
        """
        return Array.prototype.map.call(document.querySelectorAll(arguments[0]), function (tr) {
            var cell = function (c) { var td = tr.querySelector('td[data-dash-column="' + c + '"]');
                                      return td ? td.innerText.trim() : null; };
            return [cell('what'), cell('a_shown'), cell('b_shown'), cell('difference_shown')];
        }).filter(function (r) { return r[0] !== null; });
        """, f"#{ids.CP_SUMMARY_TABLE} tbody tr")
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def test_compare_shows_both_runs_numbers_and_compactness(board, dash_app, shoot) -> None:
    from relabscope.dashboard import app as app_module
    from relabscope.dashboard.compare import summary_rows

    missing = [p for p in ("compare", "compactness") if p not in app_module.PAGES]
    if missing:
        pytest.fail(f"pages not registered in relabscope.dashboard.app.PAGES: {missing}")
    ctx = dash_app.relabscope
    summary = ctx.comparison("scn", "scn-c").summary()
    expected = {r["what"]: (r["a_shown"], r["b_shown"], r["difference_shown"]) for r in summary_rows(summary)}
    assert list(summary.columns[:2]) == ["scn", "scn-c"]

    seconds = board.open("/compare?run=scn&against=scn-c", wait=f"#{ids.CP_SUMMARY_TABLE} td", timeout=60)
    TIMINGS.append(("compare page load, scn vs scn-c", seconds))
    assert board.duo.find_element(f"#{ids.PAGE} h2").text == "Compare — scn vs scn-c"
    headers = board.texts(f"#{ids.CP_SUMMARY_TABLE} th")
    assert any("scn-c" in h for h in headers) and any(h.strip() == "scn" for h in headers)

    # both runs' headline numbers, and their difference, as Comparison.summary() has them
    shown = _summary_cells(board)
    assert shown == expected
    acc_a = float(ctx.run("scn").metrics()["test_acc"].iloc[-1])
    acc_b = float(ctx.run("scn-c").metrics()["test_acc"].iloc[-1])
    assert shown["test accuracy, last epoch"][:2] == (f"{acc_a:.1%}", f"{acc_b:.1%}")
    events = (len(ctx.run("scn").relabel_events()), len(ctx.run("scn-c").relabel_events()))
    assert shown["relabel events"][:2] == tuple(f"{e:,}" for e in events)

    # the figures draw both runs
    acc = board.wait_figure(f"#{ids.cp_figure('accuracy')}")
    names = {t["name"] for t in acc["traces"]}
    assert {"scn: test", "scn-c: test"} <= names
    for which in ("totals", "consistency", "compactness"):
        board.wait_figure(f"#{ids.cp_figure(which)}")
    # one training sample in both runs: two label timelines, two thumbnails
    board.duo.wait_for_element(f"#{ids.CP_SAMPLE_VIEW} .js-plotly-plot", timeout=30)
    board.settle()
    titles = board.js(f"return Array.prototype.map.call(document.querySelectorAll('#{ids.CP_SAMPLE_VIEW} .gtitle'),"
                      " function (t) { return t.textContent; });")
    assert sum("Label timeline of sample" in t for t in titles) == 2, titles
    thumbs = board.wait_images(f"#{ids.CP_SAMPLE_VIEW}", minimum=2)
    assert all(t["width"] > 0 for t in thumbs)
    assert board.count(f"#{ids.PAGE} .error-card") == 0
    shoot("compare")
    board.assert_no_errors()

    # the compactness page of the same pair
    seconds = board.open("/compactness?run=scn&against=scn-c", wait=f"#{ids.CM_FIGURE} .js-plotly-plot", timeout=60)
    TIMINGS.append(("compactness page load, scn vs scn-c", seconds))
    board.wait_figure(f"#{ids.CM_FIGURE}")
    board.duo.wait_for_element(f"#{ids.CM_TABLE_DATA} td")
    assert board.count(f"#{ids.PAGE} .error-card") == 0
    shoot("compactness")
    board.assert_no_errors()
