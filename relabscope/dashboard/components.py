"""Building blocks every page uses: error cards, figures that fail alone, number cards,
tables from DataFrames, grids of sample thumbnails."""

from __future__ import annotations

import math
from typing import Any, Callable

import pandas as pd
from dash import dcc, html
from dash.dash_table.DataTable import DataTable

from relabscope.errors import RelabscopeError

GRAPH_CONFIG = {"displaylogo": False, "toImageButtonOptions": {"format": "png"}}


def error_card(message: str, title: str = "Cannot show this") -> html.Div:
    return html.Div([html.Div(title, className="err-title"), html.Div(message, className="err-msg")],
                    className="card error-card")


def warning_card(messages: list[str], title: str) -> html.Div | None:
    """A card listing ``messages`` (one line each) under ``title``; None when there are none."""
    if not messages:
        return None
    return html.Div([html.Div(title, className="warn-title"), html.Ul([html.Li(m) for m in messages])],
                    className="card warn-card")


def class_balance_card(messages: list[str]) -> html.Div | None:
    """The warning card for classes relabelling emptied or shrank below half their size."""
    return warning_card(messages, "Relabelling changed the class balance")


def note_card(message: str) -> html.Div:
    return html.Div(message, className="card note-card")


def describe_error(exc: BaseException) -> str:
    """An error as one line for a card: relabscope's own errors as their message (it names
    the file and the problem), anything else with its class name."""
    if isinstance(exc, RelabscopeError):
        return str(exc).strip().splitlines()[0][:500] if str(exc).strip() else type(exc).__name__
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:500]


def safe(make: Callable[[], Any], title: str = "Cannot show this") -> Any:
    """``make()``, or an error card saying why it failed (one failing view never takes
    the page down)."""
    try:
        return make()
    except Exception as exc:
        return error_card(describe_error(exc), title)


def fit(fig: Any) -> Any:
    """``fig`` without its fixed width: the plot helpers size figures for files and
    notebooks; on a page the cell decides (a fixed width overflows a half-page cell)."""
    fig.update_layout(width=None)
    return fig


def graph(fig: Any, graph_id: Any = None, **kwargs: Any) -> dcc.Graph:
    """A dcc.Graph of ``fig`` that fits its cell."""
    props = {"figure": fit(fig), "config": GRAPH_CONFIG, **kwargs}
    if graph_id is not None:
        props["id"] = graph_id
    return dcc.Graph(**props)


def figure_block(make: Callable[[], Any], graph_id: Any = None, **kwargs: Any) -> Any:
    """A graph of ``make()`` (a plotly figure), or an error card."""
    return safe(lambda: graph(make(), graph_id, **kwargs))


def fmt(value: Any, kind: str = "") -> str:
    """One number for display: percent, integer or 4 significant digits; n/a for NaN."""
    if value is None:
        return "n/a"
    if isinstance(value, float) and math.isnan(value):
        return "n/a"
    try:
        if pd.isna(value):
            return "n/a"
    except (TypeError, ValueError):
        pass
    if kind == "%":
        return f"{float(value):.1%}"
    if isinstance(value, (int,)) or (hasattr(value, "is_integer") and float(value).is_integer() and kind == "int"):
        return f"{int(value):,}"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def number_cards(items: list[tuple[str, str, str | None]]) -> html.Div:
    """Cards of (label, shown value, hover text)."""
    return html.Div([html.Div([html.Div(v, className="num"), html.Div(label, className="lbl")],
                              className="card num-card", title=hint or "") for label, v, hint in items],
                    className="num-row")


