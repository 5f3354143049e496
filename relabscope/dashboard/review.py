"""Page 7, review: the run's suspect labels (``Run.suspects``) as a grid of image tiles, most
suspect first, for a reviewer to decide per sample with the keyboard. Each decision is
written at once through ``Run.review`` into the run's corrections journal
(``corrections.journal`` and ``corrections.csv`` beside the run; see
``relabscope.data.corrections``): a decision the tile shows is on disk.

Filters: the given class, the suggested class, a signal (flagged by confident learning, or
one signal on its suspect side of its median) and whether a sample is decided yet. The grid
pages on the server (``PAGE_SIZE`` tiles) and decodes a page's thumbnails in one batch.
Each tile: the image (none for a run without images), rank, score, given label, label in
effect after the last epoch, suggested label, the label timeline (one cell per epoch, in the
class's colour, then the label after the last epoch's relabels) and the current decision.

**Two tabs, two reviewers.** A tile keeps the journal position (``seq``, 0 for none) of the
decision it shows and sends it as the decision's ``base``. When the sample was decided since
(another tab, another reviewer), the journal refuses the decision; the tile says who decided
meanwhile and reloads to show that decision, and the next key decides on what it now shows.
Nothing is overwritten unseen: the first decision wins, the second is not written.

**Who may write.** A server only this machine can reach (loopback) or one that asks for a
password (``--auth``) takes decisions. A server reachable from other machines without auth
shows the page read-only and says why: anyone who can reach it could rewrite the labels.
The reviewer is the auth user, else the name typed on the page (kept in the browser).

**Keys** (``KEYS``; a document keydown listener installed by a clientside callback, no extra
JavaScript): arrows or j / l move between tiles, k keeps the given label, s or Enter takes the
suggestion, 1..9 choose that class, a marks ambiguous, x drops, PgUp / PgDn change the page.
A decision moves the focus to the next tile.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any, Sequence

import numpy as np
import pandas as pd
from dash import MATCH, Input, Output, State, callback_context, dcc, html, no_update
from dash.exceptions import PreventUpdate

from relabscope.analysis.review import REVIEW_DECISIONS
from relabscope.analysis.run import Run
from relabscope.analysis.suspects import SIGNALS
from relabscope.dashboard import ids, security
from relabscope.dashboard.components import describe_error, error_card, fmt, note_card
from relabscope.dashboard.context import Context
from relabscope.dashboard.flipflops import page_rows
from relabscope.dashboard.inputs import class_name
from relabscope.data.journal import Decision, DecisionConflict, SuggestionChanged
from relabscope.errors import RelabscopeError
from relabscope.plot import class_colors

PATH = "review"
TITLE = "Review"
PAGE_SIZE = 24
#: thumbnail width (one of ``images.SIZES``)
THUMB_PX = 160
#: which samples the "decisions" filter shows
SHOWN = ("all", "undecided", "decided")
#: (keys, what they do), as the legend shows them
KEYS = [(("←", "→", "j", "l"), "move"), (("↑", "↓"), "row"), (("k",), "keep the given label"),
        (("s", "Enter"), "take the suggestion"), (("1", "9"), "that class"), (("a",), "ambiguous"),
        (("x",), "drop"), (("PgUp", "PgDn"), "page")]
#: the label timeline's colour for an epoch that did not see the sample
UNSEEN = "#e6e6e6"


@dataclass(frozen=True)
class Access:
    """Who decides through this request and whether they may: ``user`` the signed-in
    reviewer (None: the server has no users, the page asks for a name), ``refused`` why
    the server takes no decisions from this request (``relabscope.dashboard.security``),
    ``locked`` why the run's folder takes none (:meth:`for_run`)."""

    user: str | None = None
    refused: str | None = None
    locked: str | None = None

    def for_run(self, run: Run) -> "Access":
        """This access on ``run``: read-only also where its folder cannot be written."""
        reason = run.journal.read_only
        return self if reason is None else replace(self, locked=f"Read-only: {reason}.")

    @property
    def read_only(self) -> str | None:
        """Why no decision is taken here (one line), or None when they are."""
        return self.locked or self.refused


