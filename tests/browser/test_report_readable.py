"""`relabscope report`'s figures, opened as its HTML files in Chromium at the PNG export
width (1,000 px) and at 1,920 px: no text of any figure overlaps another, runs out of it
or its plot area, or is too small to read, and each figure yields the texts it asks for
(``tests.browser.overlap``). The report of the SCN / SCN-C tiny runs draws every
comparison view; the emptied pair's adds the class-balance and missing-mean notes."""

from __future__ import annotations

from collections import Counter

import pytest

from relabscope.report import PNG_WIDTH, write_report
from tests.browser.conftest import TEXT_COUNTS, until
from tests.browser.overlap import measure_text


@pytest.fixture(scope="module")
def reports(tiny_runs, emptied_pair, tmp_path_factory) -> list:
    out = tmp_path_factory.mktemp("reports")
    for name, runs in (("tiny", [tiny_runs["scn"], tiny_runs["scn-c"]]), ("emptied", list(emptied_pair))):
        write_report(runs, out / name, png=False, projection="tsne", gradcam_samples=0, samples=1, strict=True)
    pages = sorted(out.glob("*/figures/*.html"))
    assert len(pages) > 20  # every view of two runs, in two reports
    return pages


@pytest.mark.parametrize("width", [PNG_WIDTH, 1920])
def test_report_figures_have_no_overlapping_text(dash_duo, reports, width) -> None:
    driver = dash_duo.driver
    driver.set_window_size(width, 1400)
    problems, measured, counts = [], [], Counter[str]()
    for page in reports:
        driver.get(page.as_uri())
        until(lambda: driver.execute_script(
            "var gd = document.querySelector('.js-plotly-plot'); return !!(gd && gd._fullLayout);"), 30,
            f"{page.name}: not drawn")
        check = measure_text(driver)
        name = f"{page.parent.parent.name}/{page.name}"
        problems += [f"{name}: {p}" for p in check.problems]
        measured += [f"{name}: {fig.summary()}" for fig in check.figures]
        counts.update(check.counts)
    TEXT_COUNTS.append((f"report figures at {width} px", len(measured), dict(counts)))
    assert not problems, f"unreadable figure text at {width} px:\n" + "\n".join(problems) + \
        "\ntexts measured:\n" + "\n".join(measured)


def test_the_report_index_fits_the_window(dash_duo, reports) -> None:
    """The index runs no wider than a 1,280 px window: the key numbers stand one run per
    column (fourteen figures side by side ran past 1,600 px), and a wide table scrolls in
    its own box."""
    driver = dash_duo.driver
    driver.set_window_size(1280, 1000)
    for index in sorted({page.parent.parent / "index.html" for page in reports}):
        driver.get(index.as_uri())
        until(lambda: driver.execute_script("return document.readyState") == "complete", 30, f"{index}: not loaded")
        wide, window = driver.execute_script(
            "return [document.documentElement.scrollWidth, document.documentElement.clientWidth];")
        assert wide <= window, f"{index}: {wide} px wide in a {window} px window"
