"""Page 4, the embedding map (the paper's Fig. 5): a UMAP or t-SNE of the embeddings a
run kept at some epoch, coloured by the label in effect, the given label, the clean label,
flip-flops or the area under the margin. Lasso or box a region to list its samples;
click a point to open that sample in the inspector.

``?run=RUN&method=tsne&epoch=3&classes=0,2&color=given`` opens a map directly. The map is
``Run.project`` (stratified to ``ctx.max_points`` points, cached on disk by the Run and in
memory here) drawn by ``relabscope.plot.projection_figure`` (WebGL); the colour values are
columns of ``Run.flipflops()`` / ``Run.dynamics()``.
"""

from __future__ import annotations

from typing import Any, Sequence

import pandas as pd
from dash import Input, Output, State, callback_context, dash_table, dcc, html, no_update

from relabscope.dashboard.components import GRAPH_CONFIG, describe_error, error_card, fit
from relabscope.dashboard.context import Context

PATH = "map"
TITLE = "Embedding map"
METHODS = {"umap": "UMAP", "tsne": "t-SNE"}
#: colour choice -> what the legend / picker calls it
COLOURS = {"effect": "label in effect", "given": "given label", "clean": "clean label",
           "flipflops": "flip-flops", "aum_given": "AUM (given label)"}
#: colour choice -> (table, column) of the per-sample number it shows
VALUE_COLOURS = {"flipflops": ("flipflops", "flipflops"), "aum_given": ("dynamics", "aum_given")}
POLL_MS = 2000  # while a projection is computed, the page asks again this often
HINT = "Lasso or box-select points to list them; click a point to open it in the sample inspector."
TABLE_COLUMNS = [("sample", "sample", "markdown"), ("sample_id", "sample id", None), ("given", "given", None),
                 ("effect", "in effect", None), ("clean", "clean", None), ("flipflops", "flip-flops", None)]


# ---------------------------------------------------------------------- plain functions
def colour_choices(run) -> list[str]:
    """The colourings that apply to ``run`` (clean only when the data set knows clean labels)."""
    return [c for c in COLOURS if c != "clean" or run.clean_labels is not None]


def parse_method(value: Any) -> str:
    if value not in METHODS:
        raise ValueError(f"projection method must be one of {', '.join(METHODS)}, not {str(value)[:40]!r}")
    return str(value)


def parse_embedding_epoch(run, value: Any) -> int:
    """The absolute epoch ``value`` names among the epochs that kept embeddings (None: the
    latest); ValueError (one line) otherwise."""
    kept = run.embedding_epochs()
    if not kept:
        raise ValueError("the run kept no embeddings yet (no committed epoch stored them)")
    if value is None or value == "":
        return kept[-1]
    try:
        e = int(str(value).strip()) if not isinstance(value, bool) else None
    except ValueError:
        e = None
    if e is None:
        raise ValueError(f"epoch must be an integer, not {str(value)[:40]!r}")
    try:
        return run.embedding_epoch(e)
    except ValueError:
        raise ValueError(f"no embeddings kept for epoch {e}; epochs with embeddings: "
                         f"{', '.join(str(k) for k in kept)}") from None


def parse_classes(value: Any, class_names: Sequence[str]) -> list[int] | None:
    """Class ids from ``0,2`` or a list (None or empty: every class)."""
    if value in (None, "", []):
        return None
    items = value.split(",") if isinstance(value, str) else list(value)
    out = []
    for item in items:
        try:
            c = int(str(item).strip())
        except ValueError:
            raise ValueError(f"class must be a class id, not {str(item)[:20]!r}") from None
        if not 0 <= c < len(class_names):
            raise ValueError(f"class {c} out of range: the run has {len(class_names)} classes")
        if c not in out:
            out.append(c)
    return sorted(out)


class NotReady(Exception):
    """The projection is being computed in the background (the message says how far)."""


def projection(ctx: Context, run_id: str, method: str, epoch: int, classes: list[int] | None) -> pd.DataFrame:
    """``Run.project`` of the map (at most ``ctx.max_points`` points), kept per run version.

    A projection not yet computed is started in the background and NotReady raised: a
    request never waits the minute a large UMAP or t-SNE takes (the page polls instead)."""
    key = ("projection", method, int(epoch), tuple(classes) if classes else None, ctx.max_points)
    state, value = ctx.background_result(run_id, key, lambda r: r.project(
        method=method, epoch=int(epoch), classes=classes, max_points=ctx.max_points))
    if state == "done":
        return value
    if state == "failed":
        raise value
    what = f"computing the {METHODS[method]} of epoch {epoch}"
    raise NotReady(f"{what}: {value:.0f} s so far (once per run, epoch and classes; then cached)"
                   if state == "running" else f"{what}: queued behind {value} other projection(s)")