def access() -> Access:
    """This request's :class:`Access` (inside a request)."""
    return Access(user=security.signed_in(), refused=security.write_refusal())


# ---------------------------------------------------------------------- plain functions
def suspects(ctx: Context, run_id: str) -> pd.DataFrame:
    """``Run.suspects()`` without the canaries (their labels are wrong on purpose: nothing
    for a reviewer to decide), kept per run version."""
    def read(run: Run) -> pd.DataFrame:
        table = run.suspects()
        return table[run.canary_labels[table["sample_id"].to_numpy()] < 0] if run.has_canaries else table
    return ctx.cached(run_id, "suspects", read)


def canary_line(run: Run) -> str | None:
    """What the canaries say of the ranking on this run, in one line; None without them.
    The depth is the flag's count (how far into the ranking a review should go), or 5 % of
    the training samples when nothing is flagged."""
    if not run.has_canaries:
        return None
    table = run.suspects()
    canary = run.canary_labels[table["sample_id"].to_numpy()] >= 0
    depth = int(table["flag"].sum()) or max(1, round(0.05 * len(table)))
    found = int(canary[table["rank"].to_numpy() <= depth].sum())
    score = run.suspect_quality(truth="canaries").set_index("scorer").loc["score"]
    return (f"On this run the ranking puts {found} of its {int(canary.sum())} canaries (labels relabscope made "
            f"wrong on purpose) in its top {depth} ({found / max(1, int(canary.sum())):.0%}); AUROC "
            f"{score['auroc']:.2f} [{score['auroc_low']:.2f}, {score['auroc_high']:.2f}] against them. An estimate "
            "of how well it finds wrong labels, low where the data holds natural noise; the canaries are not "
            "shown here.")


def shrunk_line(run: Run, table: pd.DataFrame) -> str | None:
    """Which classes the run emptied or shrank below half, and how the ranking judges the
    samples given them (``relabscope.analysis.suspects``, "Shrunk classes"); None when it
    shrank none."""
    shrunk = table.attrs.get("shrunk_from") or {}
    if not shrunk:
        return None
    named = ", ".join(f"{run.class_names[c]} (from epoch {e})" for c, e in sorted(shrunk.items()))
    return (f"Relabelling left the model training on fewer than half the samples given {named}. It then stopped "
            "predicting those classes, so the ranking judges the samples given them by the epochs before.")


def signal_options(table: pd.DataFrame) -> list[dict]:
    """The signal filter's choices: every sample, flagged ones, and each signal the run has
    on its suspect side of the median (the value named in the label)."""
    options = [{"label": "every sample", "value": "all"},
               {"label": "flagged (confident learning: likely in another class)", "value": "flag"}]
    for name, signal in SIGNALS.items():
        values = table[name].to_numpy(dtype=np.float64) if name in table else np.array([])
        finite = values[np.isfinite(values)]
        if len(finite) and finite.min() < finite.max():
            side = "above" if signal.direction == "high" else "below"
            options.append({"label": f"{name} {side} its median ({float(np.median(finite)):.3g})", "value": name})
    return options


def select(table: pd.DataFrame, decisions: dict[str, Decision], *, given: int | None = None,
           suggested: int | None = None, signal: str = "all", shown: str = "all") -> pd.DataFrame:
    """The rows of ``table`` (``Run.suspects``, most suspect first) that pass the filters, in
    its order: given and suggested class, ``signal`` ("all", "flag" or a signal's name: its
    suspect side of the median, strictly) and ``shown`` (all, decided, undecided: by the
    latest ``decisions`` per key)."""
    keep = np.ones(len(table), bool)
    if given is not None:
        keep &= table["given_label"].to_numpy() == int(given)
    if suggested is not None:
        keep &= table["suggested_label"].to_numpy() == int(suggested)
    if signal == "flag":
        keep &= table["flag"].to_numpy(dtype=bool)
    elif signal in SIGNALS:
        values = table[signal].to_numpy(dtype=np.float64)
        median = np.nanmedian(values) if np.isfinite(values).any() else np.nan
        with np.errstate(invalid="ignore"):
            keep &= values > median if SIGNALS[signal].direction == "high" else values < median
    elif signal != "all":
        raise ValueError(f"signal filter must be all, flag or one of {', '.join(SIGNALS)}, not {signal!r}")
    if shown != "all":
        if shown not in SHOWN:
            raise ValueError(f"decisions filter must be one of {', '.join(SHOWN)}, not {shown!r}")
        decided = table["key"].isin(list(decisions)).to_numpy()
        keep &= decided if shown == "decided" else ~decided
    return table[keep]


