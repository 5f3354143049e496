"""Relabel consistency (the seed paper's claim as numbers): after a relabel old -> new, once
the sample has trained on ``new``, is its embedding closer to the new class mean than to
the old one, how does that compare with samples the rule nearly relabelled (the control
group), and how did the gap d(new) - d(old) change? Several runs side by side
(``relabscope.analysis.consistency`` defines every number)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from relabscope.analysis.consistency import FIRST_TRAINED_LAG
from relabscope.plot._style import (Runs, as_list, finish, never_relabels, note_figure, panel_titles, run_color,
                                    silent_message, title, unique_names)
from relabscope.plot.caveats import geometry_note

if TYPE_CHECKING:
    from relabscope.analysis.run import Run


def _split(names: list[str], relabels_at_all: Mapping[str, bool] | bool,
           methods: Mapping[str, str] | None) -> tuple[list[str], list[str], Mapping[str, str]]:
    """The runs to draw, the runs that cannot relabel, and the method names (none given: {})."""
    can = {n: relabels_at_all for n in names} if isinstance(relabels_at_all, bool) else dict(relabels_at_all)
    drawn = [n for n in names if can.get(n, True)]
    silent = [n for n in names if n not in drawn]
    return drawn, silent, methods or {}


def _runs(runs: Runs) -> tuple[list[Run], list[str], dict[str, bool], dict[str, str]]:
    """The runs, their legend names, whether each can relabel, and each one's method."""
    listed = as_list(runs)
    names = unique_names([r.name for r in listed])
    return (listed, names, {n: r.relabels_at_all for n, r in zip(names, listed)},
            {n: r.method for n, r in zip(names, listed)})


def consistency_summary(runs: Runs) -> go.Figure:
    """Per run: fraction of relabels after which the sample, once trained on its new label,
    is closer to the new class mean (beside the matched control group's fraction and the
    difference), fraction undone later, and the mean change of the relative gap.

    Args:
        runs: one run, or several side by side.

    Returns:
        The figure, one panel per number (a note when no run can relabel).

    Example:
        >>> import tempfile, relabscope as rs
        >>> tmp = tempfile.mkdtemp()
        >>> runs = [rs.open_run(rs.example_run(tmp + "/scn", method="scn", seed=1)),
        ...         rs.open_run(rs.example_run(tmp + "/scn-c"))]
        >>> fig = rs.plot.consistency_summary(runs)
        >>> fig.layout.title.text, len(fig.data)  # 3 panels + the control bars, x 2 runs
        ('Relabel consistency — scn vs scn-c', 8)
    """
    listed, names, can, methods = _runs(runs)
    summaries = {n: (r.consistency() if can[n] else None) for n, r in zip(names, listed)}
    return consistency_summary_figure(summaries, relabels_at_all=can, methods=methods,
                                      caveat=geometry_note(listed))


RELATIVE_GAP = "relative gap: (d(new) − d(old)) / (d(new) + d(old)), scale-free"
#: what "after" and the control mean, for subtitles
AFTER = "after: the first epoch whose embedding has trained on the new label"
CONTROL = "control, samples not relabelled whose margin fell just below the threshold, matched on the class pair"


def _nothing_measured(caveat: str | None) -> str:
    return f"no relabel event could be measured: {caveat}" if caveat else \
        "no relabel event has an epoch trained on its new label to compare with"


def _subtitle(*parts: str | None) -> str | None:
    return " · ".join(p for p in parts if p) or None


