"""Page 3 in the browser: the sample inspector opened by a deep link shows the image, the
distance bars (one bar per class per chosen epoch), the label timeline, and Grad-CAM
once asked for."""

from __future__ import annotations

import time

from relabscope.dashboard import ids
from tests.browser.conftest import TIMINGS, until


def test_deep_link_shows_image_distances_timeline_and_gradcam(board, dash_app, shoot) -> None:
    run = dash_app.relabscope.registry.get("scn")
    flip = run.flipflops()
    relabelled = flip[flip["changes"] > 0].sort_values(["changes", "sample_id"], ascending=[False, True])
    assert len(relabelled), "the tiny scn run should relabel"
    sid = int(relabelled["sample_id"].iloc[0])

    seconds = board.open(f"/sample?run=scn&sample={sid}", wait=f"#{ids.SM_DISTANCES} .js-plotly-plot")
    TIMINGS.append(("sample inspector load (deep link)", seconds))
    assert board.duo.find_element(f"#{ids.PAGE} h2").text == f"Sample {sid} — scn"

    # the image (224 px wide), decoded
    img = until(lambda: board.js("""var i = document.querySelector(arguments[0]);
                                    return i && i.complete && i.naturalWidth ? {src: i.getAttribute('src'),
                                    width: i.naturalWidth} : null;""", f"#{ids.PAGE} img.big-thumb"), 15,
                "the sample image did not load")
    assert img["width"] == 224 and f"sample={sid}" in img["src"]

    # distance bars: one bar per class at each default epoch (Run.distance_profile)
    profile = run.distance_profile(sid)
    epochs = list(dict.fromkeys(int(e) for e in profile["epoch"]))
    fig = board.wait_figure(f"#{ids.SM_DISTANCES}")
    bars = [t for t in fig["traces"] if t["type"] == "bar" and t["name"].startswith("epoch ")]
    assert [t["name"] for t in bars] == [f"epoch {e}" for e in epochs]
    assert sum(t["drawn"] for t in bars) == len(profile) == run.num_classes * len(epochs)
    drawn = board.js("""return Array.prototype.filter.call(
        document.querySelectorAll(arguments[0]),
        function (p) { var d = p.getAttribute('d'); return d && d !== 'M0,0Z'; }).length;""",
                     f"#{ids.SM_DISTANCES} .barlayer .trace .point path")
    assert drawn == len(profile)
    assert f"sample {sid}" in fig["title"]

    # the label timeline and the facts table
    timeline = board.wait_figure(f"#{ids.SM_TIMELINE}")
    assert f"Label timeline of sample {sid}" in timeline["title"]
    board.duo.wait_for_contains_text(f"#{ids.SM_FACTS}", "relabel events")
    board.wait_figure(f"#{ids.SM_PROBS}")
    shoot("inspector")

    # Grad-CAM: computed only when asked (button), then three image panels
    board.duo.wait_for_contains_text(f"#{ids.SM_GRADCAM}", "press the button")
    t0 = time.perf_counter()
    board.click(f"#{ids.SM_GRADCAM_GO}")
    cam = board.wait_figure(f"#{ids.SM_GRADCAM}", timeout=60)
    TIMINGS.append(("Grad-CAM on request (reload model, 2 CAMs)", time.perf_counter() - t0))
    assert [t["type"] for t in cam["traces"]] == ["image"] * 3
    assert board.count(f"#{ids.SM_GRADCAM} .error-card") == 0
    board.settle()
    shoot("gradcam")
    board.assert_no_errors()
