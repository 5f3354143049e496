"""The sweep figures: one line per method, and per (method, guard) when the sweep compares
relabel guards (cells of different guards never join into one line)."""

from __future__ import annotations

import pandas as pd

import relabscope as rs


def _table(guards: list[str]) -> pd.DataFrame:
    rows = []
    for method in ("scn", "scn-c"):
        for g, guard in enumerate(guards):
            for noise in (0.1, 0.3):
                acc = 0.8 - noise / 2 + 0.01 * g + (0.02 if method == "scn-c" else 0)
                rows.append({"method": method, "guard": guard, "noise": noise, "seeds": 3, "relabels": True,
                             "test_acc_mean": acc, "test_acc_std": 0.01, "flipflops_mean": 10.0 + g,
                             "flipflops_std": 1.0, "compactness_ratio_mean": 0.5, "compactness_ratio_std": 0.01})
    return pd.DataFrame(rows)


def test_a_line_per_method_and_guard():
    table = _table(["none", "floor=0.5", "agree"])
    fig = rs.plot.sweep_accuracy_figure(table)
    names = [t.name for t in fig.data]
    assert names == ["scn", "scn · floor=0.5", "scn · agree", "scn-c", "scn-c · floor=0.5", "scn-c · agree"]
    for trace in fig.data:
        method, _, guard = trace.name.partition(" · ")
        mine = table[(table["method"] == method) & (table["guard"] == (guard or "none"))]
        assert list(trace.y) == list(100 * mine.sort_values("noise")["test_acc_mean"])  # its own cells only
    symbols = {t.name: t.marker.symbol for t in fig.data}
    assert symbols["scn"] == symbols["scn-c"] == "circle" and symbols["scn · agree"] == symbols["scn-c · agree"]
    assert len({symbols["scn"], symbols["scn · floor=0.5"], symbols["scn · agree"]}) == 3
    colours = {t.name: t.line.color for t in fig.data}
    assert colours["scn"] == colours["scn · agree"] == colours["scn-c · agree"]  # one family, one colour
    assert "a marker per relabel guard" in fig.layout.meta["subtitle"]
    relabel = rs.plot.sweep_relabel_figure(table)
    assert len([t for t in relabel.data if t.showlegend is not False]) == 6


def test_an_unguarded_sweep_is_unchanged():
    fig = rs.plot.sweep_accuracy_figure(_table(["none"]))
    assert [t.name for t in fig.data] == ["scn", "scn-c"]
    assert "marker" not in fig.layout.meta["subtitle"]
