"""Page 5, class compactness (the paper's Table 2): per class, the mean ± std distance of
the training samples to their class center at an epoch, with "their" class by the label in
effect, the given label or the clean label. A second run (any other registered run) adds
its bars and the difference of the means (B - A).

``?run=A&against=B&labels=given&epoch=3`` opens it directly. Every number is
``Run.compactness`` (one run) or ``Comparison.compactness`` (two), drawn by
``relabscope.plot.compactness``.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from dash import Input, Output, dcc, html
from dash.dash_table.DataTable import DataTable
from dash.dash_table.Format import Format, Scheme

from relabscope import plot
from relabscope.dashboard import ids
from relabscope.dashboard.components import describe_error, error_card, graph
from relabscope.dashboard.context import Context
from relabscope.dashboard.inputs import LAST_EPOCH, mean_pm_std, parse_epoch, parse_labels, table_number

PATH = "compactness"
TITLE = "Compactness"
LABELS = {"effect": "label in effect", "given": "given label", "clean": "clean label"}


# ---------------------------------------------------------------------- plain functions
def label_choices(run) -> list[str]:
    return [k for k in LABELS if k != "clean" or run.clean_labels is not None]


def single_rows(table: pd.DataFrame) -> list[dict]:
    """Rows of ``Run.compactness()`` (index class; n, mean, std, ratio, nearest_own,
    silhouette) for the DataTable."""
    return [{"class": str(c), "n": int(r["n"]), "ratio": table_number(r["ratio"]),
             "nearest_own": table_number(r["nearest_own"]), "mean": table_number(r["mean"]),
             "std": table_number(r["std"]), "mean ± std": mean_pm_std(r["mean"], r["std"])}
            for c, r in table.iterrows()]


def pair_rows(table: pd.DataFrame) -> list[dict]:
    """Rows of ``Comparison.compactness()`` (n/mean/std of A and B, mean_difference)."""
    rows = []
    for c, r in table.iterrows():
        row: dict[str, Any] = {"class": str(c)}
        for tag in ("a", "b"):
            row[f"n_{tag}"] = None if pd.isna(r[f"n_{tag}"]) else int(r[f"n_{tag}"])
            row[f"mean_{tag}"] = table_number(r[f"mean_{tag}"])
            row[f"std_{tag}"] = table_number(r[f"std_{tag}"])
            row[f"pm_{tag}"] = mean_pm_std(r[f"mean_{tag}"], r[f"std_{tag}"])
            row[f"ratio_{tag}"] = table_number(r[f"ratio_{tag}"])
        row["ratio_difference"] = table_number(r["ratio_difference"])
        row["mean_difference"] = table_number(r["mean_difference"])
        rows.append(row)
    return rows


def _columns(pairs: list[tuple[str, str]]) -> list[dict]:
    out = []
    for cid, name in pairs:
        col = {"name": name, "id": cid}
        if cid.startswith(("mean", "std", "ratio")):
            col.update(type="numeric", format=Format(precision=4, scheme=Scheme.decimal_or_exponent))
        out.append(col)
    return out


def table_view(rows: list[dict], names: tuple[str, ...] | None = None) -> DataTable:
    if names is None:
        cols = [("class", "class"), ("n", "n"), ("ratio", "own / nearest other center"),
                ("nearest_own", "nearest center is own"), ("mean ± std", "distance, raw: mean ± std"),
                ("mean", "mean"), ("std", "std")]
    else:
        a, b = names
        cols = [("class", "class"), ("n_a", f"n {a}"), ("n_b", f"n {b}"),
                ("ratio_a", f"{a}: own / nearest other"), ("ratio_b", f"{b}: own / nearest other"),
                ("ratio_difference", "difference of ratios (B − A)"),
                ("pm_a", f"{a}: distance, raw"), ("pm_b", f"{b}: distance, raw"),
                ("mean_difference", "difference of raw means (B − A)")]
    return DataTable(id=ids.CM_TABLE_DATA, columns=_columns(cols), data=rows, page_size=40,
                                style_table={"overflowX": "auto"}, style_cell={"fontSize": 13, "padding": "3px 8px"},
                                style_header={"fontWeight": "600"})


def other_runs(ctx: Context, run_id: str) -> list[str]:
    """Every registered run but ``run_id``, newest first."""
    return [i for i in ctx.registry.ids() if i != run_id]


def view(ctx: Context, run_id: str, against: str | None, labels: Any, epoch: Any) -> tuple[Any, Any]:
    """(table, figure) for the run (and the second run when ``against`` is given)."""
    run = ctx.run(run_id)
    labels = parse_labels(labels, LABELS, run)
    e = parse_epoch(epoch, run.num_epochs)
    if not against:
        table = ctx.cached(run_id, ("compactness", e, labels), lambda r: r.compactness(e, labels))
        fig = plot.compactness(run, e, labels)
        return table_view(single_rows(table)), graph(fig)
    other = ctx.run(against)  # RunUnavailable for an unknown or unreadable run
    if labels == "clean" and other.clean_labels is None:
        raise ValueError(f"clean labels are unknown for {against}'s data set")
    parse_epoch(e, other.num_epochs)
    comparison = ctx.comparison(run_id, against)
    table = ctx.pair_cached(run_id, against, ("compactness", e, labels), lambda c: c.compactness(e, labels))
    fig = plot.compactness([run, other], e, labels)
    names = tuple(comparison.names)
    return table_view(pair_rows(table), names), graph(fig)


# ---------------------------------------------------------------------- Dash
def layout(ctx: Context, run_id: str, params: dict[str, str]) -> Any:
    run = ctx.run(run_id)
    head = html.H2(f"Compactness (Table 2) — {run_id}")
    if run.num_epochs == 0:
        return html.Div([head, error_card("no committed epoch yet", "Nothing to show")])
    labels = params.get("labels") if params.get("labels") in label_choices(run) else "effect"
    try:
        epoch = parse_epoch(params.get("epoch"), run.num_epochs)
    except ValueError:
        epoch = LAST_EPOCH
    others = other_runs(ctx, run_id)
    against = params.get("against")
    return html.Div([
        dcc.Store(id=ids.CM_ARGS, data={"run": run_id}),
        head,
        html.Div([
            html.Span("class of a sample by"),
            dcc.RadioItems(id=ids.CM_LABELS, options=[{"label": LABELS[k], "value": k} for k in label_choices(run)],
                           value=labels, inline=True),
            html.Span("epoch"),
            dcc.Dropdown(id=ids.CM_EPOCH, options=[{"label": f"last ({run.num_epochs - 1})", "value": LAST_EPOCH}]
                         + [{"label": f"epoch {e}", "value": e} for e in range(run.num_epochs)],
                         value=epoch, clearable=False, style={"width": "140px"}),
            html.Span("compare with"),
            dcc.Dropdown(id=ids.CM_AGAINST, options=[{"label": i, "value": i} for i in others],
                         value=against, placeholder="no second run", clearable=True, style={"minWidth": "240px"}),
        ], className="controls"),
        html.Div("Per class: each training sample's distance to its class center (the epoch's class means) "
                 "divided by its distance to the nearest other center (scale-free: below 1, nearer its own; "
                 "compares across models), and the raw distance in the model's own units (a center loss "
                 "shrinks those: compare them within one model only).", className="muted"),
        html.Div([html.Div(dcc.Loading(html.Div(id=ids.CM_TABLE)), className="cell"),
                  html.Div(dcc.Loading(html.Div(id=ids.CM_FIGURE)), className="cell")], className="grid2"),
    ])


def register(app, ctx: Context) -> None:
    @app.callback(Output(ids.CM_TABLE, "children"), Output(ids.CM_FIGURE, "children"),
                  Input(ids.CM_ARGS, "data"), Input(ids.CM_AGAINST, "value"), Input(ids.CM_LABELS, "value"),
                  Input(ids.CM_EPOCH, "value"), Input(ids.LIVE_VERSION, "data"))
    def _view(a, against, labels, epoch, _version):
        run_id = (a or {}).get("run")
        try:
            return view(ctx, run_id, against, labels, epoch)
        except Exception as exc:
            return error_card(describe_error(exc), "Cannot show compactness"), None
