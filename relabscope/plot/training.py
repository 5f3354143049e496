"""Training curves: test/train accuracy (one run or several overlaid), relabels per epoch,
per-class test accuracy and the test confusion matrix."""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from relabscope.deprecation import warn_renamed
from relabscope.plot._style import (Runs, as_list, class_colors, finish, note_figure,
                                    ordered_names, run_color, silent_message, title, unique_names)

if TYPE_CHECKING:
    from relabscope.analysis.run import Run


def _metrics_by_name(runs: Runs) -> tuple[dict[str, pd.DataFrame], dict[str, bool], dict[str, str]]:
    listed = as_list(runs)
    names = unique_names([r.name for r in listed])
    return ({n: r.metrics() for n, r in zip(names, listed)},
            {n: r.relabels_at_all for n, r in zip(names, listed)},
            {n: r.method for n, r in zip(names, listed)})


# ---------------------------------------------------------------- accuracy
#: the accuracy axis spans at least this much (a flat curve still gets distinct ticks)
MIN_ACCURACY_SPAN = 0.1
#: an end label's height and the plot area's (the figure's 450 px less title and axes)
END_LABEL_PX = 16
ACCURACY_PLOT_PX = 300
def accuracy_curves(runs: Runs, *, train: bool = True) -> go.Figure:
    """Test accuracy (solid) and training accuracy against labels in effect (dashed) per
    epoch, for one run or several overlaid.

    Args:
        runs: one run, or several to overlay.
        train: draw the training accuracy too.

    Returns:
        The figure, the last test accuracy written next to each curve.

    Example:
        >>> import tempfile, relabscope as rs
        >>> run = rs.open_run(rs.example_run(tempfile.mkdtemp() + "/example"))
        >>> fig = rs.plot.accuracy_curves(run)
        >>> fig.layout.title.text, [trace.name for trace in fig.data]
        ('Accuracy — example', ['example: test', 'example: train (labels in effect)'])
    """
    metrics, _, _ = _metrics_by_name(runs)
    return accuracy_curves_figure(metrics, train=train)


def accuracy_curves_figure(metrics: Mapping[str, pd.DataFrame], *, train: bool = True,
                           title_text: str | None = None) -> go.Figure:
    """Draw :func:`accuracy_curves` from tables.

    Args:
        metrics: run name -> ``Run.metrics()`` (epoch, test_acc and, optionally, train_acc).
        train: draw the training accuracy too.
        title_text: the title; default "Accuracy" and the run names.

    Returns:
        The figure.
    """
    fig = go.Figure()
    ends = []
    for i, (name, df) in enumerate(metrics.items()):
        colour = run_color(i)
        x = df["epoch"].to_numpy()
        fig.add_trace(go.Scatter(x=x, y=df["test_acc"], mode="lines+markers", name=f"{name}: test",
                                 line=dict(color=colour, width=2.5), legendgroup=name,
                                 hovertemplate="epoch %{x}<br>test accuracy %{y:.2%}<extra>" + name + "</extra>"))
        if train and "train_acc" in df:
            fig.add_trace(go.Scatter(x=x, y=df["train_acc"], mode="lines", name=f"{name}: train (labels in effect)",
                                     line=dict(color=colour, width=1.5, dash="dash"), legendgroup=name,
                                     hovertemplate="epoch %{x}<br>train accuracy %{y:.2%}<extra>" + name + "</extra>"))
        if len(df) and pd.notna(df["test_acc"].iloc[-1]):
            ends.append((x[-1], float(df["test_acc"].iloc[-1]), colour))
    shown = [df[c].to_numpy(float) for df in metrics.values() for c in ("test_acc", "train_acc")
             if c in df and (c == "test_acc" or train)]
    values = np.concatenate(shown) if shown else np.zeros(0)
    values = values[np.isfinite(values)]
    lo, hi = (float(values.min()), float(values.max())) if len(values) else (0.0, 1.0)
    if hi - lo < MIN_ACCURACY_SPAN:  # e.g. one epoch: plotly's ticks would repeat "17%, 17%, 16%"
        mid = min(max((hi + lo) / 2, MIN_ACCURACY_SPAN / 2), 1 - MIN_ACCURACY_SPAN / 2)
        lo, hi = mid - MIN_ACCURACY_SPAN / 2 - 0.01, mid + MIN_ACCURACY_SPAN / 2 + 0.01
        fig.update_yaxes(range=[lo, hi])
    epochs = max((len(d) for d in metrics.values()), default=0)
    if epochs <= 2:  # plotly would centre one epoch between -1 and 1
        fig.update_xaxes(range=[-0.3, 1.3])
    # end labels at least a line apart: two runs ending at 90.8 % and 89.7 % must not overlap
    gap = END_LABEL_PX / ACCURACY_PLOT_PX * (hi - lo) * 1.1
    for (x_end, acc, colour), y in zip(ends, spread([acc for _, acc, _ in ends], gap)):
        fig.add_annotation(x=x_end, y=y, text=f"{acc:.1%}", showarrow=False, xanchor="left",
                           xshift=6, font=dict(color=colour))
    fig.update_xaxes(title_text="epoch", dtick=1 if epochs <= 20 else None)
    fig.update_yaxes(title_text="accuracy", tickformat=".0%")
    # the legend below: at the right it takes half of a half-page cell
    fig.update_layout(legend=dict(orientation="h", yref="container", y=0, yanchor="bottom", x=0))
    return finish(fig, title_text or title("Accuracy", list(metrics)), height=450 + 20 * len(metrics))


