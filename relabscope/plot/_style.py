"""One look for every relabscope figure: template, class colours, role colours, notes.

Class colours are keyed by the class *name*, not its id, so "Happiness" has the same
colour in a RAF-DB run (id 3) and an AffectNet run (id 1); names the palette does not know
get colours by position. ``display_order`` maps each data set's own class order to one
canonical order for axes (methods.md: keep each data set's ids, map to one display order).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence, Union

import plotly.graph_objects as go
import plotly.io as pio

from relabscope.deprecation import renamed

if TYPE_CHECKING:
    from relabscope.analysis.run import Run

#: what a view of several runs takes: one run, or a list or tuple of them
Runs = Union["Run", list["Run"], tuple["Run", ...]]

TEMPLATE_NAME = "relabscope"
_TRACE_TYPES = ("bar", "scatter", "scattergl", "heatmap", "histogram")

# roles in the paper's Fig. 1/4: the given (GT) label, the label in effect, the others
GIVEN = "#2ca02c"      # green
EFFECT = "#f5a623"     # amber
OTHER = "#4c78a8"      # blue
CLEAN = "#111111"      # outline / marker of the clean label
NOISY = "#d62728"      # noisy samples in scatter plots
FAINT = "#b0b0b0"      # clean samples, unknown values

# canonical expression order and colours; synonyms across data sets map onto one key
_CANONICAL = ["neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt"]
_SYNONYMS = {"happy": "happiness", "sad": "sadness", "angry": "anger", "surprised": "surprise",
             "fearful": "fear", "disgusted": "disgust"}
_CLASS_COLOURS = {
    "neutral": "#7f7f7f", "happiness": "#e6b800", "surprise": "#17becf", "sadness": "#1f77b4",
    "anger": "#d62728", "disgust": "#8c564b", "fear": "#9467bd", "contempt": "#e377c2",
}
_FALLBACK = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d",
             "#666666", "#1f78b4", "#b2df8a", "#fb9a99", "#fdbf6f"]

# Titles wrap to fit the narrowest dashboard cell (the page grid's 520 px minimum, about
# 505 px inside the cell's padding); measured in headless Chromium at the template's fonts.
CELL_PX = 505
SUBTITLE_CHARS = 74     # 12 px subtitle, about 6.3 px a character
TITLE_CHARS = 52        # 17 px title, about 9 px a character
PANEL_CHAR_PX = 6.8     # 12 px panel (subplot) title
PANEL_LINE_PX = 16
# the header above a plot, top down (px): padding, title lines, subtitle lines, the gap
TITLE_PAD = 38  # below the modebar a dashboard graph shows in its top right corner
TITLE_LINE_PX = 21
SUBTITLE_GAP = 4
SUBTITLE_LINE_PX = 16
PLOT_GAP = 14
TOP_MARGIN = 80  # the template's

# one colour per run in comparison figures (A, B, ...)
RUN_COLOURS = ["#4c78a8", "#e45756", "#54a24b", "#b279a2", "#ff9da6", "#9d755d"]


def _key(name: str) -> str:
    k = str(name).strip().lower()
    return _SYNONYMS.get(k, k)


def class_colors(class_names: Sequence[str]) -> dict[str, str]:
    """One colour per class, stable across data sets for the usual expression names.

    Args:
        class_names: the classes.

    Returns:
        Class name -> colour (``#rrggbb``); unknown names get colours by position.
    """
    out, spare = {}, iter(_FALLBACK * (1 + len(class_names) // len(_FALLBACK)))
    for name in class_names:
        out[name] = _CLASS_COLOURS.get(_key(name)) or next(spare)
    return out


def display_order(class_names: Sequence[str]) -> list[int]:
    """Class ids in display order: known expressions in canonical order, then the rest in
    the data set's own order.

    Args:
        class_names: the classes, by class id.

    Returns:
        Class ids.
    """
    known = [(i, _CANONICAL.index(_key(n))) for i, n in enumerate(class_names) if _key(n) in _CANONICAL]
    rest = [i for i, n in enumerate(class_names) if _key(n) not in _CANONICAL]
    return [i for i, _ in sorted(known, key=lambda t: t[1])] + rest


def ordered_names(class_names: Sequence[str]) -> list[str]:
    """:func:`display_order` as names.

    Args:
        class_names: the classes, by class id.

    Returns:
        Class names in display order.
    """
    return [class_names[i] for i in display_order(class_names)]


#: deprecated spelling of :func:`class_colors`
class_colours = renamed(class_colors, "class_colours")


def run_color(i: int) -> str:
    return RUN_COLOURS[i % len(RUN_COLOURS)]


def _register() -> None:
    if TEMPLATE_NAME in pio.templates:
        return
    # plotly_white's layout, but trace defaults only for the trace types relabscope draws:
    # every figure copies its template, and the full one costs several times as much
    # (tens of ms per dashboard figure under load)
    base = pio.templates["plotly_white"]
    data = {k: v for k, v in base.data.to_plotly_json().items() if k in _TRACE_TYPES}
    t = go.layout.Template(layout=base.layout, data=data)
    t.layout.font = dict(family="Inter, Helvetica, Arial, sans-serif", size=13, color="#222")
    t.layout.title = dict(x=0.01, xanchor="left", y=1, yref="container", yanchor="top",
                          pad=dict(t=TITLE_PAD), font=dict(size=16))
    t.layout.margin = dict(l=70, r=30, t=TOP_MARGIN, b=60)
    t.layout.legend = dict(bgcolor="rgba(255,255,255,0.7)")
    t.layout.hoverlabel = dict(namelength=-1)
    t.layout.colorway = RUN_COLOURS
    pio.templates[TEMPLATE_NAME] = t


def title(what: str, run_name: str | Iterable[str] | None = None) -> str:
    """Figure title that names the run(s)."""
    if run_name is None:
        return what
    if not isinstance(run_name, str):
        run_name = " vs ".join(str(n) for n in run_name)
    return f"{what} — {run_name}" if run_name else what


def finish(fig: go.Figure, title_text: str, *, height: int | None = None, width: int | None = None,
           subtitle: str | None = None, header_px: int = 0, **layout: Any) -> go.Figure:
    """Apply the template, the title (and a subtitle) and a size.

    Title and subtitle are wrapped to fit a half-page dashboard cell, and the top margin
    grows to hold every line plus ``header_px`` (room a figure needs above its plot area,
    e.g. two-line panel titles); ``height`` grows by as much, so the plot keeps its size.
    """
    _register()
    title_lines = wrap_title(title_text)
    sub_lines = wrap(subtitle) if subtitle else []
    fig.update_layout(template=TEMPLATE_NAME, title_text="<br>".join(title_lines), **layout)
    if subtitle:
        fig.update_layout(title_subtitle_text="<br>".join(sub_lines), title_subtitle_font=dict(size=12, color="#555"))
        fig.layout.meta = {**(fig.layout.meta or {}), "subtitle": subtitle}
    asked = (layout.get("margin") or {}).get("t", TOP_MARGIN)
    need = (TITLE_PAD + TITLE_LINE_PX * len(title_lines) + header_px + PLOT_GAP
            + (SUBTITLE_GAP + SUBTITLE_LINE_PX * len(sub_lines) if sub_lines else 0))
    if need > asked:
        fig.update_layout(margin_t=need)
        if height is not None:
            height += need - asked
    if height is not None:
        fig.update_layout(height=height)
    if width is not None:
        fig.update_layout(width=width)
    return fig


def panel_titles(titles: Sequence[str], *, spacing: float, margin_px: int = 110) -> tuple[list[str], int]:
    """Subplot titles for ``make_subplots`` over one row, each wrapped to its panel's
    width in the narrowest cell, and the pixels the tallest needs beyond one line (for
    ``finish(header_px=...)``): plotly centres a subplot title over its panel and never
    wraps it, so a long one runs into its neighbour or off the figure.

    >>> panel_titles(["short", "a much longer panel title than that"], spacing=0.1)
    (['short', 'a much longer panel title<br>than that'], 16)
    """
    cols = max(1, len(titles))
    panel_px = (CELL_PX - margin_px) * (1 - spacing * (cols - 1)) / cols
    chars = max(8, int(panel_px / PANEL_CHAR_PX))
    wrapped = [wrap(t, chars) for t in titles]
    extra = PANEL_LINE_PX * (max((len(w) for w in wrapped), default=1) - 1)
    return ["<br>".join(w) for w in wrapped], extra


def wrap_title(text: str) -> list[str]:
    """A title as lines of at most TITLE_CHARS characters, the run names (after " — ")
    kept together on the last line when they fit there."""
    if len(text) <= TITLE_CHARS:
        return [text]
    what, dash, who = text.partition(" — ")
    lines = wrap(what, TITLE_CHARS)
    if who and len(lines[-1]) + 3 + len(who) <= TITLE_CHARS:
        lines[-1] += " — " + who
    elif who:
        lines += wrap("— " + who, TITLE_CHARS)
    return lines


def wrap(text: str, width: int = SUBTITLE_CHARS) -> list[str]:
    """``text`` as lines of at most ``width`` characters: plotly never wraps a title or
    subtitle itself, so a long one runs off a half-page figure. Lines break at ``<br>``,
    then between `` · ``-separated phrases, and inside a phrase only when it alone is too
    long (at spaces).

    >>> wrap("one two three", width=7)
    ['one two', 'three']
    >>> wrap("first part · second part", width=16)
    ['first part', 'second part']
    """
    lines: list[str] = []
    for part in text.split("<br>"):
        line = ""
        for phrase in part.split(" · "):
            if not line:
                line = phrase
            elif len(line) + 3 + len(phrase) <= width:
                line = f"{line} · {phrase}"
            else:
                lines.append(line)
                line = phrase
            while len(line) > width and " " in line[1:width + 1]:
                cut = line.rindex(" ", 1, width + 1)
                lines.append(line[:cut])
                line = line[cut + 1:]
        lines.append(line)
    return lines


def note(fig: go.Figure, text: str, *, y: float = 1.0, **kwargs: Any) -> go.Figure:
    """A small italic note in the top right corner (outside no data)."""
    fig.add_annotation(text=f"<i>{text}</i>", xref="paper", yref="paper", x=1.0, y=y,
                       xanchor="right", yanchor="bottom", showarrow=False,
                       font=dict(size=12, color="#555"), **kwargs)
    return fig


def note_figure(message: str, title_text: str, *, height: int = 260) -> go.Figure:
    """A figure that says why there is nothing to draw (instead of an empty chart).

    Args:
        message: why, e.g. "scn never relabels".
        title_text: the title.
        height: in pixels.

    Returns:
        The figure, the message kept in ``layout.meta`` for :func:`figure_note`.
    """
    fig = go.Figure()
    fig.add_annotation(text=message, xref="paper", yref="paper", x=0.5, y=0.5, showarrow=False,
                       font=dict(size=16, color="#555"))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig = finish(fig, title_text, height=height)
    fig.layout.meta = {"note": message}
    return fig


def figure_subtitle(fig: go.Figure) -> str | None:
    """The subtitle line :func:`finish` added (e.g. which runs never relabel), else None."""
    meta = fig.layout.meta
    return meta.get("subtitle") if isinstance(meta, dict) else None


def figure_note(fig: go.Figure) -> str | None:
    """Whether a figure is a note, and what it says (the report lists such views as notes).

    Args:
        fig: a figure.

    Returns:
        The message of a figure made by :func:`note_figure`, else None.
    """
    meta = fig.layout.meta
    if isinstance(meta, dict):
        return meta.get("note")
    return None


def never_relabels(method: str | None = None, run_name: str | None = None) -> str:
    """The note for a method that cannot relabel ("baseline never relabels").

    Args:
        method: the method's name (None: "this method").
        run_name: the run's name, named too when it differs from the method's.

    Returns:
        The note.
    """
    who = method or "this method"
    if run_name and run_name != method:
        who = f"{run_name} ({method})" if method else run_name
    return f"{who} never relabels"


def as_list(runs: Runs) -> list[Run]:
    """One run or several -> a list of runs."""
    if isinstance(runs, (list, tuple)):
        return list(runs)
    return [runs]


def unique_names(names: Sequence[str]) -> list[str]:
    """Run names for legends; equal names get (A), (B), ... appended."""
    names = [str(n) for n in names]
    if len(set(names)) == len(names):
        return names
    return [f"{n} ({chr(ord('A') + i)})" for i, n in enumerate(names)]


def silent_message(names: Sequence[str], methods: Mapping[str, str] | None = None) -> str:
    """The note for runs whose method cannot relabel (no run name when there is one)."""
    methods = methods or {}
    if len(names) == 1 and not methods.get(names[0]):
        return never_relabels(None)
    return "; ".join(never_relabels(methods.get(n), n) for n in names)


#: how a figure names the pass its embeddings come from (``Run.embedding_sources``)
SOURCE_WORDS = {"train": "the training pass (augmented, train mode)", "probe": "the eval-mode probe pass"}


def source_note(sources: Sequence[str], epochs: Iterable[int] | None = None) -> str:
    """"embeddings: <pass>" for the given epochs of ``sources`` (all epochs by default),
    naming the epochs of each pass when they differ.

    >>> source_note(["train", "probe", "probe"])
    'embeddings: the eval-mode probe pass in epochs 1, 2; the training pass (augmented, train mode) in epoch 0'
    >>> source_note(["train", "probe"], [0])
    'embeddings: the training pass (augmented, train mode)'
    """
    chosen = list(range(len(sources))) if epochs is None else [e % len(sources) for e in epochs if len(sources)]
    by_pass: dict[str, list[int]] = {}
    for e in chosen:
        by_pass.setdefault(sources[e], []).append(e)
    if len(by_pass) <= 1:
        return "embeddings: " + SOURCE_WORDS.get(next(iter(by_pass), "train"), "?")
    parts = [f"{SOURCE_WORDS[p]} in epoch{'s' if len(es) > 1 else ''} {', '.join(map(str, es))}"
             for p, es in sorted(by_pass.items(), key=lambda kv: kv[0] != "probe")]
    return "embeddings: " + "; ".join(parts)
