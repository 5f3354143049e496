"""The paper's Fig. 5: a 2-D t-SNE / UMAP map of the embeddings, coloured by the label in
effect, the given label, the clean label, or any per-sample number (flip-flops, AUM...).

Crosses mark samples whose label in effect differs from their given label."""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from relabscope.plot._style import class_colours, finish, note_figure, ordered_names, title

_LABEL_COLUMNS = {"effect": "label", "label": "label", "given": "given_label", "clean": "clean_label"}
_LABEL_WORDS = {"label": "label in effect", "given_label": "given label", "clean_label": "clean label"}


def projection(run, *, method: str = "umap", epoch: int = -1, classes: Iterable[int] | None = None,
               color: str = "effect", values: pd.Series | None = None, max_points: int | None = 2000,
               seed: int = 0, split: str = "train") -> go.Figure:
    """Paper Fig. 5 for ``run``. ``color``: effect, given, clean, or the name of a column of
    ``run.flipflops()`` / ``run.dynamics()`` (e.g. flipflops, aum_given); or pass ``values``
    (a Series indexed by sample id) and a ``color`` name for the colour bar."""
    e = run.embedding_epoch(epoch)
    head = title(f"{method.upper() if method == 'umap' else 't-SNE'} of the embeddings (epoch {e})", run.name)
    if color == "clean" and run.clean_labels is None:
        return note_figure("clean labels are unknown for this data set", head)
    df = run.project(method=method, epoch=epoch, classes=classes, max_points=max_points, seed=seed, split=split)
    if values is None and color not in _LABEL_COLUMNS and color not in df:
        for table in (run.flipflops, run.dynamics):
            t = table()
            if color in t:
                values = t.set_index("sample_id")[color]
                break
        else:
            raise ValueError(f"color must be effect, given, clean or a flipflops/dynamics column, not {color!r}")
    return projection_figure(df, run.class_names, color=color, values=values, title_text=head)


def projection_figure(df: pd.DataFrame, class_names: Sequence[str], *, color: str = "effect",
                      values: pd.Series | None = None, title_text: str | None = None,
                      run_name: str | None = None) -> go.Figure:
    """``df``: sample_id, x, y, label (in effect), given_label, clean_label (-1 unknown).
    ``color``: effect / given / clean, a column of ``df``, or the name of ``values``
    (indexed by sample_id)."""
    head = title_text or title("Embedding map", run_name)
    class_names = list(class_names)
    name = lambda i: class_names[int(i)] if 0 <= int(i) < len(class_names) else "unknown"  # noqa: E731
    clean = df["clean_label"].to_numpy(np.int64) if "clean_label" in df else np.full(len(df), -1)
    hover = np.column_stack([
        df["sample_id"].to_numpy(), [name(v) for v in df["label"]], [name(v) for v in df["given_label"]],
        [name(v) if v >= 0 else "unknown" for v in clean]])
    template = ("sample %{customdata[0]}<br>in effect %{customdata[1]}<br>given %{customdata[2]}"
                "<br>clean %{customdata[3]}")
    moved = df["label"].to_numpy(np.int64) != df["given_label"].to_numpy(np.int64)
    symbols = np.where(moved, "x", "circle")
    subtitle = None
    fig = go.Figure()
    column = _LABEL_COLUMNS.get(color)
    if column is not None:
        if column == "clean_label" and not (clean >= 0).any():
            return note_figure("clean labels are unknown for this data set", head)
        colours = class_colours(class_names)
        cats = df[column].to_numpy(np.int64)
        for cname in ordered_names(class_names) + ["unknown"]:
            idx = np.flatnonzero([name(v) == cname for v in cats]) if cname == "unknown" else \
                np.flatnonzero(cats == class_names.index(cname))
            if len(idx) == 0:
                continue
            fig.add_trace(go.Scattergl(
                x=df["x"].to_numpy()[idx], y=df["y"].to_numpy()[idx], mode="markers", name=f"{cname} ({len(idx)})",
                marker=dict(color=colours.get(cname, "#bbb"), size=6, opacity=0.75, symbol=symbols[idx].tolist()),
                customdata=hover[idx], hovertemplate=template + "<extra></extra>"))
        legend_title = _LABEL_WORDS[column]
        if column == "label":
            gone = [class_names[c] for c in np.unique(df["given_label"].to_numpy(np.int64))
                    if 0 <= c < len(class_names) and not (cats == c).any()]
            if gone:
                subtitle = "no sample has these labels in effect (relabelled away): " + ", ".join(gone)
    else:
        if values is not None:
            v = pd.Series(values).reindex(df["sample_id"].to_numpy()).to_numpy(float)
            label = color if color not in (None, "") else (getattr(values, "name", None) or "value")
        else:
            v = df[color].to_numpy(float)
            label = color
        fig.add_trace(go.Scattergl(
            x=df["x"], y=df["y"], mode="markers", name=label, showlegend=False,
            marker=dict(color=v, colorscale="Viridis", size=6, opacity=0.8, symbol=symbols.tolist(),
                        colorbar=dict(title=dict(text=label))),
            customdata=np.column_stack([hover, v]),
            hovertemplate=template + "<br>" + label + " %{customdata[4]}<extra></extra>"))
        legend_title = None
    if moved.any():
        fig.add_trace(go.Scattergl(x=[None], y=[None], mode="markers", name="× label in effect ≠ given",
                                   marker=dict(symbol="x", color="#555", size=8)))
    fig.update_xaxes(showticklabels=False, title_text="", zeroline=False, showgrid=False)
    fig.update_yaxes(showticklabels=False, title_text="", zeroline=False, showgrid=False, scaleanchor="x", scaleratio=1)
    fig.update_layout(legend_title_text=legend_title)
    return finish(fig, head, subtitle=subtitle, height=640, width=760)
