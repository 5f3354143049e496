"""Page 2, flip-flops (the paper's Fig. 3): every training sample by how often it was
relabelled back to a label it held before, with thumbnails; the chosen sample's label
timeline; the A -> B -> A oscillation matrix. Clicking a row (or a bar of the Fig. 3
chart) picks a sample; clicking a matrix cell keeps only the samples with that cycle.

The table pages and sorts on the server (``select_rows``, ``sort_rows``, ``page_rows``), so
an AffectNet-sized run sends only one page to the browser. Every number is a column of
``Run.flipflops()`` or a row of ``Run.oscillations()``.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
from dash import Input, Output, State, callback_context, dash_table, dcc, html, no_update

from relabscope.dashboard.components import GRAPH_CONFIG, describe_error, error_card, fit, graph, safe
from relabscope.dashboard.context import Context, parse_sample

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
        col = COLUMNS.get(s.get("column_id")) if isinstance(s, dict) else None
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
    def name(i: Any) -> str:
        i = int(i)
        return class_names[i] if 0 <= i < len(class_names) else "unknown"

    out = []
    for r in rows.itertuples(index=False):
        sid = int(r.sample_id)
        rec = {
            "sample_id": sid, "given": name(r.given_label), "final": name(r.final_label),
            "clean": name(r.clean_label), "changes": int(r.changes), "flipflops": int(r.flipflops),
            "labels_visited": int(r.labels_visited), "first_relabel_epoch": int(r.first_relabel_epoch),
            "last_relabel_epoch": int(r.last_relabel_epoch),
        }
        if image_url is not None:
            rec["image"] = f"![sample {sid}]({image_url(sid)})"
        out.append(rec)
    return out


def cycle_from_click(click: Any, class_names: Sequence[str]) -> tuple[int, int] | None:
    """The (a, b) class ids of a clicked oscillation-matrix cell (y is A, x is B)."""
    try:
        point = click["points"][0]
        return class_names.index(point["y"]), class_names.index(point["x"])
    except (KeyError, IndexError, TypeError, ValueError):
        return None


def sample_from_bar_click(click: Any) -> int | None:
    """The sample id of a clicked Fig. 3 bar (its label reads ``#<id> A→B``)."""
    try:
        label = str(click["points"][0]["y"])
        return int(label.split()[0].lstrip("#"))
    except (KeyError, IndexError, TypeError, ValueError):
        return None


# ---------------------------------------------------------------------- Dash
def layout(ctx: Context, run_id: str, params: dict[str, str]) -> Any:
    run = ctx.run(run_id)
    if not run.relabels_at_all:
        from relabscope.plot import never_relabels

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
        dcc.Store(id="ff-args", data={"run": run_id}),
        dcc.Store(id="ff-cell", data=None),
        dcc.Store(id="ff-selected", data=selected),
        html.H2(f"Flip-flops — {run_id}"),
        html.Div([
            dcc.RadioItems(id="ff-mode", options=[{"label": v, "value": k} for k, v in MODES.items()],
                           value=params.get("mode") if params.get("mode") in MODES else "flipflopping", inline=True),
            dcc.Dropdown(id="ff-given", options=classes, placeholder="given label: any", clearable=True,
                         style={"width": "200px"}),
            dcc.Dropdown(id="ff-final", options=classes, placeholder="final label: any", clearable=True,
                         style={"width": "200px"}),
            html.Span(id="ff-cell-chip", className="chip"),
            html.Button("clear cycle filter", id="ff-clear", n_clicks=0, className="btn"),
        ], className="controls"),
        html.Div(id="ff-count", className="muted"),
        html.Div([
            html.Div(dash_table.DataTable(
                id="ff-table", columns=columns, data=[], page_action="custom", page_current=0,
                page_size=PAGE_SIZE, sort_action="custom", sort_mode="multi", sort_by=DEFAULT_SORT,
                markdown_options={"link_target": "_self"}, cell_selectable=True,
                style_cell={"fontSize": 13, "padding": "2px 8px", "textAlign": "right"},
                style_cell_conditional=[{"if": {"column_id": "image"}, "width": "56px"}],
                style_table={"overflowX": "auto"},  # a wide table scrolls inside its half
                style_header={"fontWeight": "600"}), className="cell"),
            html.Div(dcc.Loading(html.Div(id="ff-detail")), className="cell"),
        ], className="grid2"),
        html.Div([
            html.Div(dcc.Loading(dcc.Graph(id="ff-heatmap", config=GRAPH_CONFIG)), className="cell"),
            html.Div(dcc.Loading(dcc.Graph(id="ff-bars", config=GRAPH_CONFIG)), className="cell"),
        ], className="grid2"),
    ])