def spread(values: Sequence[float], gap: float) -> list[float]:
    """``values`` moved apart, as little as possible, until neighbours are at least
    ``gap`` apart; the order is kept and each cluster stays centred where it was.

    >>> [round(v, 3) for v in spread([0.908, 0.897, 0.5], gap=0.03)]
    [0.918, 0.888, 0.5]
    """
    order = sorted(range(len(values)), key=lambda i: values[i])
    groups: list[list[int]] = []
    for i in order:  # grow clusters bottom up; a cluster is centred on its members' mean
        groups.append([i])
        while len(groups) > 1:
            below, above = groups[-2], groups[-1]
            top_of_below = _centre(values, below) + gap * (len(below) - 1) / 2
            bottom_of_above = _centre(values, above) - gap * (len(above) - 1) / 2
            if bottom_of_above - top_of_below >= gap:
                break
            groups[-2:] = [below + above]
    out = list(map(float, values))
    for g in groups:
        start = _centre(values, g) - gap * (len(g) - 1) / 2
        for k, i in enumerate(g):
            out[i] = start + k * gap
    return out


def _centre(values: Sequence[float], members: list[int]) -> float:
    return sum(values[i] for i in members) / len(members)


# ---------------------------------------------------------------- relabels
def relabels_per_epoch(runs: Runs) -> go.Figure:
    """Relabel events per epoch, one bar group per run; runs whose method cannot relabel
    say so instead of drawing zero bars.

    Args:
        runs: one run, or several side by side.

    Returns:
        The figure (a note when no run can relabel).
    """
    metrics, can, methods = _metrics_by_name(runs)
    return relabels_per_epoch_figure(metrics, relabels_at_all=can, methods=methods)


def relabels_per_epoch_figure(metrics: Mapping[str, pd.DataFrame], *,
                              relabels_at_all: Mapping[str, bool] | bool = True,
                              methods: Mapping[str, str] | None = None,
                              title_text: str | None = None) -> go.Figure:
    """Draw :func:`relabels_per_epoch` from tables.

    Args:
        metrics: run name -> ``Run.metrics()`` (epoch and relabels).
        relabels_at_all: whether each run's method can relabel (one bool for all).
        methods: run name -> method name, for the note on runs that cannot relabel.
        title_text: the title; default "Relabel events per epoch" and the run names.

    Returns:
        The figure (a note when no run can relabel).
    """
    names = list(metrics)
    can = {n: relabels_at_all for n in names} if isinstance(relabels_at_all, bool) else dict(relabels_at_all)
    methods = methods or {}
    head = title_text or title("Relabel events per epoch", names)
    drawn = [n for n in names if can.get(n, True)]
    silent = [n for n in names if not can.get(n, True)]
    if not drawn:
        return note_figure(silent_message(silent, methods), head)
    fig = go.Figure()
    for i, name in enumerate(names):
        if name not in drawn:
            continue
        df = metrics[name]
        fig.add_trace(go.Bar(x=df["epoch"].to_numpy(), y=df["relabels"], name=name, marker_color=run_color(i),
                             hovertemplate="epoch %{x}: %{y} relabels<extra>" + name + "</extra>"))
    fig.update_layout(barmode="group", showlegend=len(names) > 1)
    fig.update_xaxes(title_text="epoch", dtick=1)
    fig.update_yaxes(title_text="relabel events", rangemode="tozero")
    none_yet = not any(metrics[n]["relabels"].fillna(0).gt(0).any() for n in drawn)
    if none_yet:
        fig.update_yaxes(range=[0, 1], dtick=1)  # plotly would draw -1 to 1
    notes = [silent_message(silent, methods)] if silent else []
    if none_yet:
        notes.append("no relabel event in the epochs so far")
    return finish(fig, head, subtitle=" · ".join(notes) or None, height=400)


