"""Page 2, flip-flops (the paper's Fig. 3): every training sample by how often it was
relabelled back to a label it held before, with thumbnails; the chosen sample's label
timeline; the A -> B -> A oscillation matrix; and whether relabelled samples' embeddings
follow their new label, once trained on it and epoch by epoch, against the control group
(``Run.consistency``, ``Run.consistency_by_lag``).
Clicking a row (or a bar of the Fig. 3 chart) picks a sample; clicking a matrix cell keeps
only the samples with that cycle.

The table pages and sorts on the server (``select_rows``, ``sort_rows``, ``page_rows``), so
an AffectNet-sized run sends only one page to the browser. Every number is a column of
``Run.flipflops()`` or a row of ``Run.oscillations()``.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
from dash import Input, Output, State, callback_context, dcc, html, no_update
from dash.dash_table.DataTable import DataTable

from relabscope import plot
from relabscope.dashboard import ids
from relabscope.dashboard.components import (GRAPH_CONFIG, canary_toggle, describe_error, error_card, fit, graph,
                                             hides_canaries, safe, without_canaries)
from relabscope.dashboard.context import Context
from relabscope.dashboard.inputs import class_name, cycle_from_click, parse_sample, sample_from_bar_click
from relabscope.plot import never_relabels, note_figure

PATH = "flipflops"
TITLE = "Flip-flops"
PAGE_SIZE = 20
MODES = {"flipflopping": "flip-flopped", "relabelled": "relabelled", "all": "all training samples"}
#: table column -> flip-flop table column it shows (and sorts by)
COLUMNS = {
    "sample_id": "sample_id", "given": "given_label", "final": "final_label", "clean": "clean_label",
    "changes": "changes", "flipflops": "flipflops", "labels_visited": "labels_visited",
    "first_relabel_epoch": "first_relabel_epoch", "last_relabel_epoch": "last_relabel_epoch",
}
HEADERS = {"image": "", "sample_id": "sample", "given": "given", "final": "final", "clean": "clean",
           "changes": "relabels", "flipflops": "flip-flops", "labels_visited": "labels visited",
           "first_relabel_epoch": "first relabel", "last_relabel_epoch": "last relabel"}
DEFAULT_SORT = [{"column_id": "flipflops", "direction": "desc"}, {"column_id": "changes", "direction": "desc"}]


# ---------------------------------------------------------------------- plain functions
def select_rows(flip: pd.DataFrame, *, mode: str = "flipflopping", given: int | None = None,
                final: int | None = None, cycle: tuple[int, int] | None = None,
                oscillations: pd.DataFrame | None = None) -> pd.DataFrame:
    """Rows of the flip-flop table that pass the filters: ``mode`` (flipflopping,
    relabelled, all), a given and a final label, and an A -> B -> A ``cycle`` (samples
    with a row (a, b) in ``oscillations``)."""
    keep = np.ones(len(flip), bool)
    if mode == "flipflopping":
        keep &= flip["flipflops"].to_numpy() > 0
    elif mode == "relabelled":
        keep &= flip["changes"].to_numpy() > 0
    elif mode != "all":
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    if given is not None:
        keep &= flip["given_label"].to_numpy() == int(given)
    if final is not None:
        keep &= flip["final_label"].to_numpy() == int(final)
    if cycle is not None:
        osc = oscillations if oscillations is not None else pd.DataFrame(columns=["sample_id", "a", "b"])
        hit = osc[(osc["a"] == int(cycle[0])) & (osc["b"] == int(cycle[1]))]["sample_id"].unique()
        keep &= np.isin(flip["sample_id"].to_numpy(), hit)
    return flip[keep]


def sort_rows(rows: pd.DataFrame, sort_by: Sequence[dict] | None) -> pd.DataFrame:
    """Sorted as the table asks (``[{"column_id", "direction"}]``; unknown columns are
    ignored), ties by sample id."""
    keys, ascending = [], []
    for s in (sort_by or DEFAULT_SORT):
        col = COLUMNS.get(str(s.get("column_id"))) if isinstance(s, dict) else None
        if col is not None and col not in keys:
            keys.append(col)
            ascending.append(s.get("direction") != "desc")
    if "sample_id" not in keys:
        keys.append("sample_id")
        ascending.append(True)
    return rows.sort_values(keys, ascending=ascending, kind="stable")


def page_rows(rows: pd.DataFrame, page: Any, page_size: int = PAGE_SIZE) -> tuple[pd.DataFrame, int, int]:
    """(rows of ``page``, number of pages, the page shown) - pages past the end show the last."""
    pages = max(1, -(-len(rows) // page_size))
    p = int(page) if isinstance(page, (int, np.integer)) and not isinstance(page, bool) else 0
    p = min(max(p, 0), pages - 1)
    return rows.iloc[p * page_size:(p + 1) * page_size], pages, p


def records(rows: pd.DataFrame, class_names: Sequence[str], image_url: Callable[[int], str] | None = None) -> list[dict]:
    """Table rows for the DataTable: class names for labels, an image cell per sample."""
    out = []
    counts = ("changes", "flipflops", "labels_visited", "first_relabel_epoch", "last_relabel_epoch")
    for r in rows.to_dict("records"):
        sid = int(r["sample_id"])
        rec: dict[str, Any] = {
            "sample_id": sid, "given": class_name(class_names, r["given_label"]),
            "final": class_name(class_names, r["final_label"]), "clean": class_name(class_names, r["clean_label"]),
            **{name: int(r[name]) for name in counts},
        }
        if image_url is not None:
            rec["image"] = f"![sample {sid}]({image_url(sid)})"
        out.append(rec)
    return out


# ---------------------------------------------------------------------- Dash
def layout(ctx: Context, run_id: str, params: dict[str, str]) -> Any:
    run = ctx.run(run_id)
    if not run.relabels_at_all:
        return html.Div([html.H2(f"Flip-flops — {run_id}"), error_card(never_relabels(run.method), "Nothing to show")])
    classes = [{"label": n, "value": i} for i, n in enumerate(run.class_names)]
    selected = None
    if params.get("sample") is not None:
        try:
            selected = parse_sample(params["sample"], len(run.samples))
        except ValueError:
            selected = None
    columns = [{"name": HEADERS["image"], "id": "image", "presentation": "markdown"}] + [
        {"name": HEADERS[c], "id": c} for c in COLUMNS if c != "clean" or run.clean_labels is not None]
    return html.Div([
        dcc.Store(id=ids.FF_ARGS, data={"run": run_id}),
        dcc.Store(id=ids.FF_CELL, data=None),
        dcc.Store(id=ids.FF_SELECTED, data=selected),
        html.H2(f"Flip-flops — {run_id}"),
        html.Div([
            dcc.RadioItems(id=ids.FF_MODE, options=[{"label": v, "value": k} for k, v in MODES.items()],
                           value=params.get("mode") if params.get("mode") in MODES else "flipflopping", inline=True),
            dcc.Dropdown(id=ids.FF_GIVEN, options=classes, placeholder="given label: any", clearable=True,
                         style={"width": "200px"}),
            dcc.Dropdown(id=ids.FF_FINAL, options=classes, placeholder="final label: any", clearable=True,
                         style={"width": "200px"}),
            html.Span(id=ids.FF_CELL_CHIP, className="chip"),
            html.Button("clear cycle filter", id=ids.FF_CLEAR, n_clicks=0, className="btn"),
            canary_toggle(ids.FF_CANARIES, run),
        ], className="controls"),
        html.Div(id=ids.FF_COUNT, className="muted"),
        html.Div([
            html.Div(DataTable(
                id=ids.FF_TABLE, columns=columns, data=[], page_action="custom", page_current=0,
                page_size=PAGE_SIZE, sort_action="custom", sort_mode="multi", sort_by=DEFAULT_SORT,
                markdown_options={"link_target": "_self"}, cell_selectable=True,
                style_cell={"fontSize": 13, "padding": "2px 8px", "textAlign": "right"},
                style_cell_conditional=[{"if": {"column_id": "image"}, "width": "56px"}],
                style_table={"overflowX": "auto"},  # a wide table scrolls inside its half
                style_header={"fontWeight": "600"}), className="cell"),
            html.Div(dcc.Loading(html.Div(id=ids.FF_DETAIL)), className="cell"),
        ], className="grid2"),
        html.Div([
            html.Div(dcc.Loading(dcc.Graph(id=ids.FF_HEATMAP, config=GRAPH_CONFIG)), className="cell"),
            html.Div(dcc.Loading(dcc.Graph(id=ids.FF_BARS, config=GRAPH_CONFIG)), className="cell"),
        ], className="grid2"),
        html.Div([
            html.Div(dcc.Loading(dcc.Graph(id=ids.FF_CONSISTENCY, config=GRAPH_CONFIG)), className="cell"),
            html.Div(dcc.Loading(dcc.Graph(id=ids.FF_LAG, config=GRAPH_CONFIG)), className="cell"),
        ], className="grid2"),
    ])


def _error_figure(exc: BaseException, what: str):
    return note_figure(describe_error(exc), what)


def register(app, ctx: Context) -> None:
    live = Input(ids.LIVE_VERSION, "data")

    @app.callback(Output(ids.FF_HEATMAP, "figure"), Output(ids.FF_BARS, "figure"), Input(ids.FF_ARGS, "data"), live)
    def _figures(a, _version):
        run_id = (a or {}).get("run")
        try:
            run = ctx.run(run_id)
            heat = plot.oscillation_heatmap_figure(run.oscillation_matrix(), run_name=run.name)
            bars = plot.flipflops_figure(ctx.flipflops(run_id), run.class_names, top=20, run_name=run.name)
        except Exception as exc:
            fig = _error_figure(exc, "Flip-flops")
            return fig, fig
        return fit(heat), fit(bars)

    @app.callback(Output(ids.FF_CONSISTENCY, "figure"), Output(ids.FF_LAG, "figure"), Input(ids.FF_ARGS, "data"),
                  live)
    def _consistency(a, _version):
        try:
            run = ctx.run((a or {}).get("run"))
            return fit(plot.consistency_summary(run)), fit(plot.consistency_by_lag(run))
        except Exception as exc:
            fig = _error_figure(exc, "Relabel consistency")
            return fig, fig

    @app.callback(Output(ids.FF_CELL, "data"), Input(ids.FF_HEATMAP, "clickData"), Input(ids.FF_CLEAR, "n_clicks"),
                  State(ids.FF_ARGS, "data"), prevent_initial_call=True)
    def _cell(click, _clear, a):
        if callback_context.triggered_id == ids.FF_CLEAR:
            return None
        try:
            cycle = cycle_from_click(click, ctx.run((a or {}).get("run")).class_names)
        except Exception:
            return None
        return list(cycle) if cycle else None

    @app.callback(Output(ids.FF_CELL_CHIP, "children"), Input(ids.FF_CELL, "data"), State(ids.FF_ARGS, "data"))
    def _chip(cell, a):
        if not cell:
            return "click a matrix cell to keep only samples with that A → B → A cycle"
        names = ctx.run((a or {}).get("run")).class_names
        return f"cycle {names[cell[0]]} → {names[cell[1]]} → {names[cell[0]]}"

    @app.callback(
        Output(ids.FF_TABLE, "data"), Output(ids.FF_TABLE, "page_count"), Output(ids.FF_TABLE, "page_current"),
        Output(ids.FF_COUNT, "children"),
        Input(ids.FF_ARGS, "data"), live, Input(ids.FF_MODE, "value"), Input(ids.FF_GIVEN, "value"),
        Input(ids.FF_FINAL, "value"), Input(ids.FF_CELL, "data"), Input(ids.FF_TABLE, "page_current"),
        Input(ids.FF_TABLE, "sort_by"), Input(ids.FF_CANARIES, "value"))
    def _table(a, _version, mode, given, final, cell, page, sort_by, canaries):
        run_id = (a or {}).get("run")
        try:
            run = ctx.run(run_id)
            flip = ctx.flipflops(run_id)
            cycle = tuple(int(c) for c in cell) if cell else None
            filters_changed = callback_context.triggered_id not in (ids.FF_TABLE, None)
            rows = select_rows(flip, mode=mode or "flipflopping", given=given, final=final, cycle=cycle,
                               oscillations=ctx.oscillations(run_id) if cycle else None)
            rows = sort_rows(without_canaries(run, rows, canaries), sort_by)
            shown, pages, p = page_rows(rows, 0 if filters_changed else page)
            ctx.images.prefetch(run_id, shown["sample_id"].tolist())
            data = records(shown, run.class_names, lambda sid: ctx.image_url(run_id, sid, 48))
            hidden = "; canaries hidden" if hides_canaries(run, canaries) else ""
            count = f"{len(rows):,} of {len(flip):,} training samples ({MODES.get(mode, mode)}{hidden})"
            return data, pages, p, count
        except Exception as exc:
            return [], 1, 0, error_card(describe_error(exc))

    @app.callback(Output(ids.FF_SELECTED, "data"), Input(ids.FF_TABLE, "active_cell"),
                  Input(ids.FF_BARS, "clickData"), State(ids.FF_TABLE, "data"), prevent_initial_call=True)
    def _select(cell, bar_click, data):
        if callback_context.triggered_id == ids.FF_BARS:
            sid = sample_from_bar_click(bar_click)
            return sid if sid is not None else no_update
        try:
            return int(data[cell["row"]]["sample_id"])
        except (TypeError, KeyError, IndexError, ValueError):
            return no_update

    @app.callback(Output(ids.FF_DETAIL, "children"), Input(ids.FF_SELECTED, "data"), Input(ids.FF_ARGS, "data"),
                  live)
    def _detail(sid, a, _version):
        run_id = (a or {}).get("run")
        return safe(lambda: detail(ctx, run_id, sid))


def detail(ctx: Context, run_id: str, sample_id: Any) -> Any:
    """The chosen sample: image, label timeline, link to the inspector."""
    if sample_id is None:
        return html.Div("Click a row (or a bar below) to see that sample's label timeline.", className="muted")
    run = ctx.run(run_id)
    sid = parse_sample(sample_id, len(run.samples))
    return html.Div([
        html.Div([
            html.Img(src=ctx.image_url(run_id, sid, 96), className="thumb", alt=f"sample {sid}"),
            dcc.Link(f"open sample {sid} in the inspector →", href=ctx.href("sample", run_id, sample=sid)),
        ], className="controls"),
        graph(plot.label_timeline(run, sid)),
    ])
