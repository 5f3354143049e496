"""Navigation in the browser: the run list and the top bar switch runs and pages without a
reload; an unknown run or page and a corrupt run show their error cards while the other
runs keep working."""

from __future__ import annotations

import time

from relabscope.dashboard import ids
from tests.browser.conftest import TIMINGS, until

ACCURACY = f"#{ids.ov_figure('accuracy')}"


def _run_link(board, run_id: str):
    for link in board.duo.find_elements(".side a.run"):
        if link.text.splitlines()[0] == run_id:
            return link
    raise AssertionError(f"no link to run {run_id!r} in the run list: {board.text('.side')!r}")


def _active(board) -> list[str]:
    return [t.splitlines()[0] for t in board.texts(".side .run.active")]


def _switch(board, run_id: str) -> float:
    """Click ``run_id`` in the run list; seconds until the URL names it and callbacks settled."""
    t0 = time.perf_counter()
    board.click(_run_link(board, run_id))
    until(lambda: board.search().get("run") == run_id, 10, f"the URL did not switch to {run_id}")
    board.settle()
    return time.perf_counter() - t0


def test_run_list_and_top_bar_switch_runs_and_pages(board, dash_app, shoot) -> None:
    registry = dash_app.relabscope.registry
    board.open("/?run=scn", wait=f"{ACCURACY} .js-plotly-plot")
    marker = board.js("window.__noReload = 1; return window.__noReload;")  # gone if the page reloads

    seconds = _switch(board, "scn-c")
    TIMINGS.append(("run switch from the run list (overview)", seconds))
    board.duo.wait_for_text_to_equal(f"#{ids.OV_HEAD} h2", "scn-c")
    until(lambda: _active(board) == ["scn-c"], 10, "scn-c not marked active")
    fig = board.wait_figure(ACCURACY, predicate=lambda f: f["traces"][0]["name"].startswith("scn-c"))
    assert fig["traces"][0]["name"] == "scn-c: test"
    acc = float(registry.get("scn-c").metrics()["test_acc"].iloc[-1])
    board.duo.wait_for_contains_text(f"#{ids.OV_NUMBERS}", f"{acc:.1%}")
    assert board.js("return window.__noReload;") == marker  # a client-side switch, no reload

    # the top bar keeps the run: Flip-flops of scn-c
    board.click(board.duo.find_element(f"#{ids.TOPNAV} a[href^='/flipflops']"))
    board.duo.wait_for_contains_text(f"#{ids.PAGE} h2", "Flip-flops — scn-c")
    assert board.js("return window.location.pathname") == "/flipflops"
    assert board.search() == {"run": "scn-c"}
    # and the run list keeps the page: scn's flip-flops
    _switch(board, "scn")
    board.duo.wait_for_contains_text(f"#{ids.PAGE} h2", "Flip-flops — scn")
    assert board.js("return window.location.pathname") == "/flipflops"
    board.duo.wait_for_element(f"#{ids.FF_TABLE} td[data-dash-column='sample_id']")
    # a run that never relabels says so instead of an empty table
    _switch(board, "baseline")
    board.duo.wait_for_contains_text(f"#{ids.PAGE} .error-card .err-title", "Nothing to show")
    shoot("baseline-flipflops")
    board.assert_no_errors()


def test_unknown_run_and_page_show_error_cards(board, shoot) -> None:
    board.open("/?run=no-such-run", wait=f"#{ids.PAGE} .error-card")
    assert board.duo.find_element(f"#{ids.PAGE} .err-title").text == "Run not found"
    assert "unknown run 'no-such-run'" in board.duo.find_element(f"#{ids.PAGE} .err-msg").text
    assert "scn" in board.text(".side") and _active(board) == []
    shoot("unknown-run")

    board.open("/sample?run=scn&sample=999999", wait=f"#{ids.PAGE} .error-card")
    assert board.duo.find_element(f"#{ids.PAGE} .err-title").text == "No such sample"
    assert "out of range" in board.duo.find_element(f"#{ids.PAGE} .err-msg").text

    board.open("/no-such-page?run=scn", wait=f"#{ids.PAGE} .error-card")
    assert board.duo.find_element(f"#{ids.PAGE} .err-title").text == "Page not found"

    # the run list still leads somewhere that works
    _switch(board, "scn")
    assert board.count(f"#{ids.PAGE} .error-card") == 0
    board.assert_no_errors()


def test_corrupt_run_shows_its_error_while_others_work(board, dash_app, shoot) -> None:
    registry = dash_app.relabscope.registry
    assert "broken" in registry.ids()
    board.open("/?run=broken", wait=f"#{ids.PAGE} .error-card")
    assert board.duo.find_element(f"#{ids.PAGE} .err-title").text == "Run broken cannot be shown"
    message = board.duo.find_element(f"#{ids.PAGE} .err-msg").text
    assert message and "Traceback" not in message
    # the run list marks it, with the reason as its subtitle
    board.duo.wait_for_contains_text(".side .run.bad", "broken")
    bad = board.duo.find_element(".side .run.bad")
    assert bad.get_attribute("title") and bad.get_attribute("title") in bad.text
    shoot("broken-overview")

    for path in ("/flipflops?run=broken", "/sample?run=broken&sample=0"):
        board.open(path, wait=f"#{ids.PAGE} .error-card")
        assert board.duo.find_element(f"#{ids.PAGE} .err-title").text == "Run broken cannot be shown"

    # the good runs are unaffected
    _switch(board, "scn")
    board.duo.wait_for_contains_text(f"#{ids.PAGE} h2", "Sample")
    board.wait_figure(f"#{ids.SM_DISTANCES}")
    assert board.count(f"#{ids.PAGE} .error-card") == 0
    board.open("/?run=group/nested", wait=f"{ACCURACY} .js-plotly-plot")
    board.duo.wait_for_text_to_equal(f"#{ids.OV_HEAD} h2", "group/nested")
    board.assert_no_errors()