def _error_figure(exc: BaseException, what: str):
    from relabscope.plot import note_figure

    return note_figure(describe_error(exc), what)


def register(app, ctx: Context) -> None:
    live = Input("live-version", "data")

    @app.callback(Output("ff-heatmap", "figure"), Output("ff-bars", "figure"), Input("ff-args", "data"), live)
    def _figures(a, _version):
        from relabscope import plot

        run_id = (a or {}).get("run")
        try:
            run = ctx.run(run_id)
            heat = plot.oscillation_heatmap_figure(run.oscillation_matrix(), run_name=run.name)
            bars = plot.flipflops_figure(ctx.flipflops(run_id), run.class_names, top=20, run_name=run.name)
        except Exception as exc:
            fig = _error_figure(exc, "Flip-flops")
            return fig, fig
        return fit(heat), fit(bars)

    @app.callback(Output("ff-cell", "data"), Input("ff-heatmap", "clickData"), Input("ff-clear", "n_clicks"),
                  State("ff-args", "data"), prevent_initial_call=True)
    def _cell(click, _clear, a):
        if callback_context.triggered_id == "ff-clear":
            return None
        try:
            cycle = cycle_from_click(click, ctx.run((a or {}).get("run")).class_names)
        except Exception:
            return None
        return list(cycle) if cycle else None

    @app.callback(Output("ff-cell-chip", "children"), Input("ff-cell", "data"), State("ff-args", "data"))
    def _chip(cell, a):
        if not cell:
            return "click a matrix cell to keep only samples with that A → B → A cycle"
        names = ctx.run((a or {}).get("run")).class_names
        return f"cycle {names[cell[0]]} → {names[cell[1]]} → {names[cell[0]]}"

    @app.callback(
        Output("ff-table", "data"), Output("ff-table", "page_count"), Output("ff-table", "page_current"),
        Output("ff-count", "children"),
        Input("ff-args", "data"), live, Input("ff-mode", "value"), Input("ff-given", "value"),
        Input("ff-final", "value"), Input("ff-cell", "data"), Input("ff-table", "page_current"),
        Input("ff-table", "sort_by"))
    def _table(a, _version, mode, given, final, cell, page, sort_by):
        run_id = (a or {}).get("run")
        try:
            run = ctx.run(run_id)
            flip = ctx.flipflops(run_id)
            cycle = tuple(int(c) for c in cell) if cell else None
            filters_changed = callback_context.triggered_id not in ("ff-table", None)
            rows = select_rows(flip, mode=mode or "flipflopping", given=given, final=final, cycle=cycle,
                               oscillations=ctx.oscillations(run_id) if cycle else None)
            rows = sort_rows(rows, sort_by)
            shown, pages, p = page_rows(rows, 0 if filters_changed else page)
            ctx.images.prefetch(run_id, shown["sample_id"].tolist())
            data = records(shown, run.class_names, lambda sid: ctx.image_url(run_id, sid, 48))
            count = f"{len(rows):,} of {len(flip):,} training samples ({MODES.get(mode, mode)})"
            return data, pages, p, count
        except Exception as exc:
            return [], 1, 0, error_card(describe_error(exc))

    @app.callback(Output("ff-selected", "data"), Input("ff-table", "active_cell"), Input("ff-bars", "clickData"),
                  State("ff-table", "data"), prevent_initial_call=True)
    def _select(cell, bar_click, data):
        if callback_context.triggered_id == "ff-bars":
            sid = sample_from_bar_click(bar_click)
            return sid if sid is not None else no_update
        try:
            return int(data[cell["row"]]["sample_id"])
        except (TypeError, KeyError, IndexError, ValueError):
            return no_update

    @app.callback(Output("ff-detail", "children"), Input("ff-selected", "data"), Input("ff-args", "data"), live)
    def _detail(sid, a, _version):
        run_id = (a or {}).get("run")
        return safe(lambda: detail(ctx, run_id, sid))


def detail(ctx: Context, run_id: str, sample_id: Any) -> Any:
    """The chosen sample: image, label timeline, link to the inspector."""
    from relabscope import plot

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
