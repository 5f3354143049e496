"""Relabel inconsistency: the paper's Fig. 3 (per sample, the epochs it spent in each
class, for the samples relabelled back and forth most), one sample's label timeline, the
A -> B -> A oscillation matrix, and flip-flop totals of several runs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping, Sequence, SupportsInt

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from relabscope.plot._style import (CLEAN, GIVEN, Runs, as_list, class_colors, finish, never_relabels, note,
                                    note_figure, ordered_names, run_color, silent_message, title,
                                    unique_names)

if TYPE_CHECKING:
    from relabscope.analysis.run import Run


#: room below the flip-flop bars for their legend (two rows of classes)
LEGEND_PX = 60

def _name(class_names: Sequence[str], label: SupportsInt) -> str:
    """The class named by ``label``; "?" when it is missing (NaN, NA) or out of range."""
    try:
        i = int(label)
    except (TypeError, ValueError):
        return "?"
    return class_names[i] if 0 <= i < len(class_names) else "?"


# ---------------------------------------------------------------- Fig. 3
def flipflops(run: Run, *, top: int = 20) -> go.Figure:
    """Paper Fig. 3: the ``top`` samples with the most flip-flops, one horizontal bar each,
    split into the epochs the sample spent in each class.

    Args:
        run: the run.
        top: how many samples.

    Returns:
        The figure (a note when the method never relabels or nothing was relabelled).

    Example:
        >>> import tempfile, relabscope as rs
        >>> run = rs.open_run(rs.example_run(tempfile.mkdtemp() + "/example"))
        >>> fig = rs.plot.flipflops(run, top=4)
        >>> [trace.name for trace in fig.data if trace.type == "bar"]
        ['neutral', 'happiness', 'sadness', 'anger']
        >>> list(fig.data[0].y)  # sample, given label -> label after the last epoch
        ['#0 neutral→happiness', '#1 neutral→happiness', '#2 neutral→happiness', '#3 neutral→happiness']
    """
    if not run.relabels_at_all:
        return note_figure(never_relabels(run.method), title("Most flip-flopping samples", run.name))
    return flipflops_figure(run.flipflops(), run.class_names, top=top, run_name=run.name)


def select_flipflopping(table: pd.DataFrame, top: int) -> pd.DataFrame:
    """The samples a flip-flop view shows: the most flip-flops, then the most relabels.

    Args:
        table: ``Run.flipflops()``.
        top: how many rows.

    Returns:
        At most ``top`` rows of ``table``, relabelled samples only.
    """
    moved = table[table["changes"] > 0]
    order = moved.sort_values(["flipflops", "changes", "sample_id"], ascending=[False, False, True], kind="stable")
    chosen: pd.DataFrame = order.head(top)
    return chosen


def flipflops_figure(table: pd.DataFrame, class_names: Sequence[str], *, top: int = 20,
                     relabels_at_all: bool = True, method: str | None = None,
                     run_name: str | None = None) -> go.Figure:
    """Draw :func:`flipflops` from a table.

    Args:
        table: ``Run.flipflops()`` (sample_id, given_label, final_label, changes,
            flipflops, epochs_<class> per class).
        class_names: the classes, by class id.
        top: how many samples.
        relabels_at_all: whether the method can relabel (False: a note instead).
        method: the method's name, for that note.
        run_name: the run's name, for the title.

    Returns:
        The figure.
    """
    head = title(f"Most flip-flopping samples (top {top}): epochs spent in each class", run_name)
    if not relabels_at_all:
        return note_figure(never_relabels(method), head)
    rows = select_flipflopping(table, top)
    if rows.empty:
        return note_figure("no sample was relabelled", head)
    colours = class_colors(class_names)
    labels = [f"#{int(sid)} {_name(class_names, given)}→{_name(class_names, final)}"
              for sid, given, final in zip(rows["sample_id"].to_numpy(), rows["given_label"].to_numpy(),
                                           rows["final_label"].to_numpy())]
    fig = go.Figure()
    hover_extra = np.column_stack([rows["flipflops"].to_numpy(), rows["changes"].to_numpy()])
    for name in ordered_names(class_names):
        col = f"epochs_{name}"
        if col not in rows:
            continue
        fig.add_trace(go.Bar(
            y=labels, x=rows[col].to_numpy(), orientation="h", name=name, marker_color=colours[name],
            customdata=hover_extra,
            hovertemplate="%{y}<br>" + name + ": %{x} epochs<br>%{customdata[0]} flip-flops, "
                          "%{customdata[1]} relabels<extra></extra>"))
    epoch_cols = [f"epochs_{n}" for n in class_names if f"epochs_{n}" in rows]
    totals = rows[epoch_cols].sum(axis=1).to_numpy()
    fig.add_trace(go.Scatter(
        y=labels, x=totals, mode="text", text=[f" {int(f)} ff / {int(c)} rl" for f, c in hover_extra],
        textposition="middle right", showlegend=False, hoverinfo="skip", textfont=dict(size=11, color="#444")))
    # the legend below the plot: at the right it would cover the longest bar's count
    fig.update_layout(barmode="stack", legend_title_text="label in effect", legend_traceorder="normal", bargap=0.25,
                      legend=dict(orientation="h", yref="container", y=0, yanchor="bottom", x=0))
    fig.update_yaxes(autorange="reversed", title_text="sample (given → final label)", type="category")
    fig.update_xaxes(title_text="epochs", range=[0, float(totals.max()) * 1.3 if len(totals) else 1])
    subtitle = ("no sample flip-flopped; showing the most relabelled" if int(rows["flipflops"].max()) == 0
                else "ff = flip-flops (returns to a label held before) · rl = relabel events")
    return finish(fig, head, subtitle=subtitle, height=max(320, 110 + 26 * len(rows)) + LEGEND_PX)


# ---------------------------------------------------------------- one sample's labels
def label_timeline(run: Run, sample_id: int) -> go.Figure:
    """The label in effect of one sample per epoch, with its given and clean labels.

    Args:
        run: the run.
        sample_id: the sample.

    Returns:
        The figure.
    """
    sid = int(sample_id)
    clean = run.clean_labels
    ev = run.relabel_events()
    return label_timeline_figure(
        run.labels()[:, sid], run.class_names, given=int(run.given_labels[sid]),
        clean=None if clean is None else int(clean[sid]), final=int(run.final_labels()[sid]),
        events=ev[ev["sample_id"] == sid], sample_id=sid, run_name=run.name)


def label_timeline_figure(labels: Sequence[int] | np.ndarray, class_names: Sequence[str], *, given: int,
                          clean: int | None = None, final: int | None = None,
                          events: pd.DataFrame | None = None, sample_id: int | None = None,
                          run_name: str | None = None) -> go.Figure:
    """Draw :func:`label_timeline` from one sample's labels.

    Args:
        labels: the label in effect per epoch (-1: not seen).
        class_names: the classes, by class id.
        given: the given label.
        clean: the clean label, when known.
        final: the label after the last epoch's relabels, drawn one step right of the
            last epoch.
        events: the sample's relabel events, counted in the title.
        sample_id: the sample, for the title.
        run_name: the run's name, for the title.

    Returns:
        The figure.
    """
    effect = np.asarray(labels, dtype=np.int64)
    colours = class_colors(class_names)
    order = ordered_names(class_names)
    n = len(effect)
    x = list(range(n))
    y = [class_names[v] if v >= 0 else None for v in effect]
    if final is not None and final >= 0:
        x.append(n)
        y.append(class_names[final])
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=x, y=y, mode="lines", line=dict(shape="hv", color="#999", width=2),
                             showlegend=False, hoverinfo="skip", connectgaps=False))
    fig.add_trace(go.Scatter(
        x=list(range(n)), y=y[:n], mode="markers", name="label in effect",
        marker=dict(size=12, color=[colours.get(v, "#ccc") if v else "#ccc" for v in y[:n]], line=dict(width=1, color="#333")),
        hovertemplate="epoch %{x}: trained as %{y}<extra></extra>"))
    if final is not None and final >= 0:
        fig.add_trace(go.Scatter(
            x=[n], y=[class_names[final]], mode="markers", name="after the last epoch",
            marker=dict(size=12, symbol="circle-open", color=colours[class_names[final]], line=dict(width=3)),
            hovertemplate="after the last epoch's relabels: %{y}<extra></extra>"))
    span = [-0.5, len(x) - 0.5]
    fig.add_trace(go.Scatter(x=span, y=[class_names[given]] * 2, mode="lines", name=f"given: {class_names[given]}",
                             line=dict(color=GIVEN, width=3, dash="dash"), opacity=0.6, hoverinfo="skip"))
    if clean is not None and clean >= 0:
        fig.add_trace(go.Scatter(x=span, y=[class_names[clean]] * 2, mode="lines", name=f"clean: {class_names[clean]}",
                                 line=dict(color=CLEAN, width=2, dash="dot"), hoverinfo="skip"))
    fig.update_yaxes(type="category", categoryorder="array", categoryarray=order, range=[-0.5, len(order) - 0.5],
                     title_text="class")
    fig.update_xaxes(title_text="epoch", dtick=1 if len(x) <= 30 else None, range=span)
    n_events = 0 if events is None else len(events)
    what = f"Label timeline of sample {sample_id}" if sample_id is not None else "Label timeline"
    return finish(fig, title(f"{what} ({n_events} relabels)", run_name), height=360 + 12 * len(order))


# ---------------------------------------------------------------- A -> B -> A
def oscillation_heatmap(run: Run) -> go.Figure:
    """Counts of A -> B -> A cycles (rows A, columns B): which pairs of classes the
    relabelling cannot settle between.

    Args:
        run: the run.

    Returns:
        The figure (a note when the method never relabels).
    """
    head = title("Oscillations A → B → A", run.name)
    if not run.relabels_at_all:
        return note_figure(never_relabels(run.method), head)
    return oscillation_heatmap_figure(run.oscillation_matrix(), run_name=run.name)


def oscillation_heatmap_figure(matrix: pd.DataFrame, *, relabels_at_all: bool = True, method: str | None = None,
                               run_name: str | None = None) -> go.Figure:
    """Draw :func:`oscillation_heatmap` from a matrix.

    Args:
        matrix: ``Run.oscillation_matrix()``: K x K counts, index A (the label returned
            to), columns B (the detour).
        relabels_at_all: whether the method can relabel (False: a note instead).
        method: the method's name, for that note.
        run_name: the run's name, for the title.

    Returns:
        The figure.
    """
    head = title("Oscillations A → B → A", run_name)
    if not relabels_at_all:
        return note_figure(never_relabels(method), head)
    order = ordered_names(list(matrix.index))
    m = matrix.loc[order, order].to_numpy()
    fig = go.Figure(go.Heatmap(z=m, x=order, y=order, colorscale="Oranges", text=m, texttemplate="%{text}",
                               zmin=0, hovertemplate="%{y} → %{x} → %{y}: %{z}<extra></extra>"))
    fig.update_yaxes(title_text="A (label held, left and returned to)", autorange="reversed")
    fig.update_xaxes(title_text="B (detour)")
    if int(np.nansum(m)) == 0:
        note(fig, "no A → B → A cycle happened")
    return finish(fig, head, height=520, width=640)


# ---------------------------------------------------------------- several runs
def flipflop_totals(runs: Runs) -> go.Figure:
    """Relabel events, relabelled samples, flip-flop events and flip-flopping samples per run.

    Args:
        runs: one run, or several side by side.

    Returns:
        The figure (a note when no run can relabel).
    """
    listed = as_list(runs)
    names = unique_names([r.name for r in listed])
    return flipflop_totals_figure({n: r.flipflops() for n, r in zip(names, listed)},
                                  relabels_at_all={n: r.relabels_at_all for n, r in zip(names, listed)},
                                  methods={n: r.method for n, r in zip(names, listed)})


def flipflop_totals_table(tables: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """The numbers :func:`flipflop_totals` draws, as a table.

    Args:
        tables: run name -> ``Run.flipflops()``.

    Returns:
        One row per run: relabel events, relabelled samples, flip-flop events,
        flip-flopping samples.
    """
    totals: pd.DataFrame = pd.DataFrame({
        name: {"relabel events": int(t["changes"].sum()), "relabelled samples": int((t["changes"] > 0).sum()),
               "flip-flop events": int(t["flipflops"].sum()), "flip-flopping samples": int((t["flipflops"] > 0).sum())}
        for name, t in tables.items()}).T
    return totals


def flipflop_totals_figure(tables: Mapping[str, pd.DataFrame], *,
                           relabels_at_all: Mapping[str, bool] | bool = True,
                           methods: Mapping[str, str] | None = None) -> go.Figure:
    """Draw :func:`flipflop_totals` from tables.

    Args:
        tables: run name -> ``Run.flipflops()``.
        relabels_at_all: whether each run's method can relabel (one bool for all).
        methods: run name -> method name, for the note on runs that cannot relabel.

    Returns:
        The figure (a note when no run can relabel).
    """
    names = list(tables)
    can = {n: relabels_at_all for n in names} if isinstance(relabels_at_all, bool) else dict(relabels_at_all)
    methods = methods or {}
    head = title("Relabels and flip-flops", names)
    drawn = [n for n in names if can.get(n, True)]
    silent = [n for n in names if n not in drawn]
    if not drawn:
        return note_figure(silent_message(silent, methods), head)
    totals = flipflop_totals_table({n: tables[n] for n in drawn})
    fig = go.Figure()
    for i, name in enumerate(names):
        if name not in drawn:
            continue
        row = totals.loc[name]
        # cliponaxis off: the label above the tallest bar sits above the plot area, not cut by it
        fig.add_trace(go.Bar(x=list(row.index), y=row.to_numpy(), name=name, marker_color=run_color(i),
                             text=row.to_numpy(), textposition="outside", cliponaxis=False,
                             hovertemplate="%{x}: %{y}<extra>" + name + "</extra>"))
    fig.update_layout(barmode="group")
    fig.update_yaxes(title_text="count")
    return finish(fig, head, subtitle=silent_message(silent, methods) if silent else None, height=420)
