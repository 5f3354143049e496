"""Page 4, the embedding map (the paper's Fig. 5): a UMAP, t-SNE or PCA of the embeddings
a run kept at some epoch, coloured by the label in effect, the given label, the clean
label, flip-flops or the area under the margin. Hovering a point shows that sample's image
and labels; lasso or box a region to see its samples' images (a grid, the most telling first)
and list them; click a point to open that sample in the inspector.

A UMAP or t-SNE not computed yet is computed in the background (tens of seconds for the
first one in a process; a few minutes for hundreds of thousands of points); meanwhile the
page draws the PCA of the same points (about a second at any size) and replaces it when
the map is ready, so something is on screen at once.

``?run=RUN&method=tsne&epoch=3&classes=0,2&color=given`` opens a map directly. The map is
``Run.project`` (stratified to ``ctx.max_points`` points; above ``LANDMARKS`` of them its
landmarks are drawn per class by the labels in effect at the mapped epoch, which
``project_run`` reads itself, so a nearly emptied class keeps its cluster; cached on disk
by the Run and in memory here) drawn by ``relabscope.plot.projection_figure`` (WebGL);
the colour values are columns of ``Run.flipflops()`` / ``Run.dynamics()``.

Images travel only for the points a user looks at: the figure carries sample ids, never
image URLs (a URL per point would grow a 287,651-point map by megabytes). The hover card is
a ``dcc.Tooltip``: a clientside callback places it at the hovered point (at once, on the
side with room), a server callback fills it; the grid's thumbnails are decoded in one
batch (``ImageStore.prefetch``) before the page asks for them.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd
from dash import Input, Output, State, callback_context, dcc, html, no_update
from dash.dash_table.DataTable import DataTable

from relabscope import plot
from relabscope.analysis.projection import ProjectionMethod
from relabscope.dashboard import ids
from relabscope.dashboard.components import (GRAPH_CONFIG, canary_toggle, describe_error, error_card, fit, fmt,
                                             image_grid, sample_tile, without_canaries)
from relabscope.dashboard.context import Context
from relabscope.dashboard.inputs import (class_name, parse_choice, parse_classes, parse_embedding_epoch, parse_method,
                                         sample_from_click, selected_ids)
from relabscope.plot import note_figure
from relabscope.plot.embedding_maps import PROJECTION_NAMES
from relabscope.plot.caveats import embeddings_note
from relabscope.plot._style import class_colors, display_order, title

PATH = "map"
TITLE = "Embedding map"
PREVIEW: ProjectionMethod = "pca"  # drawn while another projection is computed
#: colour choice -> what the legend / picker calls it
COLOURS = {"effect": "label in effect", "given": "given label", "clean": "clean label",
           "flipflops": "flip-flops", "aum_given": "AUM (given label)"}
#: colour choice -> (table, column) of the per-sample number it shows
VALUE_COLOURS = {"flipflops": ("flipflops", "flipflops"), "aum_given": ("dynamics", "aum_given")}
POLL_MS = 2000  # while a projection is computed, the page asks again this often
HINT = ("Hover a point to see its image; lasso or box-select points to see and list them; "
        "click a point to open it in the sample inspector.")
#: label colouring -> the column of ``Run.project`` it colours by
LABEL_COLOURS = {"effect": "label", "given": "given_label", "clean": "clean_label"}
#: numeric colouring -> whether the grid shows its largest values first (the most
#: flip-flops first; the lowest AUM, the likeliest mislabelled, first)
LARGEST_FIRST = {"flipflops": True, "aum_given": False}
GRID_CAP = 60  # thumbnails a selection shows; the table lists every selected sample
TILE_PX = 96  # width of a grid thumbnail (a size of the image route)
TIP_PX = 160  # width of the hover card's image
#: places the hover card at the hovered point, on the side of it with room (runs in the
#: browser: no request per mouse move); its content comes from the server
PLACE_TOOLTIP_JS = """
function (hover) {
    var pt = hover && hover.points && hover.points[0];
    if (!pt || !pt.bbox) { return [false, window.dash_clientside.no_update, window.dash_clientside.no_update]; }
    var graph = document.getElementById('%s');
    var box = graph ? graph.getBoundingClientRect() : {width: 0, height: 0};
    var b = pt.bbox, y = (b.y0 + b.y1) / 2, halfHeight = 130, halfWidth = 110;
    // beside the point, on the side with more room; above or below it near the graph's
    // top or bottom edge (a card beside it would stick out), kept inside the graph's width
    var side = y < halfHeight ? 'bottom' : y > box.height - halfHeight ? 'top'
             : b.x0 > box.width / 2 ? 'left' : 'right';
    if (side === 'bottom' || side === 'top') {
        var x = Math.min(Math.max((b.x0 + b.x1) / 2, halfWidth), Math.max(box.width - halfWidth, halfWidth));
        b = {x0: x, x1: x, y0: b.y0, y1: b.y1};
    }
    return [true, b, side];
}
""" % ids.MP_GRAPH
TABLE_COLUMNS = [("sample", "sample", "markdown"), ("sample_id", "sample id", None), ("given", "given", None),
                 ("effect", "in effect", None), ("clean", "clean", None), ("flipflops", "flip-flops", None)]


# ---------------------------------------------------------------------- plain functions
def color_choices(run) -> list[str]:
    """The colourings that apply to ``run`` (clean only when the data set knows clean labels)."""
    return [c for c in COLOURS if c != "clean" or run.clean_labels is not None]


def projection(ctx: Context, run_id: str, method: ProjectionMethod, epoch: int,
               classes: list[int] | None) -> tuple[pd.DataFrame, ProjectionMethod, str | None]:
    """``Run.project`` of the map (at most ``ctx.max_points`` points), kept per run version:
    ``(map, the method drawn, None)``.

    A UMAP or t-SNE not yet computed is started in the background and the PCA of the
    same points comes back instead, with a note saying how far the real map is: a request
    never waits the minute a large UMAP or t-SNE takes (the page polls instead)."""
    def compute(m: ProjectionMethod) -> Any:
        return lambda r: r.project(method=m, epoch=int(epoch), classes=classes, max_points=ctx.max_points)

    key = ("projection", method, int(epoch), tuple(classes) if classes else None, ctx.max_points)
    if method == PREVIEW:
        return ctx.cached(run_id, key, compute(method)), method, None
    state, value = ctx.background_result(run_id, key, compute(method))
    if state == "done":
        return value, method, None
    if state == "failed":
        raise value
    preview = ctx.cached(run_id, (key[0], PREVIEW, *key[2:]), compute(PREVIEW))
    what = f"computing the {PROJECTION_NAMES[method]} of epoch {epoch}"
    pending = (f"{what}: {value:.0f} s so far (once per run, epoch and classes; then cached)"
               if state == "running" else f"{what}: queued behind {value} other projection(s)")
    return preview, PREVIEW, pending


def color_values(ctx: Context, run_id: str, colour: str) -> pd.Series | None:
    """The per-sample numbers a numeric colouring shows (None for a label colouring)."""
    if colour not in VALUE_COLOURS:
        return None
    table, column = VALUE_COLOURS[colour]
    df = ctx.flipflops(run_id) if table == "flipflops" else ctx.cached(run_id, "dynamics", lambda r: r.dynamics())
    return df.set_index("sample_id")[column]


def map_figure(ctx: Context, run_id: str, method: ProjectionMethod, epoch: int, classes: list[int] | None,
               colour: str, canaries: Any = None) -> tuple[Any, str, bool]:
    """The Fig. 5 map, as ``relabscope.plot.projection`` draws it, from the cached projection
    (or its PCA preview while it is computed), the status line under it, and whether the
    real map is still being computed (the page then polls). ``canaries``: the page's
    canary toggle (hidden canaries are left off the map; the projection is the same)."""
    run = ctx.run(run_id)
    parse_choice(colour, COLOURS, "colour")
    if colour == "clean" and run.clean_labels is None:
        head = title(f"{PROJECTION_NAMES[method]} of the embeddings (epoch {epoch})", run.name)
        return plot.note_figure("clean labels are unknown for this data set", head), "", False
    df, drawn, pending = projection(ctx, run_id, method, epoch, classes)
    all_points = len(df)
    df = without_canaries(run, df, canaries)
    head = title(f"{PROJECTION_NAMES[drawn]} (epoch {epoch}) while the {PROJECTION_NAMES[method]} computes" if pending
                 else f"{PROJECTION_NAMES[drawn]} of the embeddings (epoch {epoch})", run.name)
    values = color_values(ctx, run_id, colour)
    fig = plot.projection_figure(df, run.class_names, color=COLOURS[colour] if values is not None else colour,
                                 values=values, title_text=head, caveat=embeddings_note(run, [epoch]),
                                 classes=classes, hover_labels=False)  # the hover card replaces plotly's label
    # a new uirevision when the real map replaces the preview: its zoom would not fit
    fig.update_layout(dragmode="lasso", clickmode="event", uirevision=f"{run_id}|{drawn}|{epoch}|{classes}")
    line = status(ctx, run_id, all_points, hidden=all_points - len(df))
    return fig, (f"{pending}; {PROJECTION_NAMES[drawn]} preview: {line}" if pending else line), pending is not None


def selection_rows(df: pd.DataFrame, flip: pd.DataFrame, class_names: Sequence[str], sample_ids: Sequence[int],
                   href=None) -> list[dict]:
    """Table rows for the selected ``sample_ids`` that are on the map ``df`` (``Run.project``):
    sample id, given label, label in effect at the map's epoch, clean label, flip-flops
    (``Run.flipflops()``) and a link to the inspector (``href(sample_id)``)."""
    on_map = df.set_index("sample_id")
    ff = flip.set_index("sample_id")["flipflops"]
    rows = []
    for sid in sorted({int(s) for s in sample_ids}):
        if sid not in on_map.index:
            continue
        r = on_map.loc[sid]
        rows.append({
            "sample": f"[open {sid}]({href(sid)})" if href is not None else str(sid),
            "sample_id": sid, "given": class_name(class_names, r["given_label"]),
            "effect": class_name(class_names, r["label"]), "clean": class_name(class_names, r["clean_label"]),
            "flipflops": int(ff.get(sid, 0)),
        })
    return rows


def sample_lines(class_names: Sequence[str], row: Any, epoch: int, value_name: str | None = None,
                 value: Any = None) -> list[str]:
    """What the hover card and a grid tile say of one point of the map (``row``: its row of
    ``Run.project``): sample id, given label, label in effect at the map's ``epoch``, clean
    label where known, and the number the map is coloured by (``value_name``), if any."""
    lines = [f"sample {int(row['sample_id'])}", f"given: {class_name(class_names, row['given_label'])}",
             f"in effect: {class_name(class_names, row['label'])} (epoch {epoch})"]
    if int(row["clean_label"]) >= 0:
        lines.append(f"clean: {class_name(class_names, row['clean_label'])}")
    if value_name is not None:
        lines.append(f"{value_name}: {fmt(value)}")
    return lines


def grid_ids(df: pd.DataFrame, sample_ids: Sequence[int], class_names: Sequence[str], colour: str,
             values: pd.Series | None = None, cap: int = GRID_CAP) -> tuple[list[int], int]:
    """Which of the selected ``sample_ids`` the grid shows, in its order, and how many of
    them are on the map ``df`` (``Run.project``).

    Coloured by a number (``values``): the ``cap`` most telling by it (``LARGEST_FIRST``;
    unknown values last). Coloured by a label: each class of that label gets its share of
    the ``cap`` tiles in turn (a lasso over a big cluster and a few strays shows the strays
    too), grouped in the legend's order, relabelled samples (label in effect ≠ given)
    first in each class; ties by sample id."""
    on = df[df["sample_id"].isin([int(s) for s in sample_ids])]
    sid = on["sample_id"].to_numpy(np.int64)
    if values is not None:
        v = values.reindex(sid).to_numpy(float)
        key = np.nan_to_num(-v if LARGEST_FIRST.get(colour, True) else v, nan=np.inf)
        return sid[np.lexsort((sid, key))][:cap].tolist(), len(sid)
    rank = np.full(len(class_names) + 1, len(class_names))  # the last entry: an unknown class
    rank[display_order(class_names)] = np.arange(len(class_names))
    labels = on[LABEL_COLOURS.get(colour, "label")].to_numpy(np.int64)
    cls = rank[np.where((labels >= 0) & (labels < len(class_names)), labels, -1)]
    kept = on["label"].to_numpy(np.int64) == on["given_label"].to_numpy(np.int64)
    grouped = np.lexsort((sid, kept, cls))  # by class, relabelled first, then by id
    in_class = np.arange(len(grouped)) - np.searchsorted(cls[grouped], cls[grouped])  # place in its class
    turns = np.zeros(len(grouped), dtype=bool)
    turns[np.lexsort((cls[grouped], in_class))[:cap]] = True  # each class's first, then each one's second ...
    return sid[grouped[turns]].tolist(), len(sid)


def hover_card(ctx: Context, run_id: str, df: pd.DataFrame, sample_id: int, epoch: int, colour: str) -> Any:
    """The hover card of one point: its image (``TIP_PX`` wide; none for a run without
    images: ``Run.has_images``) and ``sample_lines``; None for a sample not on the map ``df``."""
    run = ctx.run(run_id)
    rows = df[df["sample_id"] == int(sample_id)]
    if rows.empty:
        return None
    values = color_values(ctx, run_id, colour)
    value = values.get(int(sample_id)) if values is not None else None
    lines = sample_lines(run.class_names, rows.iloc[0], epoch, COLOURS[colour] if values is not None else None, value)
    image = html.Img(src=ctx.image_url(run_id, sample_id, TIP_PX), alt=lines[0], className="tip-image",
                     style={"display": "block", "width": f"{TIP_PX}px", "imageRendering": "pixelated",
                            "marginBottom": "4px"}) if run.has_images else None
    text = [html.Div(line, style={"fontWeight": 600} if i == 0 else None) for i, line in enumerate(lines)]
    return html.Div([image, *text], style={"fontSize": "13px", "lineHeight": "1.35", "color": "#222",
                                           "whiteSpace": "nowrap"})


def selection_grid(ctx: Context, run_id: str, df: pd.DataFrame, sample_ids: Sequence[int], epoch: int,
                   colour: str) -> Any:
    """Thumbnails of the selected samples ``grid_ids`` picks, each linking to the inspector,
    their images decoded in one batch; None when none is on the map."""
    run = ctx.run(run_id)
    values = color_values(ctx, run_id, colour)
    shown, total = grid_ids(df, sample_ids, run.class_names, colour, values)
    if not shown:
        return None
    pictures = run.has_images  # without a source: text tiles, never a broken image
    if pictures:
        ctx.images.prefetch(run_id, shown, TILE_PX)
    rows = df.set_index("sample_id").loc[shown]
    accents = class_colors(run.class_names) if values is None else {}
    column = LABEL_COLOURS.get(colour, "label")
    tiles = []
    for sid, row in zip(shown, rows.to_dict("records")):
        row["sample_id"] = sid
        value = values.get(sid) if values is not None else None
        lines = sample_lines(run.class_names, row, epoch, COLOURS[colour] if values is not None else None, value)
        # the tile says the id, the label in effect and what differs from it; its hover text all of it
        caption = [str(sid), class_name(run.class_names, row["label"])]
        if row["given_label"] != row["label"]:
            caption.append(f"given {class_name(run.class_names, row['given_label'])}")
        if values is not None:
            caption.append(f"{COLOURS[colour]} {fmt(value)}")
        tiles.append(sample_tile(ctx.href("sample", run_id, sample=sid), caption,
                                 image=ctx.image_url(run_id, sid, TILE_PX) if pictures else None, alt=lines[0],
                                 width=TILE_PX, title=" · ".join(lines),
                                 accent=accents.get(class_name(run.class_names, row[column]))))
    how = {"flipflops": "most flip-flops first", "aum_given": "lowest AUM first"}.get(
        colour, f"a share of each {COLOURS[colour]}, relabelled ones first")
    more = f"; {total - len(shown):,} more in the table below" if total > len(shown) else ""
    note = f"{len(shown):,} of {total:,} selected samples, {how}{more}. Click one to open it."
    return image_grid(tiles, note)


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
        method = parse_method(params.get("method", "umap"), PROJECTION_NAMES)
        classes = parse_classes(params.get("classes"), run.class_names)
    except ValueError as exc:
        return html.Div([head, error_card(str(exc), "Cannot show this map"),
                         dcc.Link("open the default map", href=ctx.href(PATH, run_id))])
    colours = color_choices(run)
    colour = params.get("color") if params.get("color") in colours else "effect"
    columns = [{"name": label, "id": cid, **({"presentation": kind} if kind else {})}
               for cid, label, kind in TABLE_COLUMNS if cid != "clean" or run.clean_labels is not None]
    return html.Div([
        dcc.Store(id=ids.MP_ARGS, data={"run": run_id}),
        head,
        html.Div([
            html.Span("method"),
            dcc.RadioItems(id=ids.MP_METHOD, options=[{"label": v, "value": k} for k, v in PROJECTION_NAMES.items()],
                           value=method, inline=True),
            html.Span("epoch"),
            dcc.Dropdown(id=ids.MP_EPOCH, options=[{"label": f"epoch {e}", "value": e} for e in kept], value=epoch,
                         clearable=False, style={"width": "130px"}),
            dcc.Dropdown(id=ids.MP_CLASSES, options=[{"label": n, "value": i} for i, n in enumerate(run.class_names)],
                         value=classes or [], multi=True, placeholder="classes (by label in effect): all",
                         style={"minWidth": "280px"}),
            html.Span("colour by"),
            dcc.RadioItems(id=ids.MP_COLOUR, options=[{"label": COLOURS[c], "value": c} for c in colours],
                           value=colour, inline=True),
            canary_toggle(ids.MP_CANARIES, run),
        ], className="controls"),
        html.Div(id=ids.MP_STATUS, className="muted"),
        dcc.Interval(id=ids.MP_POLL, interval=POLL_MS, disabled=True),
        # the tooltip's bbox is relative to its positioned parent: a box the graph starts at
        html.Div(html.Div([
            dcc.Loading(dcc.Graph(id=ids.MP_GRAPH, config=GRAPH_CONFIG, clear_on_unhover=True), delay_show=300),
            dcc.Tooltip(id=ids.MP_TOOLTIP, background_color="#fff", border_color="#99a", loading_text="…",
                        zindex=20),
        ], style={"position": "relative"}), className="cell"),
        html.H3("Selected samples"),
        html.Div(HINT, id=ids.MP_COUNT, className="muted"),
        html.Div(id=ids.MP_GRID),
        html.Div(DataTable(
            id=ids.MP_TABLE, columns=columns, data=[], page_size=20, sort_action="native",
            markdown_options={"link_target": "_self"},
            style_cell={"fontSize": 13, "padding": "2px 8px", "textAlign": "right"},
            style_header={"fontWeight": "600"}), className="cell"),
    ])


def status(ctx: Context, run_id: str, shown: int, hidden: int = 0) -> str:
    """How many training samples the map shows (``shown``: the projection's rows, of which
    ``hidden`` canaries are left off) of how many."""
    run = ctx.run(run_id)
    total = int(run.train_mask.sum())
    capped = ctx.max_points is not None and shown >= ctx.max_points
    cap = f" (capped at {ctx.max_points:,}; each class keeps its share; serve --max-points 0 maps all)" if capped else ""
    canaries = f" ({hidden:,} canaries hidden)" if hidden else ""
    return f"{shown - hidden:,} of {total:,} training samples{canaries}{cap}; × marks a label in effect ≠ given"


def _inputs(a: Any, method: Any, epoch: Any, classes: Any, ctx: Context):
    run_id = (a or {}).get("run")
    run = ctx.run(run_id)
    return (run_id, run, parse_method(method, PROJECTION_NAMES), parse_embedding_epoch(run, epoch),
            parse_classes(classes, run.class_names))


def register(app, ctx: Context) -> None:
    def _drawn(a: Any, method: Any, epoch: Any, classes: Any, colour: Any,
               canaries: Any) -> tuple[str, pd.DataFrame, int, str]:
        """What the map draws for these inputs (the map or its preview): run id, points,
        epoch and colouring, for the views beside it."""
        run_id, run, method, epoch, classes = _inputs(a, method, epoch, classes, ctx)
        df = without_canaries(run, projection(ctx, run_id, method, epoch, classes)[0], canaries)
        return run_id, df, epoch, parse_choice(colour or "effect", COLOURS, "colour")

    live = Input(ids.LIVE_VERSION, "data")
    picks = [Input(ids.MP_METHOD, "value"), Input(ids.MP_EPOCH, "value"), Input(ids.MP_CLASSES, "value")]

    @app.callback(Output(ids.MP_GRAPH, "figure"), Output(ids.MP_STATUS, "children"), Output(ids.MP_POLL, "disabled"),
                  Input(ids.MP_ARGS, "data"), *picks, Input(ids.MP_COLOUR, "value"), Input(ids.MP_CANARIES, "value"),
                  live, Input(ids.MP_POLL, "n_intervals"))
    def _map(a, method, epoch, classes, colour, canaries, _version, _poll):
        try:
            run_id, run, method, epoch, classes = _inputs(a, method, epoch, classes, ctx)
            fig, line, waiting = map_figure(ctx, run_id, method, epoch, classes, colour or "effect", canaries)
            if waiting:  # the page asks again every POLL_MS until the map replaces the preview
                return fit(fig), html.Span(line, className="computing"), False
            return fit(fig), line, True
        except Exception as exc:
            message = describe_error(exc)
            return note_figure(message, "Embedding map"), error_card(message, "Cannot draw this map"), True

    @app.callback(Output(ids.MP_TABLE, "data"), Output(ids.MP_COUNT, "children"),
                  Input(ids.MP_GRAPH, "selectedData"), *picks, State(ids.MP_ARGS, "data"), prevent_initial_call=True)
    def _selection(selected, method, epoch, classes, a):
        chosen = selected_ids(selected) if callback_context.triggered_id in (ids.MP_GRAPH, None) else []
        if not chosen:  # nothing selected, or another map was asked for (its selection starts empty)
            return [], HINT
        try:
            run_id, run, method, epoch, classes = _inputs(a, method, epoch, classes, ctx)
            df = projection(ctx, run_id, method, epoch, classes)[0]  # what is drawn: the map or its preview
            rows = selection_rows(df, ctx.flipflops(run_id), run.class_names, chosen,
                                  lambda sid: ctx.href("sample", run_id, sample=sid))
        except Exception as exc:
            return [], error_card(describe_error(exc))
        return rows, f"{len(rows):,} samples selected (labels in effect at epoch {epoch})"

    @app.callback(Output(ids.MP_GRID, "children"), Input(ids.MP_GRAPH, "selectedData"), *picks,
                  Input(ids.MP_COLOUR, "value"), State(ids.MP_CANARIES, "value"), State(ids.MP_ARGS, "data"),
                  prevent_initial_call=True)
    def _grid(selected, method, epoch, classes, colour, canaries, a):
        # another colouring draws the same points: the selection stands, in the new order
        same_points = callback_context.triggered_id in (ids.MP_GRAPH, ids.MP_COLOUR, None)
        chosen = selected_ids(selected) if same_points else []
        if not chosen:  # cleared, or another map was asked for
            return None
        try:
            run_id, df, epoch, colouring = _drawn(a, method, epoch, classes, colour, canaries)
            return selection_grid(ctx, run_id, df, chosen, epoch, colouring)
        except Exception as exc:
            return error_card(describe_error(exc), "Cannot show the selected images")

    app.clientside_callback(PLACE_TOOLTIP_JS, Output(ids.MP_TOOLTIP, "show"), Output(ids.MP_TOOLTIP, "bbox"),
                            Output(ids.MP_TOOLTIP, "direction"), Input(ids.MP_GRAPH, "hoverData"))

    @app.callback(Output(ids.MP_TOOLTIP, "children"), Input(ids.MP_GRAPH, "hoverData"), State(ids.MP_METHOD, "value"),
                  State(ids.MP_EPOCH, "value"), State(ids.MP_CLASSES, "value"), State(ids.MP_COLOUR, "value"),
                  State(ids.MP_CANARIES, "value"), State(ids.MP_ARGS, "data"), prevent_initial_call=True)
    def _hover(hover, method, epoch, classes, colour, canaries, a):
        sid = sample_from_click(hover)
        if sid is None:  # the pointer left the point: the clientside callback hides the card
            return no_update
        try:
            run_id, df, epoch, colouring = _drawn(a, method, epoch, classes, colour, canaries)
            return hover_card(ctx, run_id, df, sid, epoch, colouring)
        except Exception as exc:
            return html.Div(describe_error(exc), className="err-msg")

    @app.callback(Output(ids.URL, "href", allow_duplicate=True), Input(ids.MP_GRAPH, "clickData"),
                  State(ids.MP_ARGS, "data"), prevent_initial_call=True)
    def _click(click, a):
        sid = sample_from_click(click)
        run_id = (a or {}).get("run")
        if sid is None or run_id not in ctx.registry:
            return no_update
        return ctx.href("sample", run_id, sample=sid)
