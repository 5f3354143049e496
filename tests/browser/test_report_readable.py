"""`relabscope report`'s figures, opened as its HTML files in Chromium at the PNG export
width (1,000 px) and at 1,920 px: no text of any figure overlaps another
(``tests.browser.overlap``). The report of the SCN / SCN-C tiny runs draws every
comparison view; the emptied pair's adds the class-balance and missing-mean notes."""

from __future__ import annotations

import pytest

from relabscope.report import PNG_WIDTH, write_report
from tests.browser.conftest import until
from tests.browser.overlap import overlapping_text


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
    problems = []
    for page in reports:
        driver.get(page.as_uri())
        until(lambda: driver.execute_script(
            "var gd = document.querySelector('.js-plotly-plot'); return !!(gd && gd._fullLayout);"), 30,
            f"{page.name}: not drawn")
        problems += [f"{page.parent.parent.name}/{page.name}: {o}" for o in overlapping_text(driver)]
    assert not problems, f"overlapping text at {width} px:\n" + "\n".join(problems)
