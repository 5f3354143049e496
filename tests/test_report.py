"""``relabscope report`` on real tiny runs: every file is there, PNGs are PNGs, the HTML
works offline, the index links resolve, and the CLI prints one line for a bad path.

One two-run report (SCN vs the never-relabelling baseline, with UMAP and Grad-CAM) is
written per module; only a handful of its figures are exported as PNG, because each PNG
costs about half a second of headless Chromium.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
from pathlib import Path

import pytest
from click.testing import CliRunner

PNG_VIEWS = {"accuracy", "flipflops", "distances_*", "gradcam", "projection", "consistency"}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: kaleido drives a local Chrome/Chromium; .ci/run installs Debian's and insists on it
BROWSER = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)


def _need_browser() -> None:
    if BROWSER is None:
        if os.environ.get("RELABSCOPE_REQUIRE_BROWSER"):
            pytest.fail("no Chrome/Chromium found, and RELABSCOPE_REQUIRE_BROWSER is set (.ci/install-chromium)")
        pytest.skip("PNG export needs Chrome or Chromium (apt-get install chromium)")


@pytest.fixture(scope="module")
def report(tiny_runs, tmp_path_factory) -> Path:
    from relabscope.report import write_report

    out = tmp_path_factory.mktemp("report")
    lines: list[str] = []
    index = write_report([tiny_runs["scn"], tiny_runs["baseline"]], out, png=PNG_VIEWS if BROWSER else False, samples=1,
                         gradcam_samples=2, strict=True, log=lines.append)
    assert lines == []  # nothing failed or was skipped
    assert index == out / "index.html"
    return out


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, path
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_expected_files_exist_and_are_not_empty(report):
    figures, tables = report / "figures", report / "tables"
    for slug in ("scn", "baseline"):
        for view in ("accuracy", "class_accuracy", "confusion", "compactness", "projection", "projection_given",
                     "gradcam", "data_map", "noise_detection"):
            assert (figures / f"{slug}__{view}.html").stat().st_size > 0, (slug, view)
        for table in ("metrics", "compactness", "dynamics", "noise_detection"):
            for ext in ("csv", "md"):
                assert (tables / f"{slug}__{table}.{ext}").stat().st_size > 0, (slug, table, ext)
        assert list(figures.glob(f"{slug}__distances_sample*.html"))
    for view in ("flipflops", "oscillations", "consistency", "gap_change", "consistency_scatter",
                 "relabels_per_epoch", "noise_recovery", "projection_flipflops"):
        assert (figures / f"scn__{view}.html").stat().st_size > 0, view
    for table in ("flipflops", "oscillation_matrix", "consistency", "consistency_events", "noise_recovery"):
        assert (tables / f"scn__{table}.csv").stat().st_size > 0, table
    for view in ("accuracy", "relabels_per_epoch", "compactness", "consistency", "gap_change", "flipflop_totals"):
        assert (figures / f"compare__{view}.html").stat().st_size > 0, view
    for table in ("summary", "compactness", "consistency", "metrics", "samples"):
        assert (tables / f"compare__{table}.csv").stat().st_size > 0, table
    assert (tables / "key_numbers.csv").stat().st_size > 0 and (tables / "key_numbers.md").stat().st_size > 0


def test_methods_that_never_relabel_get_notes_not_empty_views(report):
    figures = report / "figures"
    for view in ("flipflops", "oscillations", "consistency", "gap_change", "relabels_per_epoch", "noise_recovery"):
        assert not (figures / f"baseline__{view}.html").exists(), view
    index = (report / "index.html").read_text()
    assert "baseline never relabels" in index


def test_pngs_are_valid_and_plausible(report):
    _need_browser()
    pngs = sorted((report / "figures").glob("*.png"))
    names = {p.stem.split("__", 1)[1] for p in pngs}
    assert {"accuracy", "flipflops", "gradcam", "projection", "consistency"} <= names
    assert any(n.startswith("distances_sample") for n in names)
    assert not names - {"accuracy", "flipflops", "gradcam", "projection", "consistency"} - {
        n for n in names if n.startswith("distances_sample")}
    for p in pngs:
        w, h = _png_size(p)
        assert 300 <= w <= 4000 and 200 <= h <= 4000, (p.name, w, h)
        assert p.stat().st_size > 5_000, p.name  # a drawn chart, not a blank page


def test_html_uses_the_local_plotly_js(report):
    figures = report / "figures"
    js = figures / "plotly.min.js"
    assert js.stat().st_size > 1_000_000
    assert len(list(report.rglob("plotly.min.js"))) == 1  # written once
    for page in figures.glob("*.html"):
        text = page.read_text()
        assert '<script src="plotly.min.js"' in text or "src=\"plotly.min.js\"" in text, page.name
        assert "cdn.plot.ly" not in text, page.name


def test_index_has_key_numbers_and_its_links_resolve(report):
    index = report / "index.html"
    text = index.read_text()
    head = text[: text.index("id='compare'")]
    for phrase in ("final test accuracy", "relabel events", "flip-flops", "closer to new"):
        assert phrase in head, phrase
    links = re.findall(r"(?:href|src)='([^'#]+)'", text)
    assert len(links) > 50
    for link in links:
        assert (report / link).is_file(), link
    linked = {l for l in links}
    for f in (report / "figures").glob("*.html"):
        assert f"figures/{f.name}" in linked, f.name  # every figure is reachable from the index
    assert "failed" not in text


def test_markdown_tables_are_markdown(report):
    md = (report / "tables" / "scn__compactness.md").read_text()
    assert md.startswith("# ") and "| " in md and "---" in md


def test_cli_report_writes_and_prints_the_index(tiny_runs, tmp_path):
    from relabscope.cli import main

    out = tmp_path / "rep"
    result = CliRunner().invoke(main, ["report", str(tiny_runs["scn-c"]), "--out", str(out), "--no-png"])
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1] == str(out / "index.html")
    assert (out / "index.html").is_file() and not list(out.rglob("*.png"))


def test_cli_report_bad_path_is_one_error_line(tmp_path):
    from relabscope.cli import main

    result = CliRunner().invoke(main, ["report", str(tmp_path / "nope"), "--out", str(tmp_path / "rep")])
    assert result.exit_code != 0
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("relabscope: error: ") and "nope" in lines[0]
    assert not (tmp_path / "rep").exists()


def test_report_of_runs_with_an_emptied_class_draws_every_view_and_warns(emptied_pair, tmp_path):
    """Every figure and table of a two-run report over logs in which relabelling emptied a
    class, strict (any failing view raises). Grad-CAM is left out: a hand-written log has
    no model or images; t-SNE instead of UMAP keeps it fast."""
    from relabscope.report import write_report

    lines: list[str] = []
    index = write_report(list(emptied_pair), tmp_path, png=False, projection="tsne", gradcam_samples=0, samples=2,
                         strict=True, log=lines.append)
    assert lines == []
    text = index.read_text()
    assert "Relabelling changed the class balance" in text
    assert "emptied: class &#x27;anger&#x27; was emptied by relabelling in epoch 1" in text
    for name in ("emptied__class_counts", "emptied__label_flow", "compare__class_counts", "compare__label_flow"):
        assert (tmp_path / "figures" / f"{name}.html").stat().st_size > 0, name
    warnings = (tmp_path / "tables" / "emptied__class_warnings.csv").read_text()
    assert "anger" in warnings and "sadness" in warnings
    assert "anger,16,0,0,16,0,0" in (tmp_path / "tables" / "compare__class_counts.csv").read_text()
    assert "nan" not in text.lower().replace("nanmean", "")
