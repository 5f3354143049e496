"""Training curves: test/train accuracy (one run or several overlaid), relabels per epoch,
per-class test accuracy and the test confusion matrix."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from relabscope.plot._style import (as_list, class_colours, finish, note_figure,
                                    ordered_names, run_colour, silent_message, title, unique_names)


def _metrics_by_name(runs) -> tuple[dict[str, pd.DataFrame], dict[str, bool], dict[str, str]]:
    runs = as_list(runs)
    names = unique_names([r.name for r in runs])
    return ({n: r.metrics() for n, r in zip(names, runs)},
            {n: r.relabels_at_all for n, r in zip(names, runs)},
            {n: r.method for n, r in zip(names, runs)})


# ---------------------------------------------------------------- accuracy
def accuracy_curves(runs, *, train: bool = True) -> go.Figure:
    """Test accuracy (solid) and training accuracy against labels in effect (dashed) per
    epoch, for one run or several overlaid."""
    metrics, _, _ = _metrics_by_name(runs)
    return accuracy_curves_figure(metrics, train=train)


def accuracy_curves_figure(metrics: Mapping[str, pd.DataFrame], *, train: bool = True,
                           title_text: str | None = None) -> go.Figure:
    """``metrics``: run name -> DataFrame with epoch, test_acc (and train_acc)."""
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
def relabels_per_epoch(runs) -> go.Figure:
    """Relabel events per epoch, one bar group per run; runs whose method cannot relabel
    say so instead of drawing zero bars."""
    metrics, can, methods = _metrics_by_name(runs)
    return relabels_per_epoch_figure(metrics, relabels_at_all=can, methods=methods)


def relabels_per_epoch_figure(metrics: Mapping[str, pd.DataFrame], *,
                              relabels_at_all: Mapping[str, bool] | bool = True,
                              methods: Mapping[str, str] | None = None,
                              title_text: str | None = None) -> go.Figure:
    """``metrics``: run name -> DataFrame with epoch and relabels."""
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
def class_accuracy(run) -> go.Figure:
    """Per-class test accuracy per epoch (class colours)."""
    return class_accuracy_figure(run.metrics(), run.class_names, run_name=run.name)


def class_accuracy_figure(metrics: pd.DataFrame, class_names: Sequence[str], *, run_name: str | None = None) -> go.Figure:
    """``metrics``: epoch and ``acc_<class>`` columns."""
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


def confusion(run, epoch: int = -1, *, normalise: bool = True) -> go.Figure:
    """Test confusion matrix at ``epoch`` (rows: given label, columns: prediction)."""
    e = epoch if epoch >= 0 else run.num_epochs + epoch
    return confusion_figure(run.confusion(epoch), normalise=normalise, run_name=run.name, epoch=e)


def confusion_figure(matrix: pd.DataFrame, *, normalise: bool = True, run_name: str | None = None,
                     epoch: int | None = None) -> go.Figure:
    """``matrix``: K x K counts indexed and labelled by class name."""
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