def consistency_summary_figure(summaries: Mapping[str, pd.Series | None], *,
                               relabels_at_all: Mapping[str, bool] | bool = True,
                               methods: Mapping[str, str] | None = None, caveat: str | None = None) -> go.Figure:
    """Draw :func:`consistency_summary` from summaries.

    Args:
        summaries: run name -> ``Run.consistency()`` (events, evaluated, closer_to_new,
            control, control_closer, matched_events, closer_vs_control, mean_rel_gap_change,
            undone, undone_fraction); None for runs that cannot relabel.
        relabels_at_all: whether each run's method can relabel (one bool for all).
        methods: run name -> method name, for the note on runs that cannot relabel.
        caveat: what the figure must say about its data: classes without a mean, the
            pass the embeddings come from (``geometry_note``).

    Returns:
        The figure (a note when no run can relabel).
    """
    names = list(summaries)
    drawn, silent, methods = _split(names, relabels_at_all, methods)
    head = title("Relabel consistency", names)
    if not drawn:
        return note_figure(silent_message(silent, methods), head)
    panels = [("closer_to_new", "closer to new class once trained on it", ".0%"),
              ("undone_fraction", "undone later (back to old label)", ".0%"),
              ("mean_rel_gap_change", "relative gap change (< 0: towards new)", ".3f")]
    spacing = 0.09
    panel_names, extra = panel_titles([p[1] for p in panels], spacing=spacing)
    fig = make_subplots(rows=1, cols=3, subplot_titles=panel_names, horizontal_spacing=spacing)
    fig.update_annotations(font_size=12)  # the panel titles: three fit a half-page cell
    for i, name in enumerate(names):
        s = summaries[name]
        if name not in drawn or s is None:  # None: a run that cannot relabel
            continue
        for col, (key, _, fmt) in enumerate(panels, start=1):
            v = _number(s, key)
            count = f"{int(s['evaluated'])} of {int(s['events'])} evaluated" if key != "undone_fraction" \
                else f"{int(s['undone'])} of {int(s['events'])} events"
            text = "" if np.isnan(v) else format(v, fmt)
            if np.isnan(v):  # plotly draws no text on a bar without a value
                fig.add_annotation(x=name, y=0, yshift=10, text="n/a", showarrow=False, font=dict(size=11),
                                   row=1, col=col)
            fig.add_trace(go.Bar(
                x=[name], y=[v], name=name, marker_color=run_color(i), showlegend=col == 1, legendgroup=name,
                offsetgroup="relabelled", text=[text], textposition="outside", cliponaxis=False,
                hovertemplate=f"{name}<br>%{{y:{fmt}}}<br>{count}<extra></extra>"), row=1, col=col)
        control = _number(s, "control_closer")
        fig.add_trace(go.Bar(
            x=[name], y=[control], name=f"{name}: control", marker=dict(
                color="white", line=dict(color=run_color(i), width=1.5),
                pattern=dict(shape="/", fgcolor=run_color(i), size=6)),
            offsetgroup="control", showlegend=False, legendgroup=name,
            text=["" if np.isnan(control) else format(control, ".0%")], textposition="outside", cliponaxis=False,
            hovertemplate=(f"{name}: control group<br>%{{y:.0%}} closer to their argmax class<br>"
                           f"{int(s.get('control', 0))} controls; {int(s.get('matched_events', 0))} events in "
                           "matched class pairs"
                           f"<br>relabelled − control: {_signed(_number(s, 'closer_vs_control'))}<extra></extra>")),
            row=1, col=1)
        diff = _number(s, "closer_vs_control")
        if np.isfinite(diff):  # over the pair of bars: the compared figure
            top = np.nanmax([_number(s, "closer_to_new"), control])
            fig.add_annotation(x=name, y=top + 0.12, text=f"{diff * 100:+.0f} pts", showarrow=False,
                               font=dict(size=11, color="#333"), xref="x", yref="y")
    fig.update_layout(barmode="group", bargap=0.3)
    fig.update_yaxes(tickformat=".0%", range=[0, 1.2], row=1, col=1)
    fig.update_yaxes(tickformat=".0%", range=[0, 1.1], row=1, col=2)
    gaps = [float(s["mean_rel_gap_change"]) for n in drawn
            if (s := summaries[n]) is not None and pd.notna(s["mean_rel_gap_change"])]
    lo, hi = min([0.0, *gaps]), max([0.0, *gaps])
    pad = 0.25 * (hi - lo) if hi > lo else 1.0
    fig.update_yaxes(range=[lo - pad, hi + pad], row=1, col=3)
    fig.add_hline(y=0, line_color="#666", line_width=1, row=1, col=3)
    fig.update_xaxes(showticklabels=False)
    fig.update_layout(legend=dict(orientation="h", y=-0.08, x=0))
    quiet = [n for n in drawn if (s := summaries[n]) is not None and int(s["events"]) == 0]
    none_yet = ("no relabel event so far" + (f": {', '.join(quiet)}" if len(names) > 1 else "")) if quiet else None
    no_control = [n for n in drawn
                  if (s := summaries[n]) is not None and int(s["events"]) and not int(s.get("control", 0))]
    return finish(fig, head, subtitle=_subtitle(
        AFTER, f"hatched: {CONTROL}; pts: relabelled − control", RELATIVE_GAP,
        f"no control group (no sample fell just below the threshold): {', '.join(no_control)}" if no_control else None,
        silent_message(silent, methods) if silent else None, none_yet, caveat), height=440, header_px=34 + extra)