def colour_values(ctx: Context, run_id: str, colour: str) -> pd.Series | None:
    """The per-sample numbers a numeric colouring shows (None for a label colouring)."""
    if colour not in VALUE_COLOURS:
        return None
    table, column = VALUE_COLOURS[colour]
    df = ctx.flipflops(run_id) if table == "flipflops" else ctx.cached(run_id, "dynamics", lambda r: r.dynamics())
    return df.set_index("sample_id")[column]


def map_figure(ctx: Context, run_id: str, method: str, epoch: int, classes: list[int] | None, colour: str):
    """The Fig. 5 map, as ``relabscope.plot.projection`` draws it, from the cached projection."""
    from relabscope import plot
    from relabscope.plot._style import title

    run = ctx.run(run_id)
    if colour not in COLOURS:
        raise ValueError(f"colour must be one of {', '.join(COLOURS)}, not {str(colour)[:40]!r}")
    head = title(f"{METHODS[method]} of the embeddings (epoch {epoch})", run.name)
    if colour == "clean" and run.clean_labels is None:
        return plot.note_figure("clean labels are unknown for this data set", head)
    df = projection(ctx, run_id, method, epoch, classes)
    values = colour_values(ctx, run_id, colour)
    fig = plot.projection_figure(df, run.class_names, color=COLOURS[colour] if values is not None else colour,
                                 values=values, title_text=head)
    fig.update_layout(dragmode="lasso", clickmode="event", uirevision=f"{run_id}|{method}|{epoch}|{classes}")
    if colour in VALUE_COLOURS:  # the colour bar takes the legend's corner: the legend goes below
        fig.update_layout(legend=dict(orientation="h", x=0, y=-0.02, yanchor="top"))
    return fig


def selected_ids(selected: Any) -> list[int]:
    """Sample ids of the points a lasso / box selection holds (``customdata[0]`` of each
    point), sorted, without repeats."""
    ids = set()
    for point in (selected or {}).get("points", []) if isinstance(selected, dict) else []:
        try:
            ids.add(int(float(point["customdata"][0])))
        except (KeyError, IndexError, TypeError, ValueError):
            continue  # the legend's marker-only trace has no customdata
    return sorted(ids)


def sample_from_click(click: Any) -> int | None:
    """The sample id of a clicked point (``customdata[0]``), or None."""
    ids = selected_ids(click if isinstance(click, dict) else None)
    return ids[0] if ids else None


def selection_rows(df: pd.DataFrame, flip: pd.DataFrame, class_names: Sequence[str], ids: Sequence[int],
                   href=None) -> list[dict]:
    """Table rows for the selected ``ids`` that are on the map ``df`` (``Run.project``):
    sample id, given label, label in effect at the map's epoch, clean label, flip-flops
    (``Run.flipflops()``) and a link to the inspector (``href(sample_id)``)."""
    def name(i: Any) -> str:
        i = int(i)
        return class_names[i] if 0 <= i < len(class_names) else "unknown"

    on_map = df.set_index("sample_id")
    ff = flip.set_index("sample_id")["flipflops"]
    rows = []
    for sid in sorted({int(s) for s in ids}):
        if sid not in on_map.index:
            continue
        r = on_map.loc[sid]
        rows.append({
            "sample": f"[open {sid}]({href(sid)})" if href is not None else str(sid),
            "sample_id": sid, "given": name(r["given_label"]), "effect": name(r["label"]),
            "clean": name(r["clean_label"]), "flipflops": int(ff.get(sid, 0)),
        })
    return rows


