"""Distances to class centers: the paper's Fig. 1/4 (one sample's distance to every class
mean, before and after a relabel) and Table 2 (per class, mean +- std distance of the
samples to their class center) for one run or several side by side."""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Literal, Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from relabscope.plot._style import (CLEAN, EFFECT, GIVEN, OTHER, Runs, as_list, class_colors, finish,
                                    note_figure, ordered_names, panel_titles, run_color, title, unique_names)
from relabscope.plot.caveats import embeddings_note

if TYPE_CHECKING:
    from relabscope.analysis.run import LabelKind, Run

#: a table's ``labels`` argument, in words
LABEL_WORDS = {"effect": "labels in effect", "given": "given labels", "clean": "clean labels"}
#: "raw": the model's embedding units; "relative": divided by the mean distance between class means
DistanceScale = Literal["raw", "relative"]


# ---------------------------------------------------------------- Fig. 1 / 4
def distance_bars(run: Run, sample_id: int, epochs: Iterable[int] | None = None, *,
                  scale: DistanceScale = "raw") -> go.Figure:
    """Paper Fig. 1/4: the sample's distance to every class mean around its relabel, one
    panel per epoch; bars coloured by role (given label, label in effect, others; the clean
    label outlined).

    Args:
        run: the run.
        sample_id: the sample.
        epochs: the epochs to show; default: before its first relabel, just after it and
            the last epoch.
        scale: "raw" (the model's embedding units, as the paper draws them) or "relative"
            (divided by the epoch's mean distance between class means: compares across
            runs and epochs).

    Returns:
        The figure.

    Example:
        >>> import tempfile, relabscope as rs
        >>> run = rs.open_run(rs.example_run(tempfile.mkdtemp() + "/example"))
        >>> fig = rs.plot.distance_bars(run, 0)
        >>> fig.layout.title.text
        'Distance to class centers, sample 0 — example'
        >>> [a.text.split("<br>")[0] for a in fig.layout.annotations if a.name != "nearest"]  # one panel per epoch
        ['epoch 2', 'epoch 3', 'epoch 4']
    """
    sid = int(sample_id)
    profile = run.distance_profile(sid, epochs)
    ev = run.relabel_events()
    return distance_bars_figure(profile, events=ev[ev["sample_id"] == sid], class_names=run.class_names,
                                sample_id=sid, run_name=run.name, scale=scale,
                                caveat=embeddings_note(run, sorted(set(profile["epoch"].tolist()))))


def bar_colors(profile: pd.DataFrame) -> list[str]:
    """Given label green, label in effect (when not the given one) amber, others blue."""
    return [GIVEN if g else EFFECT if e else OTHER
            for g, e in zip(profile["is_given"].to_numpy(bool), profile["is_effect"].to_numpy(bool))]


def _event_text(events: pd.DataFrame | None, class_names: Sequence[str], limit: int = 4) -> str:
    if events is None or len(events) == 0:
        return "never relabelled"
    first = events.sort_values(["epoch"], kind="stable").head(limit)
    parts = [f"{class_names[int(old)]} → {class_names[int(new)]} in epoch {int(epoch)}"
             for old, new, epoch in zip(first["old"].to_numpy(), first["new"].to_numpy(), first["epoch"].to_numpy())]
    more = f" (+{len(events) - limit} more)" if len(events) > limit else ""
    return "relabelled " + ", ".join(parts) + more


