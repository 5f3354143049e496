"""``relabscope report`` with relabel guards: a guarded run's vetoes (figure, per-class
table, key numbers) next to its relabel events, the floor in its class sizes, the
comparison's vetoes figure; a report of a run without guards shows nothing of them. Over
the tiny guarded / unguarded pair of ``tests.guarded`` (trained once here), without PNGs
and without the slow views (projection, Grad-CAM)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import relabscope as rs
from relabscope.report import write_report
from tests.conftest import scratch
from tests.guarded import GUARD_NAMES, GUARDED, OFF, train_pair

FAST = {"png": False, "projection": None, "gradcam_samples": 0, "samples": 1, "strict": True}


@pytest.fixture(scope="module")
def reports(tmp_path_factory, _isolated_cache) -> dict[str, Path]:
    with scratch(tmp_path_factory, "guard-reports") as root:
        runs = train_pair(root / "runs")
        lines: list[str] = []
        out = {"pair": root / "pair", "alone": root / "alone", "runs": root / "runs"}
        write_report([runs[OFF], runs[GUARDED]], out["pair"], log=lines.append, **FAST)
        write_report(runs[OFF], out["alone"], log=lines.append, **FAST)
        assert lines == []
        yield out


def test_a_guarded_run_gets_its_vetoes_next_to_its_relabel_events(reports) -> None:
    out = reports["pair"]
    with rs.open_run(reports["runs"] / GUARDED) as run:
        vetoes = run.vetoes()
    table = pd.read_csv(out / "tables" / f"{GUARDED}__vetoes.csv", index_col="guard")
    assert list(table.index) == GUARD_NAMES
    per_class = vetoes.pivot_table(index="guard", columns="class_name", values="vetoed", aggfunc="sum")
    pd.testing.assert_frame_equal(table.drop(columns="total"), per_class.loc[GUARD_NAMES, table.columns[:-1]],
                                  check_names=False, check_dtype=False)
    assert (table["total"] == table.drop(columns="total").sum(axis=1)).all()
    assert (out / "figures" / f"{GUARDED}__vetoes.html").stat().st_size > 0
    assert (out / "figures" / "compare__vetoes.html").stat().st_size > 0  # one of the two had guards
    assert not list(out.glob(f"*/{OFF}__vetoes*"))  # the unguarded run gets no guard view

    key = pd.read_csv(out / "tables" / "key_numbers.csv").set_index("run")
    columns = list(key.columns)
    assert columns.index("relabel guards") == columns.index("relabel events") + 1
    by_guard = vetoes.groupby("guard")["vetoed"].sum()
    assert key.loc[GUARDED, "relabel guards"] == ", ".join(GUARD_NAMES)
    assert key.loc[GUARDED, "relabels vetoed"] == (
        f"{int(by_guard.sum()):,} (" + ", ".join(f"{g} {int(by_guard[g]):,}" for g in GUARD_NAMES) + ")")
    assert key.loc[OFF, "relabel guards"] == "none" and key.loc[OFF, "relabels vetoed"] == "no guard"

    index = (out / "index.html").read_text()
    assert "relabels vetoed by the relabel guards, per guard and class" in index  # the inline table
    assert f"figures/{GUARDED}__vetoes.html" in index and "failed" not in index
    classes = (out / "figures" / f"{GUARDED}__class_counts.html").read_text()
    assert "relabel floor (F = 0.5)" in classes
    assert "relabel floor" not in (out / "figures" / f"{OFF}__class_counts.html").read_text()


def test_a_report_without_guards_shows_nothing_of_them(reports) -> None:
    out = reports["alone"]
    assert not list(out.rglob("*vetoes*"))
    key = pd.read_csv(out / "tables" / "key_numbers.csv")
    assert not {"relabel guards", "relabels vetoed"} & set(key.columns)
    index = (out / "index.html").read_text()
    assert "vetoed" not in index and "relabel guard" not in index
