"""Page 6, two runs side by side (the seed paper's argument is comparative: SCN vs SCN-C on
the same data): the headline numbers of both and their difference, accuracy curves,
relabel and flip-flop totals, the relabels the relabel guards vetoed (when either run had
one on), relabel consistency and compactness of both, and one
training sample in both runs (aligned by its key): its label timelines and its distances
to the class centers.

``?run=A&against=B&sample=N`` opens it directly (N: a sample id of run A); without
``against`` it compares with A's counterpart in its sweep (SCN with SCN-C at the same noise
and seed), else with the newest other readable run. A run of a ``relabscope sweep`` also
shows the sweep's noise table (``relabscope.dashboard.sweeps``). Every number comes from
``relabscope.analysis.compare.Comparison`` (``summary``, ``samples``) or a
``relabscope.plot`` helper given both runs.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from dash import Input, Output, State, dcc, html, no_update
from dash.dash_table.DataTable import DataTable

from relabscope import plot
from relabscope.methods.guards import GUARDS
from relabscope.dashboard import ids, sweeps
from relabscope.dashboard.components import (class_balance_card, describe_error, error_card, figure_block, fmt,
                                             frame_table, graph, note_card, safe)
from relabscope.dashboard.context import Context
from relabscope.dashboard.inputs import class_name, parse_sample, parse_search, table_number

PATH = "compare"
TITLE = "Compare"
FIGURES = ("accuracy", "totals", "vetoes", "consistency", "lag", "compactness", "classes", "flow")
#: figures shown only when either run had a relabel guard on (no empty chart otherwise)
GUARD_FIGURES = ("vetoes",)
#: summary row -> (what the table calls it, shown as a fraction)
SUMMARY_ROWS = {
    "test_acc": ("test accuracy, last epoch", True),
    "relabel_events": ("relabel events", False),
    "relabels_vetoed": ("relabels vetoed by the relabel guards", False),
    **{f"vetoed_by_{g.name}": (f"… by {g.name} ({g.flag})", False) for g in GUARDS},
    "relabelled_samples": ("relabelled samples", False),
    "flipflops": ("flip-flops", False),
    "closer_before": ("closer to the new class already before the relabel", True),
    "closer_to_new": ("closer to the new class once trained on it", True),
    "control_closer": ("control (not relabelled, margin just below): closer to its argmax class", True),
    "closer_vs_control": ("relabelled − control (matched class pairs)", True),
    "gap_change_raw": ("mean change of d(new) − d(old), raw units", False),
    "mean_rel_gap_change": ("mean change of the relative gap (scale-free)", False),
    "undone_fraction": ("relabels undone later", True),
    "compactness_ratio": ("distance to own / nearest other center (scale-free)", False),
    "nearest_own": ("samples whose nearest center is their own", True),
    "silhouette": ("centroid silhouette (scale-free)", False),
    "compactness_raw": ("distance to own center, raw units (not comparable across models)", False),
    "classes_compared": ("classes compared (a mean in both runs)", False),
    "classes_emptied": ("classes emptied by relabelling", False),
    "classes_below_half": ("classes shrunk below half their given size", False),
    "noisy_corrected": ("noisy labels corrected", True),
    "clean_corrupted": ("clean labels corrupted", True),
}


# ---------------------------------------------------------------------- plain functions
def default_against(ctx: Context, run_id: str) -> str | None:
    """The run's counterpart in its sweep (SCN-C for SCN at the same noise and seed), else
    the newest other run that can be read, else None."""
    pair = sweeps.counterpart(ctx, run_id)
    if pair is not None and ctx.registry.error(pair) is None:
        return pair
    for other in ctx.registry.ids():
        if other != run_id and ctx.registry.error(other) is None:
            return other
    return None


def summary_rows(summary: pd.DataFrame) -> list[dict]:
    """Rows of ``Comparison.summary()`` (index metric; columns A, B, difference): the raw
    numbers (``a``, ``b``, ``difference``) and how the table shows them (a veto count of
    a run without that guard: "guard off")."""
    rows = []
    for metric, r in summary.iterrows():
        label, fraction = SUMMARY_ROWS.get(str(metric), (str(metric), False))
        a, b, d = (r.iloc[0], r.iloc[1], r.iloc[2])
        kind = "%" if fraction else ""
        vetoes = str(metric) == "relabels_vetoed" or str(metric).startswith("vetoed_by_")
        shown = ["guard off" if vetoes and pd.isna(v) else fmt(float(v), kind) for v in (a, b)]
        diff = "n/a" if pd.isna(d) else (f"{float(d):+.1%}" if fraction else f"{float(d):+.4g}")
        rows.append({"metric": str(metric), "what": label, "a": table_number(a), "b": table_number(b),
                     "difference": table_number(d),
                     "a_shown": shown[0], "b_shown": shown[1], "difference_shown": diff})
    return rows


def summary_table(summary: pd.DataFrame) -> DataTable:
    names = list(summary.columns)
    return DataTable(
        id=ids.CP_SUMMARY_TABLE, data=summary_rows(summary), page_size=40, style_table={"overflowX": "auto"},
        columns=[{"name": "", "id": "what"}, {"name": names[0], "id": "a_shown"},
                 {"name": names[1], "id": "b_shown"}, {"name": "difference (B − A)", "id": "difference_shown"}],
        style_cell={"fontSize": 13, "padding": "3px 8px", "textAlign": "right"},
        style_cell_conditional=[{"if": {"column_id": "what"}, "textAlign": "left"}],
        style_header={"fontWeight": "600"})


def figure(ctx: Context, a_id: str, b_id: str, which: str):
    runs = [ctx.run(a_id), ctx.run(b_id)]
    if which == "accuracy":
        return plot.accuracy_curves(runs)
    if which == "totals":
        return plot.flipflop_totals(runs)
    if which == "vetoes":
        return plot.vetoes(runs)
    if which == "consistency":
        return plot.consistency_summary(runs)
    if which == "lag":
        return plot.consistency_by_lag(runs)
    if which == "compactness":
        return plot.compactness(runs)
    if which == "classes":
        return plot.class_counts(runs)
    if which == "flow":
        return plot.label_flow(runs)
    raise ValueError(f"unknown comparison figure {which!r}")


def shown_figures(ctx: Context, a_id: str, b_id: str) -> list[str]:
    """The page's figures: :data:`FIGURES`, less :data:`GUARD_FIGURES` when neither run had
    a relabel guard on."""
    guarded = any(ctx.run(r).guards for r in (a_id, b_id))
    return [w for w in FIGURES if guarded or w not in GUARD_FIGURES]


def aligned_samples(ctx: Context, a_id: str, b_id: str) -> pd.DataFrame:
    """``Comparison.samples()``: training samples present in both runs, aligned by key."""
    return ctx.pair_cached(a_id, b_id, "samples", lambda c: c.samples())


def top_samples(aligned: pd.DataFrame, n: int = 5) -> list[int]:
    """Run A's ids of the ``n`` samples that flip-flopped (then were relabelled) most in
    the two runs together."""
    if len(aligned) == 0:
        return []
    score = aligned.assign(_ff=aligned["flipflops_a"] + aligned["flipflops_b"],
                           _ch=aligned["changes_a"] + aligned["changes_b"])
    score = score.sort_values(["_ff", "_ch", "sample_id_a"], ascending=[False, False, True], kind="stable")
    return [int(s) for s in score["sample_id_a"].head(n)]


def counterpart(ctx: Context, a_id: str, b_id: str, value: Any) -> pd.Series:
    """The aligned row (``Comparison.samples()``) of run A's sample ``value``; ValueError
    (one line) for a bad id, a test sample or a key run B does not have."""
    run_a = ctx.run(a_id)
    sid = parse_sample(value, len(run_a.samples))
    aligned = aligned_samples(ctx, a_id, b_id)
    hit = aligned[aligned["sample_id_a"] == sid]
    if len(hit) == 0:
        if run_a.samples["split"].iloc[sid] != "train":
            raise ValueError(f"sample {sid} is a test sample; only training samples are compared")
        raise ValueError(f"sample {sid} of {a_id} (key {run_a.samples['key'].iloc[sid]}) is not in {b_id}")
    return hit.iloc[0]


def pair_facts(row: pd.Series, class_names_a: list[str], class_names_b: list[str],
               names: tuple[str, str]) -> pd.DataFrame:
    """The aligned row as (field, run A, run B)."""
    rows = [("sample id", int(row["sample_id_a"]), int(row["sample_id_b"])),
            ("given label", class_name(class_names_a, row["given_label_a"]),
             class_name(class_names_b, row["given_label_b"])),
            ("label after the last epoch", class_name(class_names_a, row["final_label_a"]),
             class_name(class_names_b, row["final_label_b"])),
            ("relabel events", int(row["changes_a"]), int(row["changes_b"])),
            ("flip-flops", int(row["flipflops_a"]), int(row["flipflops_b"])),
            ("distance to own class center (last epoch)", fmt(float(row["distance_own_a"])),
             fmt(float(row["distance_own_b"])))]
    if int(row["clean_label"]) >= 0:
        clean = class_name(class_names_a, row["clean_label"])
        rows.insert(2, ("clean label", clean, clean))
    return pd.DataFrame(rows, columns=["field", names[0], names[1]])


def same_sample(ctx: Context, a_id: str, b_id: str, value: Any) -> Any:
    """One training sample in both runs: facts, label timelines, distance bars."""
    row = counterpart(ctx, a_id, b_id, value)
    run_a, run_b = ctx.run(a_id), ctx.run(b_id)
    sa, sb = int(row["sample_id_a"]), int(row["sample_id_b"])
    names = ctx.comparison(a_id, b_id).names
    facts = pair_facts(row, run_a.class_names, run_b.class_names, names)

    def side(run_id: str, run, sid: int, name: str) -> Any:
        return html.Div([
            html.Div([html.Img(src=ctx.image_url(run_id, sid, 96), className="thumb", alt=f"sample {sid}"),
                      html.B(name),
                      dcc.Link(f"open sample {sid} of {run_id} in the inspector →",
                               href=ctx.href("sample", run_id, sample=sid))], className="controls"),
            safe(lambda: graph(plot.label_timeline(run, sid))),
            safe(lambda: graph(plot.distance_bars(run, sid, scale="relative"))),  # two models: scale-free
        ], className="cell")

    return html.Div([
        html.Div(f"key {row['key']}", className="muted"),
        frame_table(facts, page_size=20),
        html.Div([side(a_id, run_a, sa, names[0]), side(b_id, run_b, sb, names[1])], className="grid2"),
    ])


# ---------------------------------------------------------------------- Dash
def _picker(ctx: Context, run_id: str, against: str | None) -> Any:
    others = [i for i in ctx.registry.ids() if i != run_id]
    return html.Div([
        html.Span(f"A: {run_id}   against B:"),
        dcc.Dropdown(id=ids.CP_AGAINST, options=[{"label": i, "value": i} for i in others], value=against,
                     placeholder="choose a run", clearable=False, style={"minWidth": "260px"}),
        dcc.Link("swap A and B", href=ctx.href(PATH, against, against=run_id)) if against else None,
    ], className="controls")


def layout(ctx: Context, run_id: str, params: dict[str, str]) -> Any:
    against = params.get("against")
    head = html.H2(f"Compare — {run_id}" + (f" vs {against}" if against else ""))
    if against is None:
        against = default_against(ctx, run_id)
        if against is None:
            return html.Div([html.H2(f"Compare — {run_id}"), note_card(
                f"Comparing needs two runs, and {run_id} is the only readable one under "
                f"{', '.join(str(r) for r in ctx.registry.roots)}. Train another run into the same folder "
                "(e.g. the same data set with another method, or `relabscope demo` for SCN vs SCN-C) and it "
                "shows up here within seconds.")])
        head = html.H2(f"Compare — {run_id} vs {against}")
    if against not in ctx.registry:
        return html.Div([dcc.Store(id=ids.CP_ARGS, data={"run": run_id, "against": None}), head,
                         error_card(f"unknown run {against[:200]!r}", "Run B not found"), _picker(ctx, run_id, None)])
    try:
        ctx.run(against)
    except Exception as exc:
        return html.Div([dcc.Store(id=ids.CP_ARGS, data={"run": run_id, "against": None}), head,
                         error_card(describe_error(exc), f"Run {against} cannot be shown"), _picker(ctx, run_id, None)])
    try:
        aligned = aligned_samples(ctx, run_id, against)
        top = top_samples(aligned)
    except Exception:
        top = []
    sample_value = params.get("sample")
    if sample_value is None and top:
        sample_value = str(top[0])
    quick = [dcc.Link(str(s), href=ctx.href(PATH, run_id, against=against, sample=s), style={"marginRight": ".6em"})
             for s in top]
    try:
        sweep = sweeps.sweep_section(ctx, run_id)
    except Exception as exc:
        sweep = error_card(describe_error(exc), "Cannot read this run's sweep")
    return html.Div([
        dcc.Store(id=ids.CP_ARGS, data={"run": run_id, "against": against}),
        head,
        _picker(ctx, run_id, against),
        sweep,
        dcc.Loading(html.Div(id=ids.CP_SUMMARY), className="cell"),
        html.Div([html.Div(dcc.Loading(html.Div(id=ids.cp_figure(w))), className="cell")
                  for w in shown_figures(ctx, run_id, against)], className="grid2"),
        html.H3("The same sample in both runs"),
        html.Div([
            html.Span(f"sample id (of {run_id}) "),
            dcc.Input(id=ids.CP_SAMPLE, type="text", inputMode="numeric", value=sample_value, debounce=True,
                      style={"width": "110px"}),
            html.Span(["most flip-flopping in both: ", *quick] if quick else "", className="muted"),
        ], className="controls"),
        dcc.Loading(html.Div(id=ids.CP_SAMPLE_VIEW)),
    ])


def correction_section(ctx: Context, run_id: str, against: str) -> Any:
    """The correction round, when one run trained on the other's reviewed labels (nothing
    otherwise)."""
    try:
        table = ctx.pair_cached(run_id, against, "correction_round", lambda c: c.correction_round())
    except Exception as exc:
        return error_card(describe_error(exc), "Cannot read the corrections")
    if table is None:
        return None
    return html.Div([
        html.H3("Correction round"),
        html.P("One run trained on the reviewers' decisions about the other's samples (train --corrections). Per "
               "decision: samples decided, trained on, relabelled again by the new run, ending under another label "
               "than the reviewed one" + (", and carrying a wrong label before / after (clean labels known)"
                                          if "noisy_after" in table.columns else "") + ".", className="muted"),
        DataTable(columns=[{"name": c.replace("_", " "), "id": c} for c in table.columns],
                  data=table.astype(object).where(table.notna(), "–").to_dict("records"),
                  style_table={"overflowX": "auto"}, style_cell={"textAlign": "right", "padding": "4px 8px"}),
    ], id=ids.CP_CORRECTIONS)


def register(app, ctx: Context) -> None:
    args = [Input(ids.CP_ARGS, "data"), Input(ids.LIVE_VERSION, "data")]

    def pair(a: Any) -> tuple[str, str]:
        a = a or {}
        return a.get("run"), a.get("against")

    @app.callback(Output(ids.CP_SUMMARY, "children"), *args)
    def _summary(a, _version):
        run_id, against = pair(a)
        try:
            summary = ctx.pair_cached(run_id, against, "summary", lambda c: c.summary(warn=False))
            balance = ctx.pair_cached(run_id, against, "class_warnings", lambda c: c.class_warnings())
            geometry = ctx.pair_cached(run_id, against, "geometry_note", lambda c: c.geometry_note())
        except Exception as exc:
            return error_card(describe_error(exc), "Cannot compare these runs")
        return [class_balance_card(list(balance["message"])), note_card(geometry) if geometry else None,
                html.H3("Headline numbers"), summary_table(summary), correction_section(ctx, run_id, against)]

    def figure_callback(which: str) -> None:
        @app.callback(Output(ids.cp_figure(which), "children"), *args)
        def _figure(a, _version):
            run_id, against = pair(a)
            return figure_block(lambda: figure(ctx, run_id, against, which))

    for which in FIGURES:
        figure_callback(which)

    @app.callback(Output(ids.CP_SAMPLE_VIEW, "children"), Input(ids.CP_SAMPLE, "value"), *args)
    def _sample(value, a, _version):
        run_id, against = pair(a)
        if value in (None, ""):
            return html.Div("Type a sample id of run A to see it in both runs.", className="muted")
        try:
            return same_sample(ctx, run_id, against, value)
        except ValueError as exc:
            return error_card(str(exc), "No such sample in both runs")
        except Exception as exc:
            return error_card(describe_error(exc), "Cannot show this sample")

    @app.callback(Output(ids.URL, "href", allow_duplicate=True), Input(ids.CP_AGAINST, "value"),
                  State(ids.CP_ARGS, "data"), State(ids.URL, "search"), prevent_initial_call=True)
    def _against(value, a, search):
        run_id = (a or {}).get("run") or parse_search(search).get("run")
        if not value or value not in ctx.registry or run_id not in ctx.registry or value == (a or {}).get("against"):
            return no_update
        return ctx.href(PATH, run_id, against=value)