def distance_bars_figure(profile: pd.DataFrame, *, events: pd.DataFrame | None = None,
                         class_names: Sequence[str] | None = None, sample_id: int | None = None,
                         run_name: str | None = None, scale: DistanceScale = "raw",
                         caveat: str | None = None) -> go.Figure:
    """Draw :func:`distance_bars` from a distance profile.

    Args:
        profile: ``Run.distance_profile()`` (epoch, class_id, class_name, distance,
            is_given, is_effect, is_clean, label_in_effect).
        events: the sample's relabel events (epoch, old, new), for the subtitle.
        class_names: the classes, by class id; default: those in ``profile``.
        sample_id: the sample, for the title.
        run_name: the run's name, for the title.
        scale: "raw" draws ``distance``, "relative" ``relative_distance``.
        caveat: what the figure must say about its data (the pass the embeddings come from).

    Returns:
        The figure.
    """
    column = "relative_distance" if scale == "relative" else "distance"
    if class_names is None:
        class_names = list(profile.drop_duplicates("class_id").sort_values("class_id")["class_name"])
    class_names = list(class_names)
    order = ordered_names(class_names)
    epochs = list(dict.fromkeys(int(e) for e in profile["epoch"]))
    moves: dict[int, list[str]] = {}  # epoch -> the new label of each relabel in it
    if events is not None:
        for epoch, new in zip(events["epoch"].to_numpy(), events["new"].to_numpy()):
            moves.setdefault(int(epoch), []).append(class_names[int(new)])
    sub_titles, unmeasured = [], {}
    for e in epochs:
        rows = profile[profile["epoch"] == e]
        eff = rows.loc[rows["is_effect"].to_numpy(bool), "class_name"]
        moved = ""
        if e in moves:
            moved = "<br>relabelled → " + ", ".join(moves[e])
        sub_titles.append(f"epoch {e}{moved}<br>in effect: {eff.iloc[0] if len(eff) else '?'}")
        missing = rows.loc[rows["distance"].isna(), "class_name"].tolist()
        if missing:
            unmeasured[e] = "no embedding" if len(missing) == len(rows) else ", ".join(missing)
    fig = make_subplots(rows=1, cols=max(1, len(epochs)), shared_yaxes=True, subplot_titles=sub_titles,
                        horizontal_spacing=0.04)
    fig.update_annotations(font_size=12)  # short panel titles: three panels fit a half-page cell
    for col, e in enumerate(epochs, start=1):
        rows = profile[profile["epoch"] == e].set_index("class_name").loc[order].reset_index()
        clean = rows["is_clean"].to_numpy(bool)
        fig.add_trace(go.Bar(
            x=rows["class_name"], y=rows[column], marker_color=bar_colors(rows),
            marker_line_color=[CLEAN if c else "rgba(0,0,0,0)" for c in clean],
            marker_line_width=[3 if c else 0 for c in clean],
            showlegend=False, name=f"epoch {e}",
            hovertemplate="%{x}: " + ("relative " if scale == "relative" else "") + "distance %{y:.3f}<extra>epoch "
                          + str(e) + "</extra>"), row=1, col=col)
        if rows[column].notna().any():  # the clean label is outlined (see the legend); the nearest is named:
            # as an annotation, drawn above every bar (a bar's own text, or a text trace, wider
            # than the bar is covered by its right-hand neighbour)
            nearest = int(np.nanargmin(rows[column].to_numpy(float)))
            fig.add_annotation(x=rows["class_name"].iloc[nearest], y=rows[column].iloc[nearest], text="nearest",
                               showarrow=False, yanchor="bottom", font=dict(size=11), name="nearest",
                               bgcolor="rgba(255,255,255,0.85)", borderpad=1, row=1, col=col)
        fig.update_xaxes(categoryorder="array", categoryarray=order, row=1, col=col)
    for name, colour, outline in (("given label", GIVEN, None), ("label in effect (when not the given one)", EFFECT, None),
                                  ("other classes", OTHER, None), ("clean label (outlined)", "white", CLEAN)):
        fig.add_trace(go.Bar(x=[None], y=[None], name=name, marker_color=colour,
                             marker_line=dict(color=outline or colour, width=2 if outline else 0)), row=1, col=1)
    fig.update_yaxes(title_text="distance / mean distance between centers" if scale == "relative"
                     else "distance to class mean (model units)", row=1, col=1)
    fig.update_layout(legend=dict(orientation="h", yref="container", y=0, yanchor="bottom", x=0), bargap=0.2)
    head = f"Distance to class centers, sample {sample_id}" if sample_id is not None else "Distance to class centers"
    given_rows = profile.loc[profile["is_given"].to_numpy(bool), "class_name"]
    given = f"given {given_rows.iloc[0]}; " if len(given_rows) else ""
    subtitle = given + _event_text(events, class_names) + (f" · {caveat}" if caveat else "")
    if unmeasured:  # a class relabelled empty has no mean: no bar, said here
        by_what: dict[str, list[str]] = {}
        for e, what in unmeasured.items():
            by_what.setdefault(what, []).append(str(e))
        subtitle += "<br>no class mean (no samples): " + "; ".join(
            f"{what} (epoch{'s' if len(es) > 1 else ''} {', '.join(es)})" for what, es in by_what.items())
    return finish(fig, title(head, run_name), subtitle=subtitle,
                  height=460, width=max(700, 360 * len(epochs)),
                  header_px=16 * max(len(t.split("<br>")) for t in sub_titles) + 4)


