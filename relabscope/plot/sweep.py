"""A sweep's results across noise levels: test accuracy (the seed paper's Table 3 as a
chart), flip-flops of the relabelling methods and compactness of every method.

A method and its "-C" variant share a colour; the "-C" line is solid and the plain one
dashed, so each pair reads as one comparison. Error bars are the standard deviation over
seeds. The figures take ``relabscope.sweep.sweep_table``'s frame.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from relabscope.plot._style import finish, note_figure, run_color


#: how a guarded cell's line is named: "scn-c · floor=0.5"
GUARD_SEP = " · "
#: marker per guard of a sweep's guard axis, in its order ("none" first: circles)
GUARD_SYMBOLS = ("circle", "square", "diamond", "triangle-up", "x", "star", "cross", "hexagon")


def _method(series: str) -> str:
    return series.split(GUARD_SEP)[0]


def _family(series: str) -> str:
    method = _method(series)
    return method[:-2] if method.endswith("-c") else method


def _series(table: pd.DataFrame) -> pd.DataFrame:
    """One line per (method, guard) when the sweep compares relabel guards: the guard goes
    into the line's name, so cells of different guards never join into one line."""
    if "guard" not in table or not (table["guard"] != "none").any():
        return table
    named = [m if g == "none" else f"{m}{GUARD_SEP}{g}" for m, g in zip(table["method"], table["guard"])]
    return table.assign(method=named)


def _styles(series: list[str]) -> dict[str, dict[str, str]]:
    """Colour by method family, solid for "-C" and dashed for its base; a marker per guard."""
    families = list(dict.fromkeys(_family(m) for m in series))
    guards = list(dict.fromkeys(m.split(GUARD_SEP)[1] if GUARD_SEP in m else "none" for m in series))
    guards = ["none", *[g for g in guards if g != "none"]]

    def symbol(m: str) -> str:
        guard = m.split(GUARD_SEP)[1] if GUARD_SEP in m else "none"
        return GUARD_SYMBOLS[guards.index(guard) % len(GUARD_SYMBOLS)]

    return {m: dict(color=run_color(families.index(_family(m))), dash="solid" if _method(m).endswith("-c") else "dash",
                    symbol=symbol(m)) for m in series}


def _lines(fig: go.Figure, table: pd.DataFrame, column: str, *, scale: float = 1.0, row: int | None = None,
           methods: list[str] | None = None, hide_legend: Iterable[str] = ()) -> None:
    methods = methods if methods is not None else list(dict.fromkeys(table["method"]))
    hidden = set(hide_legend)
    styles = _styles(list(dict.fromkeys(table["method"])))
    for m in methods:
        t = table[table["method"] == m].sort_values("noise")
        std = t[f"{column}_std"].to_numpy(dtype=float) * scale
        trace = go.Scatter(
            x=100 * t["noise"], y=t[f"{column}_mean"] * scale, name=m, legendgroup=m, showlegend=m not in hidden,
            mode="lines+markers", line=dict(width=2.2, color=styles[m]["color"], dash=styles[m]["dash"]),
            marker=dict(size=8, color=styles[m]["color"], symbol=styles[m]["symbol"]),
            error_y=dict(type="data", array=np.nan_to_num(std), visible=bool(np.isfinite(std).any()), thickness=1.2),
            customdata=np.stack([t["seeds"]], axis=1),
            hovertemplate=f"{m}, noise %{{x:g}}%: %{{y:.4g}} (%{{customdata[0]}} seeds)<extra></extra>")
        fig.add_trace(trace, **({} if row is None else {"row": row, "col": 1}))


def sweep_accuracy_figure(table: pd.DataFrame, *, name: str | None = None) -> go.Figure:
    """Test accuracy (%) against injected noise, one line per method: the seed paper's
    Table 3 as a chart.

    Args:
        table: ``relabscope.sweep.sweep_table()`` (method, noise, seeds, test_acc_mean,
            test_acc_std).
        name: the sweep's name, for the title.

    Returns:
        The figure (a note before the first finished run).

    Example:
        >>> import pandas as pd, relabscope as rs
        >>> table = pd.DataFrame({"method": ["scn", "scn", "scn-c", "scn-c"], "noise": [0.1, 0.2, 0.1, 0.2],
        ...                       "seeds": 3, "test_acc_mean": [0.81, 0.74, 0.83, 0.79],
        ...                       "test_acc_std": [0.01, 0.02, 0.01, 0.01]})
        >>> fig = rs.plot.sweep_accuracy_figure(table, name="synthetic")
        >>> [(trace.name, trace.line.dash) for trace in fig.data]  # a "-C" method solid, its base dashed
        [('scn', 'dash'), ('scn-c', 'solid')]
    """
    what = "Test accuracy against label noise" + (f" — {name}" if name else "")
    if table.empty:
        return note_figure("no finished run in this sweep yet", what)
    table = _series(table)
    fig = go.Figure()
    _lines(fig, table, "test_acc", scale=100.0)
    fig.update_xaxes(title_text="injected label noise (%)", tickvals=sorted(100 * table["noise"].unique()))
    fig.update_yaxes(title_text="test accuracy (%)")
    guarded = any(GUARD_SEP in m for m in table["method"])
    return finish(fig, what, height=460, subtitle="mean ± std over seeds; -C methods solid, their base dashed"
                  + ("; a marker per relabel guard" if guarded else ""))


def sweep_relabel_figure(table: pd.DataFrame, *, name: str | None = None) -> go.Figure:
    """Flip-flops (relabelling methods) and scale-free compactness (every method: the mean
    ratio of a sample's distance to its own class center to that to the nearest other one,
    which compares across methods where raw distances do not) against noise.

    Args:
        table: ``relabscope.sweep.sweep_table()`` (method, noise, seeds, relabels,
            flipflops_mean/_std, compactness_ratio_mean/_std).
        name: the sweep's name, for the title.

    Returns:
        The figure (a note before the first finished run).
    """
    what = "Flip-flops and compactness against label noise" + (f" — {name}" if name else "")
    if table.empty:
        return note_figure("no finished run in this sweep yet", what)
    table = _series(table)
    relabelling = [m for m in dict.fromkeys(table["method"]) if table[table["method"] == m]["relabels"].all()]
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.14,
                        subplot_titles=["flip-flops (methods that relabel)",
                                        "distance to own / nearest other class center (scale-free)"])
    _lines(fig, table, "flipflops", row=1, methods=relabelling)
    _lines(fig, table, "compactness_ratio", row=2, hide_legend=relabelling)
    fig.update_xaxes(title_text="injected label noise (%)", tickvals=sorted(100 * table["noise"].unique()), row=2, col=1)
    subtitle = None
    silent = [m for m in dict.fromkeys(table["method"]) if m not in relabelling]
    if silent:
        subtitle = f"{', '.join(silent)} never relabel: no flip-flops to count"
    return finish(fig, what, height=640, subtitle=subtitle, margin=dict(t=120))
