"""Relabel guards at work: per epoch, the relabels each guard vetoed (``--relabel-floor``,
``--relabel-hysteresis``, ``--relabel-agree``) stacked beside the relabel events that went
through, one panel per run that had a guard on. A guard's refusals only mean something
next to what it let pass: a floor that vetoed 5 relabels of 500 barely acted, one that
vetoed 5 of 6 held relabelling back."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from relabscope.deprecation import renamed
from relabscope.methods.guards import BY_NAME
from relabscope.plot._style import OTHER, Runs, as_list, finish, note_figure, panel_titles, title, unique_names

#: what a view says about a run with no relabel guard on (the only thing it says about it)
NO_GUARD = "no relabel guard was on"
#: one colour per guard (the figure draws no classes, so these cannot be mistaken for one)
GUARD_COLORS = {"hysteresis": "#e45756", "agree": "#54a24b", "floor": "#b279a2"}
#: classes a veto bar's hover names before it says "and N more"
HOVER_CLASSES = 4
#: room below the plot for the legend (one row of four entries)
LEGEND_PX = 40


def guard_color(guard: str) -> str:
    """The colour of ``guard``'s vetoes (grey for a guard this module does not know)."""
    return GUARD_COLORS.get(guard, "#7f7f7f")


#: deprecated spelling of :func:`guard_color`
guard_colour = renamed(guard_color, "guard_colour")


def vetoes(runs: Runs) -> go.Figure:
    """Relabels vetoed per epoch by each relabel guard (stacked, one colour per guard)
    beside the relabel events that went through: one panel per run with a guard on; runs
    without one are named in the subtitle, and a figure of such runs only is a note.

    Args:
        runs: one run, or several side by side.

    Returns:
        The figure; hovering a veto bar names the classes the refused relabels would have
        left (``Run.vetoes()``).

    Example:
        >>> import tempfile, relabscope as rs
        >>> run = rs.open_run(rs.example_run(tempfile.mkdtemp() + "/example"))
        >>> rs.plot.vetoes(run).layout.meta["note"]
        'no relabel guard was on'
    """
    listed = as_list(runs)
    names = unique_names([r.name for r in listed])
    return vetoes_figure({n: r.vetoes() for n, r in zip(names, listed)},
                         {n: r.metrics() for n, r in zip(names, listed)},
                         guards={n: r.guards for n, r in zip(names, listed)})