def _number(s: pd.Series, key: str) -> float:
    return float(s[key]) if key in s and pd.notna(s[key]) else float("nan")


def _signed(value: float) -> str:
    return "n/a" if np.isnan(value) else f"{value * 100:+.1f} pts"


def consistency_by_lag(runs: Runs, *, max_lag: int | None = None) -> go.Figure:
    """When (and whether) the embedding follows the relabel: per run, the fraction of
    relabelled samples closer to the new class mean k epochs after the relabel (solid),
    the matched control group's (dashed), and their difference.

    Args:
        runs: one run, or several side by side.
        max_lag: the last lag drawn (default: the furthest any event reaches in each log).

    Returns:
        The figure: fractions left, relabelled minus control right (a note when no run
        can relabel or no event was measured).

    Example:
        >>> import tempfile, relabscope as rs
        >>> run = rs.open_run(rs.example_run(tempfile.mkdtemp() + "/example"))
        >>> fig = rs.plot.consistency_by_lag(run)
        >>> [t.name for t in fig.data][:2]
        ['example', 'example: control']
    """
    listed, names, can, methods = _runs(runs)
    tables = {n: (r.consistency_by_lag(max_lag) if can[n] else None) for n, r in zip(names, listed)}
    return consistency_by_lag_figure(tables, relabels_at_all=can, methods=methods, caveat=geometry_note(listed))


def consistency_by_lag_figure(tables: Mapping[str, pd.DataFrame | None], *,
                              relabels_at_all: Mapping[str, bool] | bool = True,
                              methods: Mapping[str, str] | None = None, caveat: str | None = None) -> go.Figure:
    """Draw :func:`consistency_by_lag` from tables.

    Args:
        tables: run name -> ``Run.consistency_by_lag()``; None for runs that cannot relabel.
        relabels_at_all: whether each run's method can relabel (one bool for all).
        methods: run name -> method name, for the note on runs that cannot relabel.
        caveat: what the figure must say about its data (``geometry_note``).

    Returns:
        The figure. Where a log mixes passes (``--probe-every`` above 1), each run draws
        the pass most of its events were relabelled in and the subtitle says so.
    """
    names = list(tables)
    drawn, silent, methods = _split(names, relabels_at_all, methods)
    head = title("Closer to the new class, epochs after the relabel", names)
    if not drawn:
        return note_figure(silent_message(silent, methods), head)
    chosen = {n: _main_pass(t) for n in drawn if (t := tables[n]) is not None}
    if not any(len(t) and t["events"].sum() for t in chosen.values()):
        return note_figure(_nothing_measured(caveat), head)
    spacing = 0.12
    panel_names, extra = panel_titles(["relabelled (solid) and control (dashed)", "relabelled − control"],
                                      spacing=spacing)
    fig = make_subplots(rows=1, cols=2, subplot_titles=panel_names, horizontal_spacing=spacing)
    fig.update_annotations(font_size=12)
    firsts: set[int] = set()
    mixed = []
    for i, name in enumerate(names):
        if name not in chosen:
            continue
        t, colour = chosen[name], run_color(i)
        if len(t) and len(tables[name]["pass"].unique()) > 1:  # type: ignore[index]
            mixed.append(f"{name}: {t['pass'].iloc[0]}-pass epochs only")
        if len(t):
            firsts.add(FIRST_TRAINED_LAG[str(t["pass"].iloc[0])])
        lag = t["lag"].to_numpy()
        fig.add_trace(go.Scatter(
            x=lag, y=t["closer_to_new"], name=name, mode="lines+markers", line=dict(color=colour, width=2),
            legendgroup=name, customdata=t["events"],
            hovertemplate=f"{name}, lag %{{x}}: %{{y:.1%}} of %{{customdata}} relabelled samples<extra></extra>"),
            row=1, col=1)
        fig.add_trace(go.Scatter(
            x=lag, y=t["control_closer"], name=f"{name}: control", mode="lines+markers", showlegend=False,
            line=dict(color=colour, width=1.5, dash="dash"), marker=dict(symbol="circle-open"), legendgroup=name,
            customdata=t["control"],
            hovertemplate=f"{name} control, lag %{{x}}: %{{y:.1%}} of %{{customdata}} (matched)<extra></extra>"),
            row=1, col=1)
        fig.add_trace(go.Scatter(
            x=lag, y=t["closer_vs_control"], name=f"{name}: difference", mode="lines+markers", showlegend=False,
            line=dict(color=colour, width=2), legendgroup=name, customdata=t["matched_events"],
            hovertemplate=(f"{name}, lag %{{x}}: %{{y:+.1%}} relabelled − control<br>"
                           "%{customdata} events in matched class pairs<extra></extra>")),
            row=1, col=2)
    for first in sorted(firsts):
        for col in (1, 2):
            fig.add_vline(x=first - 0.5, line_color="#999", line_dash="dot", line_width=1, row=1, col=col)
    fig.add_hline(y=0, line_color="#666", line_width=1, row=1, col=2)
    fig.update_yaxes(tickformat=".0%", range=[0, 1.05], row=1, col=1)
    fig.update_yaxes(tickformat="+.0%", row=1, col=2)
    fig.update_xaxes(title_text="epochs after the relabel", dtick=1)
    fig.update_layout(legend=dict(orientation="h", y=-0.2, x=0))
    left_of = " / ".join(f"lag {f}" for f in sorted(firsts))
    return finish(fig, head, subtitle=_subtitle(
        f"dotted line: from {left_of} on the embedding has trained on the new label (before it, the relabel "
        "cannot have moved it)", f"dashed: {CONTROL}", "; ".join(mixed) if mixed else None,
        silent_message(silent, methods) if silent else None, caveat), height=440, header_px=extra)