# ---------------------------------------------------------------- per class
def class_accuracy(run: Run) -> go.Figure:
    """Per-class test accuracy per epoch (class colours): a class that relabelling empties
    is often one the model stops predicting.

    Args:
        run: the run.

    Returns:
        The figure.
    """
    return class_accuracy_figure(run.metrics(), run.class_names, run_name=run.name)


def class_accuracy_figure(metrics: pd.DataFrame, class_names: Sequence[str], *, run_name: str | None = None) -> go.Figure:
    """Draw :func:`class_accuracy` from a table.

    Args:
        metrics: ``Run.metrics()`` (epoch and ``acc_<class>`` columns).
        class_names: the classes, by class id.
        run_name: the run's name, for the title.

    Returns:
        The figure.
    """
    colours = class_colors(class_names)
    fig = go.Figure()
    x = metrics["epoch"].to_numpy()
    for name in ordered_names(class_names):
        col = f"acc_{name}"
        if col not in metrics:
            continue
        fig.add_trace(go.Scatter(x=x, y=metrics[col], name=name, mode="lines+markers",
                                 line=dict(color=colours[name]),
                                 hovertemplate="epoch %{x}: %{y:.1%}<extra>" + name + "</extra>"))
    fig.update_xaxes(title_text="epoch", dtick=1 if len(x) <= 20 else None)
    fig.update_yaxes(title_text="test accuracy", tickformat=".0%", range=[-0.02, 1.02])
    return finish(fig, title("Per-class test accuracy", run_name), height=420)


def confusion(run: Run, epoch: int = -1, *, normalize: bool = True, normalise: bool | None = None) -> go.Figure:
    """Test confusion matrix at an epoch (rows: given label, columns: prediction).

    Args:
        run: the run.
        epoch: the epoch (negative counts from the last committed one).
        normalize: show each row as shares of its given label (the counts stay in the text).
        normalise: deprecated spelling of ``normalize``.

    Returns:
        The figure.
    """
    e = epoch if epoch >= 0 else run.num_epochs + epoch
    if normalise is not None:
        warn_renamed("confusion(normalise=)", "normalize=")
        normalize = normalise
    return confusion_figure(run.confusion(epoch), normalize=normalize, run_name=run.name, epoch=e)


def confusion_figure(matrix: pd.DataFrame, *, normalize: bool = True, run_name: str | None = None,
                     epoch: int | None = None) -> go.Figure:
    """Draw :func:`confusion` from a matrix.

    Args:
        matrix: K x K counts, rows and columns by class name (``Run.confusion()``).
        normalize: show each row as shares of its given label.
        run_name: the run's name, for the title.
        epoch: the epoch, for the title.

    Returns:
        The figure.
    """
    order = ordered_names(list(matrix.index))
    m = matrix.loc[order, order].to_numpy().astype(float)
    counts = m.astype(np.int64)
    if normalize:
        rows = m.sum(axis=1, keepdims=True)
        m = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
    text = [[f"{v:.0%}<br>({c})" if normalize else f"{c}" for v, c in zip(rv, rc)] for rv, rc in zip(m, counts)]
    fig = go.Figure(go.Heatmap(z=m, x=order, y=order, colorscale="Blues", text=text, texttemplate="%{text}",
                               zmin=0, zmax=1 if normalize else None,
                               hovertemplate="given %{y}<br>predicted %{x}<br>%{text}<extra></extra>"))
    fig.update_yaxes(title_text="given label", autorange="reversed")
    fig.update_xaxes(title_text="prediction")
    when = f" (epoch {epoch})" if epoch is not None else ""
    return finish(fig, title(f"Test confusion matrix{when}", run_name), height=520, width=620)