def frame_table(df: pd.DataFrame, *, index: bool = False, table_id: Any = None, page_size: int = 25,
                **kwargs: Any) -> DataTable:
    """A small DataTable of ``df`` (floats to 4 significant digits)."""
    shown = df.reset_index() if index else df
    shown = shown.copy()
    shown.columns = [str(c) for c in shown.columns]
    for c in shown.columns:
        if pd.api.types.is_float_dtype(shown[c]):
            shown[c] = shown[c].map(lambda v: fmt(float(v)))
        elif not pd.api.types.is_integer_dtype(shown[c]):
            shown[c] = shown[c].map(lambda v: fmt(v) if isinstance(v, float) else ("n/a" if v is pd.NA else str(v)))
    props = dict(columns=[{"name": c, "id": c} for c in shown.columns], data=shown.to_dict("records"),
                 page_size=page_size, style_table={"overflowX": "auto"}, style_cell={"fontSize": 13, "padding": "3px 8px"},
                 style_header={"fontWeight": "600"}, **kwargs)
    if table_id is not None:
        props["id"] = table_id
    return DataTable(**props)



def sample_tile(href: str, caption: list[str], *, image: str | None = None, alt: str = "", width: int = 96,
                title: str = "", accent: str | None = None) -> dcc.Link:
    """One sample as a link to the inspector: its ``width``-pixel thumbnail (``image``: a
    URL, described by ``alt``; None for a run whose pixels are unknown: text only, never a
    broken image) over ``caption`` (short lines, cut with an ellipsis where too long;
    ``title``, the hover text, says it all) under a stripe of ``accent`` (the colour the
    sample has in a figure)."""
    line = {"overflow": "hidden", "textOverflow": "ellipsis", "whiteSpace": "nowrap", "fontSize": "13px"}
    lines = [html.Div(text, style={**line, **({"fontWeight": 600} if i == 0 else {"color": "#555"})})
             for i, text in enumerate(caption)]
    picture = [html.Img(src=image, alt=alt, className="thumb",
                        style={"display": "block", "width": f"{width}px"})] if image else []
    # the image's 1 px border, 2 px padding and the tile's own 1 px border on each side
    return dcc.Link(picture + lines, href=href, title=title, className="sample-tile", style={
        "display": "block", "width": f"{width + 8}px", "padding": "2px", "boxSizing": "border-box",
        "background": "#fff", "border": "1px solid #e1e4e8", "borderTop": f"4px solid {accent or '#e1e4e8'}",
        "borderRadius": "4px", "color": "#222"})


def image_grid(tiles: list[Any], note: str | None = None) -> html.Div:
    """``tiles`` (``sample_tile``) in rows as wide as the page allows, under a ``note``
    saying what they are (which of how many, in what order)."""
    grid = html.Div(tiles, className="sample-grid", style={"display": "flex", "flexWrap": "wrap", "gap": "6px"})
    return html.Div([html.Div(note, className="muted", style={"margin": ".3em 0"}) if note else None, grid])


#: the value a canary toggle holds when canaries are hidden
HIDE_CANARIES = "hide"


def canary_toggle(toggle_id: str, run: Any) -> dcc.Checklist:
    """"hide canaries" for a page that lists or draws training samples: there for every
    run (a callback needs its input), shown only for a run trained with canaries."""
    label = html.Span("hide canaries", title="canaries: labels relabscope made wrong on purpose (--canaries), to "
                                             "measure the ranking and relabelling")
    return dcc.Checklist(id=toggle_id, options=[{"label": label, "value": HIDE_CANARIES}], value=[], inline=True,
                         style=None if run.has_canaries else {"display": "none"})


def hides_canaries(run: Any, toggle: Any) -> bool:
    """Whether a page's canary toggle hides canaries of ``run`` (one that has some)."""
    return bool(run.has_canaries) and HIDE_CANARIES in (toggle or [])


def without_canaries(run: Any, rows: pd.DataFrame, toggle: Any) -> pd.DataFrame:
    """``rows`` (a ``sample_id`` column) without the run's canaries when ``toggle`` says to
    hide them."""
    if not hides_canaries(run, toggle):
        return rows
    return rows[run.canary_labels[rows["sample_id"].to_numpy()] < 0]
