"""Page 1 in the browser: the overview of a run loads, with its run list, numbers and
figures, and no error in the console."""

from __future__ import annotations

from relabscope.dashboard import ids
from tests.browser.conftest import TIMINGS

ACCURACY = f"#{ids.ov_figure('accuracy')}"


def test_overview_loads_with_runs_figures_and_numbers(board, dash_app, shoot) -> None:
    registry = dash_app.relabscope.registry
    run = registry.get("scn")

    # a fresh browser profile: the first load fetches every bundle (plotly.js included)
    seconds = board.open("/?run=scn", wait=f"{ACCURACY} .js-plotly-plot")
    fig = board.wait_figure(ACCURACY)
    TIMINGS.append(("overview first load, /?run=scn (page, bundles, callbacks, accuracy figure)", seconds))
    print(f"overview first load: {seconds:.2f} s")
    shoot("overview-scn")

    # every discovered run in the side bar, the broken one marked
    board.duo.wait_for_contains_text(".side", "broken")
    side = board.text(".side")
    for run_id in registry.ids():
        assert run_id in side
    assert [t.splitlines()[0] for t in board.texts(".side .run.active")] == ["scn"]
    bad = [t.splitlines()[0] for t in board.texts(".side .run.bad")]
    assert bad == ["broken"]

    # the accuracy figure: a test-accuracy line with one point per epoch
    test_lines = [t for t in fig["traces"] if t["name"].endswith(": test")]
    assert test_lines and test_lines[0]["n"] == run.num_epochs == len(run.metrics())
    assert "Accuracy" in fig["title"]
    assert board.count(f"{ACCURACY} .js-plotly-plot .scatterlayer .trace")

    # the other figures and the headline numbers (straight from the Run API)
    for which in ("relabels", "recovery", "consistency"):
        board.wait_figure(f"#{ids.ov_figure(which)}")
    acc = float(run.metrics()["test_acc"].iloc[-1])
    board.duo.wait_for_contains_text(f"#{ids.OV_NUMBERS}", f"{acc:.1%}")
    assert board.count(f"#{ids.OV_NUMBERS} .num-card") >= 4
    assert board.duo.find_element(f"#{ids.OV_HEAD} h2").text == "scn"
    assert board.count(f"#{ids.OV_CONFIG} .dash-spreadsheet")  # the settings table
    assert board.count(".error-card") == 0
    board.assert_no_errors()