def _main_pass(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of the pass with the most events at lag 0 (every row when one pass)."""
    if table.empty:
        return table
    lag0 = table[table["lag"] == 0].set_index("pass")["events"]
    return table[table["pass"] == lag0.idxmax()].reset_index(drop=True)


def gap_change_histogram(runs: Runs, *, bins: int = 40) -> go.Figure:
    """Distribution of the gap change per relabel event, one histogram per run (overlaid):
    the summary's mean hides whether a few events or all of them moved.

    Args:
        runs: one run, or several overlaid.
        bins: histogram bins over the common range.

    Returns:
        The figure (a note when no run can relabel or no event could be measured).
    """
    listed, names, can, methods = _runs(runs)
    events = {n: (r.consistency_events() if can[n] else None) for n, r in zip(names, listed)}
    return gap_change_histogram_figure(events, relabels_at_all=can, methods=methods, bins=bins,
                                       caveat=geometry_note(listed))


def gap_change_histogram_figure(events: Mapping[str, pd.DataFrame | None], *,
                                relabels_at_all: Mapping[str, bool] | bool = True,
                                methods: Mapping[str, str] | None = None, bins: int = 40,
                                caveat: str | None = None) -> go.Figure:
    """Draw :func:`gap_change_histogram` from tables.

    Args:
        events: run name -> ``Run.consistency_events()`` (needs gap_change); None for
            runs that cannot relabel.
        relabels_at_all: whether each run's method can relabel (one bool for all).
        methods: run name -> method name, for the note on runs that cannot relabel.
        bins: histogram bins over the common range.
        caveat: what the figure must say about its data: classes without a mean, the
            pass the embeddings come from (``geometry_note``).

    Returns:
        The figure.
    """
    names = list(events)
    drawn, silent, methods = _split(names, relabels_at_all, methods)
    head = title("Gap change per relabel: (d(new) − d(old)) after minus before", names)
    if not drawn:
        return note_figure(silent_message(silent, methods), head)
    gaps = {n: table["gap_change"].to_numpy(float) for n in drawn if (table := events[n]) is not None}
    values = {n: v[np.isfinite(v)] for n, v in gaps.items()}
    if not any(len(v) for v in values.values()):
        return note_figure(_nothing_measured(caveat), head)
    lo = min(float(v.min()) for v in values.values() if len(v))
    hi = max(float(v.max()) for v in values.values() if len(v))
    size = (hi - lo) / bins if hi > lo else 1.0
    fig = go.Figure()
    for i, name in enumerate(names):
        if name not in values:  # a run that cannot relabel
            continue
        v = values[name]
        fig.add_trace(go.Histogram(
            x=v, name=f"{name} ({len(v)} events, {np.mean(v < 0):.0%} < 0)" if len(v) else f"{name} (no events)",
            marker_color=run_color(i), opacity=0.6 if len(drawn) > 1 else 0.9,
            xbins=dict(start=lo, end=hi + size, size=size)))
    fig.add_vline(x=0, line_color="#333", line_dash="dash", annotation_text="← towards new   towards old →",
                  annotation_position="top")
    fig.update_layout(barmode="overlay")
    fig.update_xaxes(title_text="gap change")
    fig.update_yaxes(title_text="relabel events")
    return finish(fig, head, subtitle=_subtitle(silent_message(silent, methods) if silent else None, caveat),
                  height=420)


def consistency_scatter(run: Run, *, max_points: int = 5000) -> go.Figure:
    """Per relabel event: distance to the old vs the new class mean at its "after" epoch
    (the first embedding trained on the new label); points below the diagonal sit closer
    to the new class.

    Args:
        run: the run.
        max_points: draw a random sample of at most this many events.

    Returns:
        The figure (a note when the method never relabels).
    """
    head = title("After each relabel: distance to old vs new class mean", run.name)
    if not run.relabels_at_all:
        return note_figure(never_relabels(run.method), head)
    return consistency_scatter_figure(run.consistency_events(), run.class_names, run_name=run.name,
                                      max_points=max_points, caveat=geometry_note([run]))


def consistency_scatter_figure(events: pd.DataFrame, class_names: Sequence[str], *, run_name: str | None = None,
                               max_points: int = 5000, caveat: str | None = None) -> go.Figure:
    """Draw :func:`consistency_scatter` from a table.

    Args:
        events: ``Run.consistency_events()`` (sample_id, epoch, old, new, d_old_after,
            d_new_after, undone).
        class_names: the classes, by class id.
        run_name: the run's name, for the title.
        max_points: draw a random sample of at most this many events.
        caveat: what the figure must say about its data: classes without a mean, the
            pass the embeddings come from (``geometry_note``).

    Returns:
        The figure (a note when no event could be measured).
    """
    head = title("After each relabel: distance to old vs new class mean", run_name)
    ok = events[np.isfinite(events["d_old_after"].to_numpy(float)) & np.isfinite(events["d_new_after"].to_numpy(float))]
    if ok.empty:
        return note_figure(_nothing_measured(caveat), head)
    if len(ok) > max_points:
        ok = ok.sample(max_points, random_state=0)
    fig = go.Figure()
    for undone, colour, label in ((False, "#4c78a8", "kept"), (True, "#e45756", "undone later")):
        part = ok[ok["undone"].astype(bool).to_numpy() == undone]
        if part.empty:
            continue
        fig.add_trace(go.Scattergl(
            x=part["d_old_after"], y=part["d_new_after"], mode="markers", name=f"{label} ({len(part)})",
            marker=dict(color=colour, size=6, opacity=0.7),
            customdata=np.column_stack([part["sample_id"], [class_names[int(o)] for o in part["old"]],
                                        [class_names[int(n)] for n in part["new"]], part["epoch"],
                                        part["after_epoch"].astype("Int64").astype(str)]),
            hovertemplate="sample %{customdata[0]}: %{customdata[1]} → %{customdata[2]} in epoch %{customdata[3]}"
                          "<br>d(old) %{x:.3f}, d(new) %{y:.3f} in epoch %{customdata[4]}<extra></extra>"))
    top = float(np.nanmax(ok[["d_old_after", "d_new_after"]].to_numpy(float)))
    fig.add_trace(go.Scatter(x=[0, top], y=[0, top], mode="lines", line=dict(color="#777", dash="dash"),
                             name="equal distance", hoverinfo="skip"))
    # equal scales by shrinking the plot area ("domain"), not by widening a range below 0
    fig.update_xaxes(title_text="distance to old class mean (after)", rangemode="tozero", constrain="domain")
    fig.update_yaxes(title_text="distance to new class mean (after)", rangemode="tozero",
                     scaleanchor="x", scaleratio=1, constrain="domain")
    return finish(fig, head, subtitle=_subtitle("below the diagonal: closer to the new class", AFTER, caveat),
                  height=560, width=640)
