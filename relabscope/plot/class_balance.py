"""Class balance under relabelling: each class's size over training as a share of its given
size (one panel per run), and the flow from given labels to the labels in effect after the
last epoch (one Sankey diagram per run). A class that relabelling emptied or shrank below
half its given size is named in the figure's subtitle; a run trained with a relabel floor
(``--relabel-floor F``) shows each class's floor, the count no relabel may take it below."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Hashable, Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from relabscope.analysis.class_balance import SHRINK_THRESHOLD
from relabscope.methods.guards import floor_size
from relabscope.plot._style import (Runs, as_list, class_colors, finish, note_figure, ordered_names, title,
                                    unique_names)

if TYPE_CHECKING:
    from relabscope.analysis.run import Run


#: label flow: pixels of one run's diagram, between two runs' (room for the run's name),
#: and of the figure's margins (the template's top, this figure's bottom)
FLOW_PX = 300
FLOW_GAP_PX = 36
FLOW_FRAME_PX = 100


def class_counts(runs: Runs, *, threshold: float = SHRINK_THRESHOLD) -> go.Figure:
    """Training samples per class under the labels in effect, per epoch, as a share of the
    class's given size: one panel per run, with the threshold below which a class is
    reported (``Run.class_warnings``) and those classes named in the subtitle, and, for a
    run trained with ``--relabel-floor F``, each class's floor (:func:`floor_counts`).

    Args:
        runs: one run, or several side by side.
        threshold: the share of its given size below which a class is reported.

    Returns:
        The figure.

    Example:
        >>> import tempfile, relabscope as rs
        >>> run = rs.open_run(rs.example_run(tempfile.mkdtemp() + "/example"))
        >>> fig = rs.plot.class_counts(run)
        >>> len(fig.data), fig.layout.meta["subtitle"]
        (4, 'sadness below 50% in epoch 1 (16 → 6), anger emptied in epoch 1 (16 → 0)')
    """
    listed = as_list(runs)
    names = unique_names([r.name for r in listed])
    return class_counts_figure({n: r.class_counts() for n, r in zip(names, listed)},
                               warnings={n: r.class_warnings(threshold) for n, r in zip(names, listed)},
                               threshold=threshold,
                               floors={n: _floor(r) for n, r in zip(names, listed)})


def _floor(run: Run) -> float:
    """The run's relabel floor F, 0 when its floor guard was not on (a method that never
    relabels builds no guards, whatever its config says)."""
    return float(run.config.get("relabel_floor") or 0.0) if "floor" in run.guards else 0.0


def floor_counts(given: np.ndarray | Sequence[int], fraction: float) -> np.ndarray:
    """The relabel floor of each class (``relabscope.methods.guards.floor_size``, the rule
    the trainer applies), as int64.

    >>> floor_counts([16, 15, 10, 0], 0.5).tolist(), floor_counts([10], 0.3).tolist()
    ([8, 8, 5, 0], [3])
    """
    sizes: np.ndarray = floor_size(np.asarray(given, dtype=np.float64), fraction).astype(np.int64)
    return sizes


def class_counts_figure(tables: Mapping[str, pd.DataFrame], *, warnings: Mapping[str, pd.DataFrame] | None = None,
                        threshold: float = SHRINK_THRESHOLD, floors: Mapping[str, float] | None = None) -> go.Figure:
    """Draw :func:`class_counts` from tables.

    Args:
        tables: run name -> ``Run.class_counts()``.
        warnings: run name -> ``Run.class_warnings()``, which become the subtitle.
        threshold: where to draw the reporting threshold.
        floors: run name -> its ``relabel_floor`` F (0 or missing: no floor): a dashed grey
            line per class at its floor's share of its given size, ``ceil(F x given) / given``.

    Returns:
        The figure (a note before the first committed epoch).
    """
    names = list(tables)
    head = title("Class sizes under the labels in effect", names)
    if not names or all(len(t) == 0 for t in tables.values()):
        return note_figure("no committed epoch yet", head)
    class_names = list(dict.fromkeys(c for t in tables.values() for c in t.sort_values("class_id")["class_name"]))
    colours = class_colors(class_names)
    order = ordered_names(class_names)
    fig = make_subplots(rows=1, cols=len(names), shared_yaxes=True, horizontal_spacing=0.05,
                        subplot_titles=names if len(names) > 1 else None)
    top = 1.0
    floor_shown: set[float] = set()  # the floors in the legend (one entry per F)
    for col, name in enumerate(names, start=1):
        t = tables[name]
        last = int(t["epoch"].max()) if len(t) else 0
        for cls in order:
            rows = t[t["class_name"] == cls].sort_values("epoch")
            if not len(rows) or int(rows["given"].iloc[0]) == 0:
                continue
            share = rows["fraction_of_given"].to_numpy(float)
            top = max(top, float(np.nanmax(share)))
            when = ["after the last epoch" if e == last else f"in epoch {e}" for e in rows["epoch"]]
            fig.add_trace(go.Scatter(
                x=rows["epoch"], y=share, mode="lines+markers", name=cls, legendgroup=cls, showlegend=col == 1,
                line=dict(color=colours[cls], width=2), marker=dict(size=5),
                customdata=np.column_stack([rows["count"], rows["given"], when]),
                hovertemplate=f"{cls}: %{{customdata[0]}} of %{{customdata[1]}} given (%{{y:.0%}})"
                              "<br>labels in effect %{customdata[2]}<extra>" + name + "</extra>"),
                row=1, col=col)
        fraction = (floors or {}).get(name, 0.0)
        if fraction > 0:  # over the classes' lines: a class held at its floor runs along it
            top = max(top, _draw_floor(fig, t, fraction, last, col, first=fraction not in floor_shown))
            floor_shown.add(fraction)
        fig.add_hline(y=1.0, line_color="#999", line_width=1, row=1, col=col)
        fig.add_hline(y=threshold, line_color="#d62728", line_width=1, line_dash="dot", row=1, col=col)
        # epoch e's point is the count during epoch e; the last point, after the last epoch
        fig.update_xaxes(title_text="epoch", row=1, col=col, **_epoch_ticks(last, per_panel=8 // len(names)))
    fig.update_yaxes(title_text="share of its given size", tickformat=".0%", range=[-0.05, top * 1.08 + 0.02],
                     row=1, col=1)
    lines = []
    for name in names:
        w = (warnings or {}).get(name)
        if w is None or not len(w):
            continue
        said = ", ".join(_short(r, threshold) for r in w.to_dict("records"))
        lines.append(f"{name}: {said}" if len(names) > 1 else said)
    subtitle = "<br>".join(lines) if lines else f"every class kept at least {threshold:.0%} of its given size"
    if floor_shown:
        subtitle += " · dashed: relabel floor, ⌈F × given⌉ per class"
    return finish(fig, head, subtitle=subtitle, height=420,
                  header_px=24 if len(names) > 1 else 0)


def _draw_floor(fig: go.Figure, table: pd.DataFrame, fraction: float, last: int, col: int, *, first: bool) -> float:
    """Each class's relabel floor as a share of its given size, a dashed grey line across
    panel ``col`` (``first``: give them a legend entry, after the classes'; hovering names
    the class and its count); returns the highest share drawn."""
    given = table.drop_duplicates("class_name").set_index("class_name")["given"]
    given = given[given > 0]
    floors = pd.Series(floor_counts(given.to_numpy(), fraction), index=given.index)
    shares = floors / given
    label = f"relabel floor (F = {fraction:g})"
    for i, cls in enumerate(ordered_names(list(given.index))):
        fig.add_trace(go.Scatter(
            x=[0, last], y=[shares[cls]] * 2, mode="lines", name=label, legendgroup="relabel floor",
            showlegend=first and i == 0, legendrank=1001, line=dict(color="#555", width=1.5, dash="dash"),
            hovertemplate=f"{cls}: floor {floors[cls]} of {given[cls]} given (⌈{fraction:g} × {given[cls]}⌉)"
                          "<extra>relabel floor</extra>"),
            row=1, col=col)
    return float(shares.max()) if len(shares) else 0.0


def _epoch_ticks(last: int, per_panel: int) -> dict[str, list[Any]]:
    """At most ``per_panel`` + 1 epoch ticks, the last (the count after the last epoch)
    called "end", so that the labels stay upright in a narrow panel.

    >>> _epoch_ticks(8, per_panel=4)
    {'tickvals': [0, 2, 4, 6, 8], 'ticktext': ['0', '2', '4', '6', 'end']}
    """
    step = max(1, -(-last // max(1, per_panel)))
    values = [e for e in range(0, last, step) if last - e >= step / 2 or e == 0] + [last]
    return {"tickvals": values, "ticktext": [*map(str, values[:-1]), "end"]}


def _short(row: Mapping[Hashable, Any], threshold: float) -> str:
    """A class warning (a row of ``Run.class_warnings()``) in a few words (the full one is its message)."""
    if row["kind"] == "emptied":
        return f"{row['class_name']} emptied in epoch {row['emptied_epoch']} ({row['given']} → 0)"
    return (f"{row['class_name']} below {threshold:.0%} in epoch {row['below_epoch']} "
            f"({row['given']} → {row['lowest']})")


def label_flow(runs: Runs) -> go.Figure:
    """Training samples from their given label (left) to their label in effect after the
    last epoch (right): one Sankey diagram per run.

    Args:
        runs: one run, or several side by side.

    Returns:
        The figure, classes relabelling emptied named in the subtitle.
    """
    listed = as_list(runs)
    names = unique_names([r.name for r in listed])
    return label_flow_figure({n: r.label_flow() for n, r in zip(names, listed)})


def label_flow_figure(flows: Mapping[str, pd.DataFrame]) -> go.Figure:
    """Draw :func:`label_flow` from tables.

    Args:
        flows: run name -> ``Run.label_flow()`` (rows given label, columns final label).

    Returns:
        The figure.
    """
    names = list(flows)
    head = title("Given label → label in effect after the last epoch", names)
    if not names:
        return note_figure("no run", head)
    fig = go.Figure()
    # one diagram per run, stacked: side by side, a half-page cell leaves each too narrow
    # for the labels on both of its sides
    plot_px = FLOW_PX * len(names) + FLOW_GAP_PX * (len(names) - 1)
    gap = FLOW_GAP_PX / plot_px
    height = (1.0 - gap * (len(names) - 1)) / len(names)
    empty_notes = []
    for i, name in enumerate(names):
        flow = flows[name]
        classes = list(flow.index)
        colours = class_colors(classes)
        order = [classes.index(c) for c in ordered_names(classes)]
        given_n = flow.to_numpy().sum(axis=1)
        final_n = flow.to_numpy().sum(axis=0)
        labels = [f"{classes[j]} ({given_n[j]})" for j in order] + [f"{classes[j]} ({final_n[j]})" for j in order]
        node_colour = [colours[classes[j]] for j in order] * 2
        src, dst, val, link_colour = [], [], [], []
        m = flow.to_numpy()
        for a, ga in enumerate(order):
            for b, fb in enumerate(order):
                if m[ga, fb] > 0:
                    src.append(a)
                    dst.append(len(order) + b)
                    val.append(int(m[ga, fb]))
                    link_colour.append(_alpha(colours[classes[ga]], 0.45 if ga == fb else 0.8))
        emptied = [classes[j] for j in order if given_n[j] > 0 and final_n[j] == 0]
        if emptied:
            empty_notes.append((f"{name}: " if len(names) > 1 else "") + "emptied by relabelling: " + ", ".join(emptied))
        y1 = 1.0 - i * (height + gap)
        fig.add_trace(go.Sankey(
            domain=dict(x=[0, 1], y=[max(0.0, y1 - height), y1]), arrangement="fixed",
            node=dict(label=labels, color=node_colour, pad=12, thickness=14,
                      hovertemplate="%{label}<extra></extra>"),
            link=dict(source=src, target=dst, value=val, color=link_colour,
                      hovertemplate="%{source.label} → %{target.label}: %{value} samples<extra></extra>"),
            name=name))
        if len(names) > 1:
            fig.add_annotation(text=f"<b>{name}</b>", x=0.5, y=y1, xref="paper", yref="paper",
                               showarrow=False, xanchor="center", yanchor="bottom", yshift=4)
    subtitle = "left: given label (samples); right: label in effect after the last epoch"
    if empty_notes:
        subtitle += "<br>" + "; ".join(empty_notes)
    return finish(fig, head, subtitle=subtitle, height=plot_px + FLOW_FRAME_PX, margin=dict(l=30, r=30, b=20),
                  header_px=24 if len(names) > 1 else 0)


def _alpha(colour: str, alpha: float) -> str:
    """``#rrggbb`` -> ``rgba(r, g, b, alpha)``."""
    c = colour.lstrip("#")
    r, g, b = (int(c[i:i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"
