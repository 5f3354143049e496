"""Training curves: test/train accuracy (one run or several overlaid), relabels per epoch,
per-class test accuracy and the test confusion matrix."""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from relabscope.plot._style import (Runs, as_list, class_colours, finish, note_figure,
                                    ordered_names, run_colour, silent_message, title, unique_names)

if TYPE_CHECKING:
    from relabscope.analysis.run import Run


def _metrics_by_name(runs: Runs) -> tuple[dict[str, pd.DataFrame], dict[str, bool], dict[str, str]]:
    listed = as_list(runs)
    names = unique_names([r.name for r in listed])
    return ({n: r.metrics() for n, r in zip(names, listed)},
            {n: r.relabels_at_all for n, r in zip(names, listed)},
            {n: r.method for n, r in zip(names, listed)})


# ---------------------------------------------------------------- accuracy
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
    for i, (name, df) in enumerate(metrics.items()):
        colour = run_colour(i)
        x = df["epoch"].to_numpy()
        fig.add_trace(go.Scatter(x=x, y=df["test_acc"], mode="lines+markers", name=f"{name}: test",
                                 line=dict(color=colour, width=2.5), legendgroup=name,
                                 hovertemplate="epoch %{x}<br>test accuracy %{y:.2%}<extra>" + name + "</extra>"))
        if train and "train_acc" in df:
            fig.add_trace(go.Scatter(x=x, y=df["train_acc"], mode="lines", name=f"{name}: train (labels in effect)",
                                     line=dict(color=colour, width=1.5, dash="dash"), legendgroup=name,
                                     hovertemplate="epoch %{x}<br>train accuracy %{y:.2%}<extra>" + name + "</extra>"))
        if len(df):
            last = float(df["test_acc"].iloc[-1])
            fig.add_annotation(x=x[-1], y=last, text=f"{last:.1%}", showarrow=False, xanchor="left",
                               xshift=6, font=dict(color=colour))
    fig.update_xaxes(title_text="epoch", dtick=1 if max((len(d) for d in metrics.values()), default=0) <= 20 else None)
    fig.update_yaxes(title_text="accuracy", tickformat=".0%")
    return finish(fig, title_text or title("Accuracy", list(metrics)), height=450)


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
        fig.add_trace(go.Bar(x=df["epoch"].to_numpy(), y=df["relabels"], name=name, marker_color=run_colour(i),
                             hovertemplate="epoch %{x}: %{y} relabels<extra>" + name + "</extra>"))
    fig.update_layout(barmode="group", showlegend=len(names) > 1)
    fig.update_xaxes(title_text="epoch", dtick=1)
    fig.update_yaxes(title_text="relabel events")
    return finish(fig, head, subtitle=silent_message(silent, methods) if silent else None, height=400)


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
    colours = class_colours(class_names)
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


def confusion(run: Run, epoch: int = -1, *, normalise: bool = True) -> go.Figure:
    """Test confusion matrix at an epoch (rows: given label, columns: prediction).

    Args:
        run: the run.
        epoch: the epoch (negative counts from the last committed one).
        normalise: show each row as shares of its given label (the counts stay in the text).

    Returns:
        The figure.
    """
    e = epoch if epoch >= 0 else run.num_epochs + epoch
    return confusion_figure(run.confusion(epoch), normalise=normalise, run_name=run.name, epoch=e)


def confusion_figure(matrix: pd.DataFrame, *, normalise: bool = True, run_name: str | None = None,
                     epoch: int | None = None) -> go.Figure:
    """Draw :func:`confusion` from a matrix.

    Args:
        matrix: K x K counts, rows and columns by class name (``Run.confusion()``).
        normalise: show each row as shares of its given label.
        run_name: the run's name, for the title.
        epoch: the epoch, for the title.

    Returns:
        The figure.
    """
    order = ordered_names(list(matrix.index))
    m = matrix.loc[order, order].to_numpy().astype(float)
    counts = m.astype(np.int64)
    if normalise:
        rows = m.sum(axis=1, keepdims=True)
        m = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
    text = [[f"{v:.0%}<br>({c})" if normalise else f"{c}" for v, c in zip(rv, rc)] for rv, rc in zip(m, counts)]
    fig = go.Figure(go.Heatmap(z=m, x=order, y=order, colorscale="Blues", text=text, texttemplate="%{text}",
                               zmin=0, zmax=1 if normalise else None,
                               hovertemplate="given %{y}<br>predicted %{x}<br>%{text}<extra></extra>"))
    fig.update_yaxes(title_text="given label", autorange="reversed")
    fig.update_xaxes(title_text="prediction")
    when = f" (epoch {epoch})" if epoch is not None else ""
    return finish(fig, title(f"Test confusion matrix{when}", run_name), height=520, width=620)