def vetoes_figure(tables: Mapping[str, pd.DataFrame], metrics: Mapping[str, pd.DataFrame], *,
                  guards: Mapping[str, Sequence[str]]) -> go.Figure:
    """Draw :func:`vetoes` from tables.

    Args:
        tables: run name -> ``Run.vetoes()`` (epoch, guard, class_id, class_name, vetoed).
        metrics: run name -> ``Run.metrics()`` (epoch, relabels): the relabel events that
            went through.
        guards: run name -> the guards switched on (``RunLogReader.guards``), in the order
            they applied; empty for a run without guards.

    Returns:
        The figure (a note when no run had a guard on).
    """
    names = list(tables)
    head = title("Relabels and guard vetoes per epoch", names)
    guarded = [n for n in names if guards.get(n)]
    unguarded = [n for n in names if not guards.get(n)]
    if not guarded:
        return note_figure(NO_GUARD, head)
    spacing = 0.08
    panel_names, extra_px = panel_titles(guarded, spacing=spacing)
    fig = make_subplots(rows=1, cols=len(guarded), shared_yaxes=True, horizontal_spacing=spacing,
                        subplot_titles=panel_names if len(guarded) > 1 else None)
    in_legend: set[str] = set()
    top = 0.0
    for col, name in enumerate(guarded, start=1):
        epochs = _epochs(tables[name], metrics[name])
        relabels = metrics[name].set_index("epoch")["relabels"].reindex(epochs).fillna(0).to_numpy(float)
        fig.add_trace(go.Bar(
            x=epochs, y=relabels, name="relabel events (granted)", offsetgroup="granted", legendgroup="granted",
            marker_color=OTHER, showlegend="granted" not in in_legend,
            hovertemplate="epoch %{x}: %{y} relabel events went through<extra>" + name + "</extra>"),
            row=1, col=col)
        in_legend.add("granted")
        base = np.zeros(len(epochs))
        for guard in guards[name]:
            counts, hover = _per_epoch(tables[name], guard, epochs)
            fig.add_trace(go.Bar(
                x=epochs, y=counts, base=base.copy(), name=f"vetoed by {guard}", offsetgroup="vetoed",
                legendgroup=guard, marker_color=guard_color(guard), showlegend=guard not in in_legend,
                customdata=hover,
                hovertemplate=f"epoch %{{x}}: %{{y}} relabels vetoed by {guard} ({BY_NAME[guard].flag if guard in BY_NAME else guard})"
                              "<br>would have left: %{customdata}<extra>" + name + "</extra>"),
                row=1, col=col)
            in_legend.add(guard)
            base += counts
        top = max(top, float(base.max(initial=0)), float(relabels.max(initial=0)))
        fig.update_xaxes(title_text="epoch", dtick=1 if len(epochs) <= 20 else None, row=1, col=col)
    fig.update_yaxes(title_text="relabels", rangemode="tozero", row=1, col=1)
    if top == 0:
        fig.update_yaxes(range=[0, 1], dtick=1)  # plotly would draw -1 to 1
    fig.update_layout(barmode="group", bargap=0.2, legend_traceorder="normal",
                      legend=dict(orientation="h", yref="container", y=0, yanchor="bottom", x=0))
    lines = [_totals(tables[n], metrics[n], guards[n], n if len(names) > 1 else None) for n in guarded]
    if unguarded:
        lines.append(f"{', '.join(unguarded)}: {NO_GUARD}")
    return finish(fig, head, subtitle="<br>".join(lines), height=400 + LEGEND_PX,
                  header_px=extra_px + (24 if len(guarded) > 1 else 0))


def _epochs(table: pd.DataFrame, metrics: pd.DataFrame) -> np.ndarray:
    """The epochs a panel shows: every committed one (the metrics'), and any the vetoes have."""
    return np.union1d(metrics["epoch"].to_numpy(np.int64), table["epoch"].to_numpy(np.int64))


def _per_epoch(table: pd.DataFrame, guard: str, epochs: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """``guard``'s vetoes per epoch (0 where none is recorded) and, per epoch, the classes
    the refused relabels would have left, most first ("anger 5, sadness 2")."""
    rows = table[(table["guard"] == guard) & (table["vetoed"] > 0)]
    counts = rows.groupby("epoch")["vetoed"].sum().reindex(epochs).fillna(0).to_numpy(float)
    hover = []
    for epoch in epochs:
        per_class = rows[rows["epoch"] == epoch].sort_values(["vetoed", "class_id"], ascending=[False, True])
        said = [f"{c} {int(v)}" for c, v in zip(per_class["class_name"], per_class["vetoed"])]
        more = len(said) - HOVER_CLASSES
        hover.append(", ".join(said[:HOVER_CLASSES]) + (f" and {more} more" if more > 0 else "") if said else "—")
    return counts, hover


def _totals(table: pd.DataFrame, metrics: pd.DataFrame, guards: Sequence[str], name: str | None) -> str:
    """One run's totals for the subtitle: vetoed per guard (every guard on, zeros too) and
    the relabel events that went through."""
    by_guard = table.groupby("guard")["vetoed"].sum()
    parts = ", ".join(f"{g} {int(by_guard.get(g, 0)):,}" for g in guards)
    line = (f"{int(by_guard.sum()):,} relabels vetoed ({parts}) · "
            f"{int(metrics['relabels'].fillna(0).sum()):,} went through")
    return f"{name}: {line}" if name else line