def decision_text(decision: Decision | None) -> str:
    """A decision in a few words: "undecided", "keep anger", "relabel → fear", "ambiguous",
    "drop", then who decided."""
    if decision is None:
        return "undecided"
    what = {"keep": f"keep {decision.label or ''}".strip(), "relabel": f"relabel → {decision.label}"}.get(
        decision.decision, decision.decision)
    return f"{what} · {decision.reviewer}" if decision.reviewer else what


def conflict_message(latest: Decision | None) -> str:
    """What a tile says when its decision was refused: who decided meanwhile."""
    if latest is None:
        return "its decision was withdrawn meanwhile: reloaded, decide again"
    who = f"by {latest.reviewer} " if latest.reviewer else "in another tab "
    return f"decided meanwhile {who}({decision_text(latest).split(' · ')[0]}): reloaded"


def parse_request(request: Any, num_classes: int) -> tuple[str, int | None]:
    """The (decision, class id) a key asked for: ``{"decision": ..., "label": id}``;
    ValueError (one line) for anything else."""
    if not isinstance(request, dict) or request.get("decision") not in REVIEW_DECISIONS:
        raise ValueError(f"not a decision: {str(request)[:80]}")
    label = request.get("label")
    if request["decision"] != "relabel":
        return str(request["decision"]), None
    if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < num_classes:
        raise ValueError(f"class must be 0..{num_classes - 1}, not {str(label)[:20]!r}")
    return "relabel", label


# ---------------------------------------------------------------------- tiles
def _swatch(colour: str) -> html.Span:
    return html.Span(className="rv-sw", style={"background": colour})


def _label_line(what: str, label: int, names: Sequence[str], colours: dict[str, str]) -> html.Div:
    name = class_name(names, label)
    return html.Div([_swatch(colours.get(name, UNSEEN)), f"{what}: {name}"], className="rv-line",
                    title=f"{what}: {name}")


def timeline(labels: np.ndarray, final: int, names: Sequence[str], colours: dict[str, str]) -> html.Div:
    """One cell per epoch in the colour of the label the sample trained on, then one for the
    label after the last epoch's relabels; the hover text names each."""
    cells = []
    for e, label in enumerate([int(v) for v in labels] + [int(final)]):
        when = f"epoch {e}" if e < len(labels) else "after the last epoch"
        name = names[label] if 0 <= label < len(names) else "not seen"
        cells.append(html.Span(style={"background": colours.get(name, UNSEEN)}, title=f"{when}: {name}"))
    return html.Div(cells, className="rv-timeline", title="label per epoch, then after the last epoch")


def tile_body(run: Run, row: dict, labels: np.ndarray, decision: Decision | None, href: str,
              message: str | None = None) -> list:
    """A tile's text: rank, sample, score, flag, given / in effect / suggested labels, the
    label timeline, the decision and a message (a refused decision)."""
    names = run.class_names
    colours = class_colors(names)
    sid = int(row["sample_id"])
    flag = " · flagged" if bool(row["flag"]) else ""
    kind = decision.decision if decision is not None else "undecided"
    return [
        html.Div([dcc.Link(f"#{int(row['rank'])} · sample {sid}", href=href, title="open in the sample inspector")],
                 className="rv-line rv-head"),
        html.Div(f"score {fmt(float(row['score']))}{flag}", className="rv-line rv-score"),
        _label_line("given", int(row["given_label"]), names, colours),
        _label_line("in effect", int(row["final_label"]), names, colours),
        _label_line("suggested", int(row["suggested_label"]), names, colours),
        timeline(labels, int(row["final_label"]), names, colours),
        html.Div(decision_text(decision), className=f"rv-badge rv-{kind}", title=decision_text(decision)),
        html.Div(message, className="rv-msg") if message else None,
    ]