# ---------------------------------------------------------------- Table 2
def compactness(runs: Runs, epoch: int = -1, labels: LabelKind = "effect", split: str = "train") -> go.Figure:
    """Paper Table 2 as bars, scale-free first: per class, the mean ratio of a sample's
    distance to its own class center to that to the nearest other center (left: compares
    across methods), and the raw mean +- std distance to the own center (right: in each
    model's own units, which a center loss shrinks). Several runs are grouped per class.

    Args:
        runs: one run, or several side by side.
        epoch: the epoch (negative counts from each run's last committed one).
        labels: which label makes a class a sample's own: "effect", "given" or "clean".
        split: "train", "test" or "all".

    Returns:
        The figure (a note when no class has samples).
    """
    listed = as_list(runs)
    names = unique_names([r.name for r in listed])
    return compactness_figure({n: r.compactness(epoch, labels, split) for n, r in zip(names, listed)},
                              class_names=listed[0].class_names, labels=labels,
                              caveat=embeddings_note(listed, [epoch]))


def compactness_figure(tables: Mapping[str, pd.DataFrame], *, class_names: Sequence[str] | None = None,
                       labels: str = "effect", caveat: str | None = None) -> go.Figure:
    """Draw :func:`compactness` from tables.

    Args:
        tables: run name -> ``Run.compactness()`` (indexed by class name: n, mean, std,
            ratio, nearest_own, silhouette).
        class_names: the classes, by class id; default: those in the tables.
        labels: which label the tables used, for the title.
        caveat: what the figure must say about its data (the pass the embeddings come from).

    Returns:
        The figure (a note when no class has samples).
    """
    names = list(tables)
    if class_names is None:
        class_names = list(dict.fromkeys(c for t in tables.values() for c in t.index))
    order = [c for c in ordered_names(list(class_names)) if any(c in t.index for t in tables.values())]
    head = title(f"Compactness per class ({LABEL_WORDS.get(labels, labels)})", names)
    colours = class_colors(list(class_names))
    measured = {n: _measured(t) for n, t in tables.items()}
    empty = {n: [c for c in order if c in t.index and not measured[n][c]] for n, t in tables.items()}
    order = [c for c in order if any(c in t.index and measured[n][c] for n, t in tables.items())]
    missing = "; ".join((f"{n}: " if len(names) > 1 else "") + ", ".join(cs) for n, cs in empty.items() if cs)
    if not order:
        return note_figure(f"no class has samples under the labels {labels}", head)
    panels, panel_px = panel_titles(["scale-free: own / nearest other center",
                                     "raw: distance to own center (model units)"], spacing=0.12)
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.12, subplot_titles=panels)
    for i, name in enumerate(names):
        t = tables[name].reindex(order)
        colour = [colours[c] for c in order] if len(names) == 1 else run_color(i)
        extra = t.reindex(columns=["n", "nearest_own", "silhouette", "std"]).to_numpy(dtype=float)
        ratio = t["ratio"] if "ratio" in t else pd.Series(np.nan, index=order)
        fig.add_trace(go.Bar(
            x=order, y=ratio, name=name, marker_color=colour, legendgroup=name, showlegend=len(names) > 1,
            customdata=extra,
            hovertemplate="%{x}: own / nearest other %{y:.3f}<br>nearest center is own: %{customdata[1]:.0%}"
                          "<br>silhouette %{customdata[2]:.3f} (n=%{customdata[0]})<extra>" + name + "</extra>"),
            row=1, col=1)
        fig.add_trace(go.Bar(
            x=order, y=t["mean"], name=name, marker_color=colour, legendgroup=name, showlegend=False,
            error_y=dict(type="data", array=t["std"].to_numpy(float), visible=True), customdata=extra,
            hovertemplate="%{x}: %{y:.3f} ± %{customdata[3]:.3f} (n=%{customdata[0]})<extra>" + name + "</extra>"),
            row=1, col=2)
    fig.add_hline(y=1.0, line_color="#666", line_width=1, line_dash="dot", row=1, col=1)
    fig.update_layout(barmode="group", legend=dict(orientation="h", yref="container", y=0, yanchor="bottom", x=0))
    fig.update_yaxes(title_text="distance ratio (< 1: nearest own)", rangemode="tozero", row=1, col=1)
    fig.update_yaxes(title_text="distance", row=1, col=2)
    fig.update_annotations(font_size=12)
    notes = ["raw distances shrink with a center loss: compare them within one model only"]
    if caveat:
        notes.append(caveat)
    if missing:
        notes.append(f"no samples, so no center (left out): {missing}")
    return finish(fig, head, subtitle=" · ".join(notes), height=440, header_px=20 + panel_px)


def _measured(table: pd.DataFrame) -> pd.Series:
    """Per class of a compactness table: whether it measured any sample (an emptied class has n = 0)."""
    measured: pd.Series = table["n"].notna() & (table["n"] > 0) & table["mean"].notna()
    return measured
