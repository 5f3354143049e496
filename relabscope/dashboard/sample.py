"""Page 3, the sample inspector: one sample's image and facts, its label timeline, its
distance to every class center at chosen epochs (the paper's Fig. 1/4), its class
probabilities over time, the method's own per-sample quantities (SCN's weight, RUL's
uncertainty, DMUE's weight and latent label distribution), and Grad-CAM for its given label and its label in effect (Fig. 6,
computed on request and cached per run version and sample).

``?run=RUN&sample=N&epochs=3,5`` opens it directly; without ``sample`` it shows the most
flip-flopping training sample; without ``epochs`` the distance bars show the epochs that
tell the sample's story (``Run.distance_profile``'s default).
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from dash import Input, Output, State, dcc, html, no_update

from relabscope import plot
from relabscope.dashboard import ids
from relabscope.dashboard.components import describe_error, error_card, fmt, frame_table, graph, note_card, safe
from relabscope.dashboard.context import Context
from relabscope.dashboard.inputs import class_name, parse_choice, parse_epochs, parse_sample, parse_search
from relabscope.errors import NotApplicable
from relabscope.plot import select_flipflopping

PATH = "sample"
#: the distance bars' units: the model's own (the paper's figure), or relative (``?scale=relative``)
SCALES = ("raw", "relative")
TITLE = "Sample"


# ---------------------------------------------------------------------- plain functions
def default_sample(ctx: Context, run_id: str) -> int:
    """The most flip-flopping (then most relabelled) training sample, else sample 0."""
    top = select_flipflopping(ctx.flipflops(run_id), 1)
    return int(top["sample_id"].iloc[0]) if len(top) else 0


def facts(ctx: Context, run_id: str, sid: int) -> pd.DataFrame:
    """The sample's row of ``Run.samples`` and, for training samples, of ``Run.flipflops()``
    (field, value)."""
    run = ctx.run(run_id)
    names = run.class_names
    s = run.samples.iloc[sid]
    rows = [("sample id", sid), ("key", s["key"]), ("split", s["split"]),
            ("given label", class_name(names, s["given_label"])), ("clean label", class_name(names, s["clean_label"])),
            ("label in effect after the last epoch", class_name(names, run.final_labels()[sid]))]
    if s["split"] == "train":
        flip = ctx.flipflops(run_id).set_index("sample_id")
        if sid in flip.index:
            counts = ["changes", "flipflops", "labels_visited", "first_relabel_epoch", "last_relabel_epoch"]
            f = dict(zip(counts, (int(v) for v in flip.loc[[sid], counts].to_numpy()[0])))
            rows += [("relabel events", f["changes"]), ("flip-flops", f["flipflops"]),
                     ("labels visited", f["labels_visited"]),
                     ("first / last relabel epoch", f"{f['first_relabel_epoch']} / {f['last_relabel_epoch']}")]
    for col in run.samples.columns:
        if col not in ("sample_id", "key", "split", "given_label", "clean_label", "noisy"):
            rows.append((col, fmt(s[col])))
    return pd.DataFrame(rows, columns=["field", "value"])


def gradcam_figure(ctx: Context, run_id: str, sid: int):
    """Fig. 6 for one sample from the cached Grad-CAM results (given label, label in effect)."""
    run = ctx.run(run_id)
    given = ctx.gradcam(run_id, sid, "given")
    effect = ctx.gradcam(run_id, sid, "effect")
    return plot.gradcam_figure(given.images, given.overlays, effect.overlays, sample_ids=[sid],
                               given_labels=given.labels, effect_labels=effect.labels,
                               class_names=run.class_names, probabilities=given.probabilities,
                               run_name=run.name)


# ---------------------------------------------------------------------- Dash
def layout(ctx: Context, run_id: str, params: dict[str, str]) -> Any:
    run = ctx.run(run_id)
    n = len(run.samples)
    try:
        sid = parse_sample(params["sample"], n) if params.get("sample") is not None else default_sample(ctx, run_id)
        epochs = parse_epochs(params.get("epochs"), run.num_epochs)
    except ValueError as exc:
        return html.Div([html.H2(f"Sample — {run_id}"), error_card(str(exc), "No such sample"),
                         _picker(None, n)])
    if run.num_epochs == 0:
        return html.Div([html.H2(f"Sample {sid} — {run_id}"), error_card("no committed epoch yet", "Nothing to show")])
    default = [int(e) for e in run.distance_profile(sid)["epoch"].unique()]
    return html.Div([
        dcc.Store(id=ids.SM_ARGS, data={"run": run_id, "sample": sid}),
        html.H2(f"Sample {sid} — {run_id}"),
        _picker(sid, n),
        html.Div([
            html.Div([html.Img(src=ctx.image_url(run_id, sid, 224), className="big-thumb", alt=f"sample {sid}")
                      if run.has_images else note_card(f"No image: {run.images_withheld or 'the run has none'}."),
                      html.Div(id=ids.SM_FACTS)], className="cell"),
            html.Div(dcc.Loading(html.Div(id=ids.SM_TIMELINE)), className="cell"),
        ], className="grid2"),
        html.H3("Distance to class centers (Fig. 1/4)"),
        html.Div([html.Span("epochs: "), dcc.Dropdown(
            id=ids.SM_EPOCHS, options=[{"label": f"epoch {e}", "value": e} for e in range(run.num_epochs)],
            value=epochs or default, multi=True, style={"minWidth": "320px"}),
            html.Span("distances: "), dcc.RadioItems(
                id=ids.SM_SCALE, options=[{"label": "model units", "value": "raw"},
                                          {"label": "relative to the distance between centers", "value": "relative"}],
                value=SCALES[0] if params.get("scale") not in SCALES else params["scale"], inline=True),
        ], className="controls"),
        dcc.Loading(html.Div(id=ids.SM_DISTANCES)),
        html.Div([
            html.Div(dcc.Loading(html.Div(id=ids.SM_PROBS)), className="cell"),
            html.Div(dcc.Loading(html.Div(id=ids.SM_METHOD)), className="cell"),
        ], className="grid2"),
        html.H3("Grad-CAM (Fig. 6)"),
        html.Button("compute Grad-CAM", id=ids.SM_GRADCAM_GO, n_clicks=0, className="btn"),
        dcc.Loading(html.Div(id=ids.SM_GRADCAM)),
    ])


def _picker(sid: int | None, n: int) -> Any:
    return html.Div([
        html.Span("sample id "),
        dcc.Input(id=ids.SM_INPUT, type="number", min=0, max=n - 1, step=1, value=sid, debounce=True,
                  style={"width": "110px"}),
        html.Button("open", id=ids.SM_OPEN, n_clicks=0, className="btn"),
        html.Span(f"0 … {n - 1}", className="muted"),
    ], className="controls")


def register(app, ctx: Context) -> None:
    live = Input(ids.LIVE_VERSION, "data")

    @app.callback(Output(ids.URL, "search"), Input(ids.SM_OPEN, "n_clicks"),
                  Input(ids.SM_INPUT, "n_submit"), State(ids.SM_INPUT, "value"), State(ids.URL, "search"),
                  prevent_initial_call=True)
    def _open(_clicks, _submit, value, search):
        run_id = parse_search(search).get("run")
        if value is None or run_id is None:
            return no_update
        return "?" + ctx.href("sample", run_id, sample=value).split("?", 1)[1]

    @app.callback(Output(ids.SM_FACTS, "children"), Output(ids.SM_TIMELINE, "children"),
                  Output(ids.SM_PROBS, "children"), Output(ids.SM_METHOD, "children"), Input(ids.SM_ARGS, "data"), live)
    def _sample(a, _version):
        run_id, sid = (a or {}).get("run"), (a or {}).get("sample")
        return (safe(lambda: frame_table(facts(ctx, run_id, sid), page_size=40)),
                safe(lambda: graph(plot.label_timeline(ctx.run(run_id), sid))),
                safe(lambda: graph(plot.probability_trace(ctx.run(run_id), sid))),
                safe(lambda: graph(plot.method_fields(ctx.run(run_id), sid))))

    @app.callback(Output(ids.SM_DISTANCES, "children"), Input(ids.SM_ARGS, "data"), Input(ids.SM_EPOCHS, "value"),
                  Input(ids.SM_SCALE, "value"), live)
    def _distances(a, epochs, scale, _version):
        run_id, sid = (a or {}).get("run"), (a or {}).get("sample")

        def make():
            run = ctx.run(run_id)
            chosen = parse_epochs(epochs, run.num_epochs)
            relative = parse_choice(scale or SCALES[0], SCALES, "scale") == "relative"
            return graph(plot.distance_bars(run, sid, chosen, scale="relative" if relative else "raw"))
        return safe(make)

    @app.callback(Output(ids.SM_GRADCAM, "children"), Input(ids.SM_GRADCAM_GO, "n_clicks"),
                  Input(ids.SM_ARGS, "data"))
    def _gradcam(clicks, a):
        run_id, sid = (a or {}).get("run"), (a or {}).get("sample")
        try:
            cached = ctx.has_gradcam(run_id, sid, "given") and ctx.has_gradcam(run_id, sid, "effect")
        except Exception as exc:
            return error_card(str(exc))
        if not clicks and not cached:
            return html.Div("Grad-CAM reloads the run's final model; press the button to compute it.",
                            className="muted")
        try:
            return graph(gradcam_figure(ctx, run_id, sid))
        except NotApplicable as exc:  # a model of the user's, not named: what to do, not an error
            return note_card(str(exc))
        except Exception as exc:
            return error_card(describe_error(exc), "Grad-CAM not available")