def tile(ctx: Context, run: Run, run_id: str, row: dict, labels: np.ndarray, decision: Decision | None,
         picture: bool) -> html.Div:
    """One focusable tile: the stores its decisions go through, the thumbnail, the body."""
    sid = int(row["sample_id"])
    href = ctx.href("sample", run_id, sample=sid)
    return html.Div([
        dcc.Store(id=ids.rv_tile(ids.RV_REQUEST, sid)),
        dcc.Store(id=ids.rv_tile(ids.RV_SHOWN, sid), data=shown_state(decision, row)),
        html.Img(src=ctx.image_url(run_id, sid, THUMB_PX), alt=f"sample {sid}", className="rv-img")
        if picture else None,
        html.Div(tile_body(run, row, labels, decision, href), id=ids.rv_tile(ids.RV_BODY, sid)),
    ], className="rv-tile", tabIndex="0", role="group", **{"data-sample": sid,
                                                            "aria-label": f"rank {int(row['rank'])}, sample {sid}"})


def grid(ctx: Context, run_id: str, *, given: int | None = None, suggested: int | None = None,
         signal: str = "all", shown: str = "all", page: Any = 0) -> tuple[Any, str, int]:
    """The tiles of one page of the filtered suspects, a line saying which, and the page."""
    run = ctx.run(run_id)
    table = suspects(ctx, run_id)
    decisions = run.journal.latest()
    rows = select(table, decisions, given=given, suggested=suggested, signal=signal or "all", shown=shown or "all")
    shown_rows, pages, p = page_rows(rows, page, PAGE_SIZE)
    if not len(rows):
        return note_card("No training sample passes these filters."), f"0 of {len(table)} training samples", 0
    sids = shown_rows["sample_id"].to_numpy()
    picture = run.has_images
    if picture:
        ctx.images.prefetch(run_id, sids, THUMB_PX)
    labels = run.labels()
    tiles = [tile(ctx, run, run_id, row, labels[:, int(row["sample_id"])], decisions.get(str(row["key"])), picture)
             for row in shown_rows.to_dict("records")]
    first = p * PAGE_SIZE + 1
    count = (f"{first}–{first + len(shown_rows) - 1} of {len(rows)} samples shown"
             f"{'' if len(rows) == len(table) else f' ({len(table)} training samples in all)'}"
             f" · page {p + 1} of {pages} · most suspect first")
    return tiles, count, p


def shown_state(decision: Decision | None, row: dict) -> dict[str, int]:
    """What a tile shows that a decision made on it must still hold: the ``seq`` of the
    sample's decision (0: undecided), its base, and the suggestion "take the suggestion"
    takes (a run still training may suggest another one by the time a key is pressed)."""
    return {"seq": decision.seq if decision else 0, "suggested": int(row["suggested_label"])}


def decide(ctx: Context, gate: Access, run_id: str, sid: int, request: Any, shown: Any,
           name: str | None) -> tuple[list, dict[str, int]]:
    """Write the decision a key asked for on sample ``sid``, on what the tile ``shown``
    (:func:`shown_state`: the decision as its base, the suggestion it showed); the tile's
    new body and state. A refused decision (read-only server, decided meanwhile, a
    suggestion that changed, a bad request, a full disk) leaves the journal as it is and
    says why on the tile, which then shows the sample as it is now."""
    run = ctx.run(run_id)
    table = suspects(ctx, run_id).set_index("sample_id", drop=False)
    if sid not in table.index:
        raise PreventUpdate  # not a tile this page can show
    row = table.loc[sid].to_dict()
    key = str(row["key"])
    message = gate.for_run(run).read_only
    if message is None:
        try:
            decision, label = parse_request(request, run.num_classes)
            seen = shown if isinstance(shown, dict) else {}
            base, suggestion = _whole(seen.get("seq"), 0), _whole(seen.get("suggested"), None)
            reviewer = gate.user if gate.user is not None else (name or "").strip()[:80]
            run.review(sid, decision, label, reviewer=reviewer, base=base, source="dashboard",
                       shown=suggestion if decision == "suggested" else None)
        except SuggestionChanged as exc:
            message = f"the suggestion is {exc.now} now, not {exc.shown}: reloaded"
        except DecisionConflict:
            message = conflict_message(run.journal.latest().get(key))
        except (ValueError, RelabscopeError) as exc:  # a full disk too: one line on the tile
            message = str(exc).replace(str(run.run_dir), run_id)  # viewers see run ids, not server paths
    latest = run.journal.latest().get(key)
    body = tile_body(run, row, run.labels()[:, sid], latest, ctx.href("sample", run_id, sample=sid), message)
    return body, shown_state(latest, row)


