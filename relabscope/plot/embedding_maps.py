"""The paper's Fig. 5: a 2-D t-SNE / UMAP map of the embeddings, coloured by the label in
effect, the given label, the clean label, or any per-sample number (flip-flops, AUM...).

Crosses mark samples whose label in effect differs from their given label."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Sequence, SupportsInt

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from relabscope.plot._style import class_colors, finish, note_figure, ordered_names, title
from relabscope.plot.caveats import embeddings_note

if TYPE_CHECKING:
    from relabscope.analysis.projection import ProjectionMethod
    from relabscope.analysis.run import Run

_LABEL_COLUMNS = {"effect": "label", "label": "label", "given": "given_label", "clean": "clean_label"}
_LABEL_WORDS = {"label": "label in effect", "given_label": "given label", "clean_label": "clean label"}
#: how a map's title names its colouring when it is not the label in effect (a report shows
#: several maps of one run side by side)
_COLOUR_WORDS = {"given": "given label", "clean": "clean label", "flipflops": "flip-flops"}
#: above this many points, hovering shows the sample id only (select points to list their
#: labels): four strings per point made a 287,651-point map 16 MiB of JSON and 6 s to build
HOVER_DETAIL_POINTS = 50_000
#: plotly's marker symbol numbers (numbers travel as a binary array, names as strings)
_CIRCLE, _CROSS = 0, 4
#: how titles name each projection method
PROJECTION_NAMES = {"umap": "UMAP", "tsne": "t-SNE", "pca": "PCA"}


def projection(run: Run, *, method: ProjectionMethod = "umap", epoch: int = -1,
               classes: Iterable[int] | None = None, color: str = "effect", values: pd.Series | None = None,
               max_points: int | None = 2000, seed: int = 0, split: str = "train") -> go.Figure:
    """Paper Fig. 5: a 2-D map of the embeddings (``Run.project``), one colour per class;
    crosses mark samples whose label in effect differs from their given label.

    Args:
        run: the run.
        method: "umap", "tsne" or "pca".
        epoch: as in ``Run.embedding_epoch`` (-1: the latest epoch that kept embeddings).
        classes: class ids to keep (by label in effect); None keeps all.
        color: "effect", "given", "clean", or a column of ``run.flipflops()`` /
            ``run.dynamics()`` (e.g. flipflops, aum_given) drawn on a colour scale; with
            ``values``, the colour bar's name.
        values: a number per sample (a Series indexed by sample id) to colour by.
        max_points: stratified subsample to at most this many points; None keeps all.
        seed: the random state of the subsample and the map.
        split: "train", "test" or "all".

    Returns:
        The figure (a note for "clean" without clean labels).

    Raises:
        ValueError: ``color`` names no label and no column.

    Example:
        >>> import tempfile, relabscope as rs
        >>> run = rs.open_run(rs.example_run(tempfile.mkdtemp() + "/example"))
        >>> fig = rs.plot.projection(run, method="tsne")
        >>> fig.layout.title.text
        't-SNE of the embeddings (epoch 4) — example'
        >>> [trace.name for trace in fig.data]  # "anger" was relabelled away
        ['neutral (24)', 'happiness (34)', 'sadness (6)', '× label in effect ≠ given']
    """
    e = run.embedding_epoch(epoch)
    by = "" if color in ("effect", "label") else f", by {_COLOUR_WORDS.get(color, color.replace('_', ' '))}"
    head = title(f"{PROJECTION_NAMES[method]} of the embeddings (epoch {e}){by}", run.name)
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
    return projection_figure(df, run.class_names, color=color, values=values, title_text=head, classes=classes,
                             caveat=embeddings_note(run, [e]))


def projection_figure(df: pd.DataFrame, class_names: Sequence[str], *, color: str = "effect",
                      values: pd.Series | None = None, title_text: str | None = None,
                      run_name: str | None = None, caveat: str | None = None,
                      classes: Iterable[int] | None = None, hover_labels: bool = True) -> go.Figure:
    """Draw :func:`projection` from a map.

    Args:
        df: ``Run.project()`` (sample_id, x, y, label (in effect), given_label, clean_label
            with -1 unknown).
        class_names: the classes, by class id.
        color: "effect", "given", "clean", a column of ``df``, or the name of ``values``.
        values: a number per sample (a Series indexed by sample id) to colour by.
        title_text: the title; default "Embedding map" and the run's name.
        run_name: the run's name, for the default title.
        caveat: what the figure must say about its data (the pass the embeddings come from).
        classes: the classes ``df`` was filtered to (by label in effect), if any: only they
            can be named as relabelled away (other given labels of the shown points are not).
        hover_labels: plotly's hover label per point. A host that shows a card of its own
            (the dashboard's map) passes False: each point then carries its sample id alone
            (``customdata[0]``, an int in a plain JSON list, which Dash's hover, click and
            selection events can read) and the figure says nothing about hovering.

    Returns:
        The figure (a note for "clean" without clean labels).
    """
    head = title_text or title("Embedding map", run_name)
    class_names = list(class_names)

    def name(i: SupportsInt) -> str:
        return class_names[int(i)] if 0 <= int(i) < len(class_names) else "unknown"

    clean = df["clean_label"].to_numpy(np.int64) if "clean_label" in df else np.full(len(df), -1)
    # a host's card reads the ids through Dash's events, which index the figure's customdata
    # as sent: a plain list (object dtype), since a typed array's spec cannot be indexed
    hover, template, subtitle = _hover(df, clean, name) if hover_labels else \
        (df["sample_id"].to_numpy().astype(np.int64).astype(object)[:, None], "", None)
    moved = df["label"].to_numpy(np.int64) != df["given_label"].to_numpy(np.int64)
    symbols = np.where(moved, _CROSS, _CIRCLE)
    fig = go.Figure()
    column = _LABEL_COLUMNS.get(color)
    if column is not None:
        if column == "clean_label" and not (clean >= 0).any():
            return note_figure("clean labels are unknown for this data set", head)
        colours = class_colors(class_names)
        cats = df[column].to_numpy(np.int64)
        for cname in ordered_names(class_names) + ["unknown"]:
            idx = np.flatnonzero([name(v) == cname for v in cats]) if cname == "unknown" else \
                np.flatnonzero(cats == class_names.index(cname))
            if len(idx) == 0:
                continue
            fig.add_trace(go.Scattergl(
                x=df["x"].to_numpy()[idx], y=df["y"].to_numpy()[idx], mode="markers", name=f"{cname} ({len(idx)})",
                marker=dict(color=colours.get(cname, "#bbb"), size=6, opacity=0.75, symbol=symbols[idx]),
                customdata=hover[idx], hovertemplate=template + "<extra></extra>"))
        legend_title = _LABEL_WORDS[column]
        if column == "label":
            candidates = np.unique(df["given_label"].to_numpy(np.int64)) if classes is None else \
                np.intersect1d(np.unique(df["given_label"].to_numpy(np.int64)), list(classes))
            gone = [class_names[c] for c in candidates if 0 <= c < len(class_names) and not (cats == c).any()]
            if gone:
                subtitle = " · ".join(p for p in (
                    subtitle, "no sample has these labels in effect (relabelled away): " + ", ".join(gone)) if p)
    else:
        if values is not None:
            v = pd.Series(values).reindex(df["sample_id"].to_numpy()).to_numpy(float)
            label = color if color not in (None, "") else (getattr(values, "name", None) or "value")
        else:
            v = df[color].to_numpy(float)
            label = color
        fig.add_trace(go.Scattergl(
            x=df["x"], y=df["y"], mode="markers", name=label, showlegend=False,
            marker=dict(color=v, colorscale="Viridis", size=6, opacity=0.8, symbol=symbols,
                        colorbar=dict(title=dict(text=label))),
            customdata=np.column_stack([hover, v]),
            hovertemplate=template + f"<br>{label} %{{customdata[{hover.shape[1]}]}}<extra></extra>"))
        legend_title = None
        # the colour bar takes the legend's corner: the legend (the crosses' key) goes below
        fig.update_layout(legend=dict(orientation="h", x=0, y=-0.02, yanchor="top"))
    if moved.any():
        fig.add_trace(go.Scattergl(x=[None], y=[None], mode="markers", name="× label in effect ≠ given",
                                   marker=dict(symbol="x", color="#555", size=8)))
    fig.update_xaxes(showticklabels=False, title_text="", zeroline=False, showgrid=False)
    fig.update_yaxes(showticklabels=False, title_text="", zeroline=False, showgrid=False, scaleanchor="x", scaleratio=1)
    fig.update_layout(legend_title_text=legend_title)
    if not hover_labels:  # hover events still fire for the host's card
        fig.update_traces(hoverinfo="none", hovertemplate=None)
    subtitle = " · ".join(p for p in (subtitle, caveat) if p) or None
    return finish(fig, head, subtitle=subtitle, height=640, width=760)


def _hover(df: pd.DataFrame, clean: np.ndarray, name: Any) -> tuple[np.ndarray, str, str | None]:
    """Per-point hover data, its template and a note on it: the sample id and its three
    labels by name; above ``HOVER_DETAIL_POINTS`` points, the sample id alone (a number
    array, sent in binary), since names per point would multiply the page's size."""
    sample = df["sample_id"].to_numpy()
    if len(df) > HOVER_DETAIL_POINTS:
        return (sample.astype(np.int32)[:, None], "sample %{customdata[0]}",
                f"{len(df):,} points: hover shows the sample id; select points to list their labels")
    hover = np.column_stack([
        sample, [name(v) for v in df["label"]], [name(v) for v in df["given_label"]],
        [name(v) if v >= 0 else "unknown" for v in clean]])
    return (hover, "sample %{customdata[0]}<br>in effect %{customdata[1]}<br>given %{customdata[2]}"
                   "<br>clean %{customdata[3]}", None)