# ---------------------------------------------------------------------- Dash
def layout(ctx: Context, run_id: str, params: dict[str, str]) -> Any:
    run = ctx.run(run_id)
    head = html.H2(f"Embedding map (Fig. 5) — {run_id}")
    kept = run.embedding_epochs()
    if not kept:
        return html.Div([head, error_card("the run kept no embeddings yet (no committed epoch stored them)",
                                          "Nothing to show")])
    try:
        epoch = parse_embedding_epoch(run, params.get("epoch"))
        method = parse_method(params.get("method", "umap"))
        classes = parse_classes(params.get("classes"), run.class_names)
    except ValueError as exc:
        return html.Div([head, error_card(str(exc), "Cannot show this map"),
                         dcc.Link("open the default map", href=ctx.href(PATH, run_id))])
    colours = colour_choices(run)
    colour = params.get("color") if params.get("color") in colours else "effect"
    columns = [{"name": label, "id": cid, **({"presentation": kind} if kind else {})}
               for cid, label, kind in TABLE_COLUMNS if cid != "clean" or run.clean_labels is not None]
    return html.Div([
        dcc.Store(id="mp-args", data={"run": run_id}),
        head,
        html.Div([
            html.Span("method"),
            dcc.RadioItems(id="mp-method", options=[{"label": v, "value": k} for k, v in METHODS.items()],
                           value=method, inline=True),
            html.Span("epoch"),
            dcc.Dropdown(id="mp-epoch", options=[{"label": f"epoch {e}", "value": e} for e in kept], value=epoch,
                         clearable=False, style={"width": "130px"}),
            dcc.Dropdown(id="mp-classes", options=[{"label": n, "value": i} for i, n in enumerate(run.class_names)],
                         value=classes or [], multi=True, placeholder="classes (by label in effect): all",
                         style={"minWidth": "280px"}),
            html.Span("colour by"),
            dcc.RadioItems(id="mp-colour", options=[{"label": COLOURS[c], "value": c} for c in colours],
                           value=colour, inline=True),
        ], className="controls"),
        html.Div(id="mp-status", className="muted"),
        dcc.Interval(id="mp-poll", interval=POLL_MS, disabled=True),
        html.Div(dcc.Loading(dcc.Graph(id="mp-graph", config=GRAPH_CONFIG), delay_show=300), className="cell"),
        html.H3("Selected samples"),
        html.Div(HINT, id="mp-count", className="muted"),
        html.Div(dash_table.DataTable(
            id="mp-table", columns=columns, data=[], page_size=20, sort_action="native",
            markdown_options={"link_target": "_self"},
            style_cell={"fontSize": 13, "padding": "2px 8px", "textAlign": "right"},
            style_header={"fontWeight": "600"}), className="cell"),
    ])


def status(ctx: Context, run_id: str, method: str, epoch: int, classes: list[int] | None) -> str:
    """How many training samples the map shows (the projection's rows) of how many."""
    run = ctx.run(run_id)
    shown = len(projection(ctx, run_id, method, epoch, classes))
    total = int(run.train_mask.sum())
    cap = f" (capped at {ctx.max_points:,}; each class keeps its share)" if shown >= ctx.max_points else ""
    return f"{shown:,} of {total:,} training samples{cap}; × marks a label in effect ≠ given"


def _inputs(a: Any, method: Any, epoch: Any, classes: Any, ctx: Context):
    run_id = (a or {}).get("run")
    run = ctx.run(run_id)
    return (run_id, run, parse_method(method), parse_embedding_epoch(run, epoch),
            parse_classes(classes, run.class_names))


def register(app, ctx: Context) -> None:
    from relabscope.plot import note_figure

    live = Input("live-version", "data")
    picks = [Input("mp-method", "value"), Input("mp-epoch", "value"), Input("mp-classes", "value")]

    @app.callback(Output("mp-graph", "figure"), Output("mp-status", "children"), Output("mp-poll", "disabled"),
                  Input("mp-args", "data"), *picks, Input("mp-colour", "value"), live, Input("mp-poll", "n_intervals"))
    def _map(a, method, epoch, classes, colour, _version, _poll):
        try:
            run_id, run, method, epoch, classes = _inputs(a, method, epoch, classes, ctx)
            fig = map_figure(ctx, run_id, method, epoch, classes, colour or "effect")
            return fit(fig), status(ctx, run_id, method, epoch, classes), True
        except NotReady as wait:
            return note_figure(str(wait), "Embedding map"), html.Span(str(wait), className="computing"), False
        except Exception as exc:
            message = describe_error(exc)
            return note_figure(message, "Embedding map"), error_card(message, "Cannot draw this map"), True

    @app.callback(Output("mp-table", "data"), Output("mp-count", "children"),
                  Input("mp-graph", "selectedData"), *picks, State("mp-args", "data"), prevent_initial_call=True)
    def _selection(selected, method, epoch, classes, a):
        ids = selected_ids(selected) if callback_context.triggered_id in ("mp-graph", None) else []
        if not ids:  # nothing selected, or another map was asked for (its selection starts empty)
            return [], HINT
        try:
            run_id, run, method, epoch, classes = _inputs(a, method, epoch, classes, ctx)
            df = projection(ctx, run_id, method, epoch, classes)  # drawn, so computed: no wait
            rows = selection_rows(df, ctx.flipflops(run_id), run.class_names, ids,
                                  lambda sid: ctx.href("sample", run_id, sample=sid))
        except Exception as exc:
            return [], error_card(describe_error(exc))
        return rows, f"{len(rows):,} samples selected (labels in effect at epoch {epoch})"

    @app.callback(Output("url", "href", allow_duplicate=True), Input("mp-graph", "clickData"),
                  State("mp-args", "data"), prevent_initial_call=True)
    def _click(click, a):
        sid = sample_from_click(click)
        run_id = (a or {}).get("run")
        if sid is None or run_id not in ctx.registry:
            return no_update
        return ctx.href("sample", run_id, sample=sid)