def _whole(value: Any, default: int | None) -> int | None:
    """An int a browser sent back, or ``default`` (a bool is not one)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else default


# ---------------------------------------------------------------------- Dash
def _kbd(text: str) -> html.Kbd:
    return html.Kbd(text)


def legend(names: Sequence[str], writable: bool) -> html.Div:
    """The keys, and the classes 1..9 choose (in their timeline colours)."""
    colours = class_colors(names)
    keys = KEYS if writable else KEYS[:2] + KEYS[-1:]
    items: list = [html.Span("Keys: ", className="rv-keys-title")]
    for key, what in keys:
        joiner = "–" if key == ("1", "9") else " "
        pressed = [part for k in key for part in (joiner, _kbd(k))][1:]
        items.append(html.Span(pressed + [" ", what], className="rv-key"))
    classes = [html.Span([_kbd(str(i + 1)) if writable and i < 9 else None, " ", _swatch(colours[n]), n],
                         className="rv-key") for i, n in enumerate(names)]
    return html.Div([html.Div(items), html.Div([html.Span("Classes: ", className="rv-keys-title")] + classes)],
                    className="card rv-keys")


def _reviewer(gate: Access) -> html.Div:
    if gate.read_only:
        return html.Div([dcc.Input(id=ids.RV_NAME, type="hidden", value=""),
                         html.Div(gate.read_only)], className="card warn-card")
    if gate.user is not None:
        return html.Div([dcc.Input(id=ids.RV_NAME, type="hidden", value=gate.user),
                         html.Span("reviewer: "), html.B(gate.user), html.Span(" (signed in)", className="muted")],
                        className="controls")
    return html.Div([html.Label(["reviewer ", dcc.Input(id=ids.RV_NAME, type="text", placeholder="your name",
                                                        maxLength=80, debounce=True, style={"width": "160px"})]),
                     html.Span("kept in this browser; each decision records it", className="muted")],
                    className="controls")


def layout(ctx: Context, run_id: str, params: dict[str, str]) -> Any:
    run = ctx.run(run_id)
    if run.num_epochs == 0:
        return html.Div([html.H2(f"Review — {run_id}"), error_card("no committed epoch yet", "Nothing to review")])
    table = suspects(ctx, run_id)
    gate = access().for_run(run)
    names = run.class_names
    classes = [{"label": n, "value": i} for i, n in enumerate(names)]
    used = ", ".join(table.attrs.get("signals", [])) or "no signal"
    return html.Div([
        dcc.Store(id=ids.RV_ARGS, data={"run": run_id}),
        dcc.Store(id=ids.RV_PAGE, data=0),
        dcc.Store(id=ids.RV_REVIEWER, storage_type="local"),
        dcc.Store(id=ids.RV_KEYS),
        html.H2(f"Review — {run_id}"),
        html.Div(f"Training samples, most suspect first (score: mean percentile rank of {used}). "
                 + ("Decisions made so far are shown." if gate.read_only else
                    "A decision is saved at once to corrections.csv beside the run."), className="muted"),
        note_card(f"No pictures: {run.images_withheld}.") if run.images_withheld else None,
        html.Div(canary_line(run), id=ids.RV_CANARIES, className="muted") if run.has_canaries else None,
        note_card(shrunk) if (shrunk := shrunk_line(run, table)) else None,
        _reviewer(gate),
        legend(names, gate.read_only is None),
        html.Div([
            html.Span("given "), dcc.Dropdown(id=ids.RV_GIVEN, options=classes, placeholder="any class",
                                              style={"minWidth": "150px"}),
            html.Span("suggested "), dcc.Dropdown(id=ids.RV_SUGGESTED, options=classes, placeholder="any class",
                                                  style={"minWidth": "150px"}),
            html.Span("signal "), dcc.Dropdown(id=ids.RV_SIGNAL, options=signal_options(table), value="all",
                                               clearable=False, style={"minWidth": "300px"}),
            dcc.RadioItems(id=ids.RV_STATE, options=list(SHOWN),
                           value="all", inline=True),
        ], className="controls"),
        html.Div([html.Button("‹ previous", id=ids.RV_PREV, n_clicks=0, className="btn"),
                  html.Button("next ›", id=ids.RV_NEXT, n_clicks=0, className="btn"),
                  html.Span(id=ids.RV_COUNT, className="muted")], className="controls"),
        html.Div(id=ids.RV_GRID, className="rv-grid",
                 **{"data-classes": len(names), "data-writable": "0" if gate.read_only else "1"}),
    ])


#: The keyboard: installed once per browser tab, acts only while a review grid is shown.
#: Decisions go to the focused tile's request store (``set_props`` on its pattern id).
_KEYBOARD_JS = """
function (children) {
    var G = %(ids)s, R = window.relabscopeReview;
    if (!R) {
        R = window.relabscopeReview = {n: 0, turned: null};
        document.addEventListener('keydown', function (ev) { R.key(ev); });
    }
    R.decision = function (key, classes) {
        if (key === 'k') return {decision: 'keep'};
        if (key === 's' || key === 'Enter') return {decision: 'suggested'};
        if (key === 'a') return {decision: 'ambiguous'};
        if (key === 'x') return {decision: 'drop'};
        var d = '123456789'.indexOf(key);
        return d >= 0 && d < classes ? {decision: 'relabel', label: d} : null;
    };
    R.below = function (tiles, i, dir) {  // the nearest tile in the next row that way
        var here = tiles[i].getBoundingClientRect(), best = null, rowDy = Infinity, bestDx = Infinity;
        tiles.forEach(function (t) {
            var r = t.getBoundingClientRect(), dy = (r.top - here.top) * dir, dx = Math.abs(r.left - here.left);
            if (dy < here.height / 2) return;
            if (dy < rowDy - here.height / 2 || (Math.abs(dy - rowDy) < here.height / 2 && dx < bestDx)) {
                if (dy < rowDy - here.height / 2) rowDy = dy;
                best = t; bestDx = dx;
            }
        });
        return best;
    };
    R.key = function (ev) {
        var grid = document.getElementById(G.grid), t = ev.target, tag = t && t.tagName;
        if (!grid || ev.ctrlKey || ev.metaKey || ev.altKey || ev.isComposing) return;
        if (tag === 'INPUT' || tag === 'TEXTAREA' || tag === 'SELECT' || (t && t.isContentEditable)) return;
        var key = ev.key.length === 1 ? ev.key.toLowerCase() : ev.key;
        if ((tag === 'A' || tag === 'BUTTON') && (key === 'Enter' || key === ' ')) return;
        if (key === 'PageDown' || key === 'PageUp') {
            var button = document.getElementById(key === 'PageDown' ? G.next : G.prev);
            var shown = grid.querySelector('.rv-tile');
            if (button) { R.turned = shown ? shown.dataset.sample : ''; button.click(); }
            ev.preventDefault();
            return;
        }
        var tiles = Array.prototype.slice.call(grid.querySelectorAll('.rv-tile'));
        var step = {ArrowRight: 1, l: 1, ArrowLeft: -1, j: -1}[key];
        var vertical = key === 'ArrowDown' ? 1 : (key === 'ArrowUp' ? -1 : 0);
        var asked = R.decision(key, +grid.dataset.classes);
        if (!tiles.length || (step === undefined && !vertical && !asked)) return;
        ev.preventDefault();
        var current = t && t.closest ? t.closest('.rv-tile') : null, i = tiles.indexOf(current);
        if (i < 0) { tiles[0].focus(); return; }
        if (step !== undefined) { tiles[Math.max(0, Math.min(tiles.length - 1, i + step))].focus(); return; }
        if (vertical) { var next = R.below(tiles, i, vertical); if (next) next.focus(); return; }
        if (grid.dataset.writable !== '1') return;
        R.n += 1;
        asked.n = R.n;
        window.dash_clientside.set_props({type: G.request, sample: +current.dataset.sample}, {data: asked});
        if (i + 1 < tiles.length) tiles[i + 1].focus();
    };
    if (R.turned !== null) {  // a page turned by key: focus its first tile once it is drawn
        var before = R.turned, tries = 0;
        R.turned = null;
        var focus = function () {
            var first = document.querySelector('#' + G.grid + ' .rv-tile');
            if (first && first.dataset.sample !== before) { first.focus(); } else if (tries++ < 40) { setTimeout(focus, 50); }
        };
        setTimeout(focus, 0);
    }
    return window.dash_clientside.no_update;
}
"""


def register(app, ctx: Context) -> None:
    live = Input(ids.LIVE_VERSION, "data")
    filters = (ids.RV_GIVEN, ids.RV_SUGGESTED, ids.RV_SIGNAL, ids.RV_STATE)

    @app.callback(Output(ids.RV_GRID, "children"), Output(ids.RV_COUNT, "children"), Output(ids.RV_PAGE, "data"),
                  Input(ids.RV_ARGS, "data"), *[Input(f, "value") for f in filters],
                  Input(ids.RV_PREV, "n_clicks"), Input(ids.RV_NEXT, "n_clicks"), live, State(ids.RV_PAGE, "data"))
    def _grid(a, given, suggested, signal, shown, _prev, _next, _version, page):
        run_id = (a or {}).get("run")
        trigger = callback_context.triggered_id
        page = int(page) if isinstance(page, int) else 0
        page = page - 1 if trigger == ids.RV_PREV else page + 1 if trigger == ids.RV_NEXT else (
            0 if trigger in filters else page)
        try:
            return grid(ctx, run_id, given=given, suggested=suggested, signal=signal, shown=shown, page=page)
        except Exception as exc:
            return error_card(describe_error(exc), "Cannot show the suspects"), "", 0

    @app.callback(Output(ids.RV_NAME, "value"), Output(ids.RV_REVIEWER, "data"),
                  Input(ids.RV_NAME, "value"), Input(ids.RV_REVIEWER, "data"))
    def _name(typed, stored):
        """The name box and the browser's stored name, kept equal (the box wins when typed in)."""
        if access().user is not None or access().read_only:
            return no_update, no_update
        if callback_context.triggered_id == ids.RV_NAME and typed is not None:
            return no_update, str(typed).strip()[:80]
        return (stored if isinstance(stored, str) else ""), no_update

    @app.callback(Output(ids.rv_tile(ids.RV_BODY, MATCH), "children"), Output(ids.rv_tile(ids.RV_SHOWN, MATCH), "data"),
                  Input(ids.rv_tile(ids.RV_REQUEST, MATCH), "data"), State(ids.rv_tile(ids.RV_SHOWN, MATCH), "data"),
                  State(ids.RV_ARGS, "data"), State(ids.RV_NAME, "value"), prevent_initial_call=True)
    def _decide(request, shown, a, name):
        sid = int(callback_context.triggered_id["sample"])
        return decide(ctx, access(), (a or {}).get("run"), sid, request, shown, name)

    app.clientside_callback(_KEYBOARD_JS % {"ids": json.dumps({"grid": ids.RV_GRID, "prev": ids.RV_PREV,
                                                                "next": ids.RV_NEXT, "request": ids.RV_REQUEST})},
                            Output(ids.RV_KEYS, "data"), Input(ids.RV_GRID, "children"))
