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

from relabscope.dashboard.components import error_card, fmt, graph, safe
from relabscope.dashboard.context import Context, parse_sample

PATH = "sample"
TITLE = "Sample"


# ---------------------------------------------------------------------- plain functions
def default_sample(ctx: Context, run_id: str) -> int:
    """The most flip-flopping (then most relabelled) training sample, else sample 0."""
    from relabscope.plot import select_flipflopping

    top = select_flipflopping(ctx.flipflops(run_id), 1)
    return int(top["sample_id"].iloc[0]) if len(top) else 0


def parse_epochs(value: Any, num_epochs: int) -> list[int] | None:
    """Epochs from ``3,5,-1`` or a list; None for "the default ones". Out-of-range epochs
    raise ValueError."""
    if value in (None, "", []):
        return None
    items = value.split(",") if isinstance(value, str) else list(value)
    out = []
    for item in items:
        try:
            e = int(str(item).strip())
        except ValueError:
            raise ValueError(f"epoch must be an integer, not {str(item)[:20]!r}") from None
        r = e + num_epochs if e < 0 else e
        if not 0 <= r < num_epochs:
            raise ValueError(f"epoch {e} out of range: the run has {num_epochs} committed epochs")
        if r not in out:
            out.append(r)
    return sorted(out)


def facts(ctx: Context, run_id: str, sid: int) -> pd.DataFrame:
    """The sample's row of ``Run.samples`` and, for training samples, of ``Run.flipflops()``
    (field, value)."""
    run = ctx.run(run_id)
    names = run.class_names
    s = run.samples.iloc[sid]

    def name(i: Any) -> str:
        return names[int(i)] if 0 <= int(i) < len(names) else "unknown"

    rows = [("sample id", sid), ("key", s["key"]), ("split", s["split"]), ("given label", name(s["given_label"])),
            ("clean label", name(s["clean_label"])),
            ("label in effect after the last epoch", name(run.final_labels()[sid]))]
    if s["split"] == "train":
        flip = ctx.flipflops(run_id).set_index("sample_id")
        if sid in flip.index:
            f = flip.loc[sid]
            rows += [("relabel events", int(f["changes"])), ("flip-flops", int(f["flipflops"])),
                     ("labels visited", int(f["labels_visited"])),
                     ("first / last relabel epoch", f"{int(f['first_relabel_epoch'])} / {int(f['last_relabel_epoch'])}")]
    for col in run.samples.columns:
        if col not in ("sample_id", "key", "split", "given_label", "clean_label", "noisy"):
            rows.append((col, fmt(s[col])))
    return pd.DataFrame(rows, columns=["field", "value"])


def gradcam_figure(ctx: Context, run_id: str, sid: int):
    """Fig. 6 for one sample from the cached Grad-CAM results (given label, label in effect)."""
    from relabscope import plot

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
        dcc.Store(id="sm-args", data={"run": run_id, "sample": sid}),
        html.H2(f"Sample {sid} — {run_id}"),
        _picker(sid, n),
        html.Div([
            html.Div([html.Img(src=ctx.image_url(run_id, sid, 224), className="big-thumb", alt=f"sample {sid}"),
                      html.Div(id="sm-facts")], className="cell"),
            html.Div(dcc.Loading(html.Div(id="sm-timeline")), className="cell"),
        ], className="grid2"),
        html.H3("Distance to class centers (Fig. 1/4)"),
        html.Div([html.Span("epochs: "), dcc.Dropdown(
            id="sm-epochs", options=[{"label": f"epoch {e}", "value": e} for e in range(run.num_epochs)],
            value=epochs or default, multi=True, style={"minWidth": "320px"})], className="controls"),
        dcc.Loading(html.Div(id="sm-distances")),
        html.Div([
            html.Div(dcc.Loading(html.Div(id="sm-probs")), className="cell"),
            html.Div(dcc.Loading(html.Div(id="sm-method")), className="cell"),
        ], className="grid2"),
        html.H3("Grad-CAM (Fig. 6)"),
        html.Button("compute Grad-CAM", id="sm-gradcam-go", n_clicks=0, className="btn"),
        dcc.Loading(html.Div(id="sm-gradcam")),
    ])


def _picker(sid: int | None, n: int) -> Any:
    return html.Div([
        html.Span("sample id "),
        dcc.Input(id="sm-input", type="number", min=0, max=n - 1, step=1, value=sid, debounce=True,
                  style={"width": "110px"}),
        html.Button("open", id="sm-open", n_clicks=0, className="btn"),
        html.Span(f"0 … {n - 1}", className="muted"),
    ], className="controls")


def register(app, ctx: Context) -> None:
    from relabscope import plot

    live = Input("live-version", "data")

    @app.callback(Output("url", "search"), Input("sm-open", "n_clicks"),
                  Input("sm-input", "n_submit"), State("sm-input", "value"), State("url", "search"),
                  prevent_initial_call=True)
    def _open(_clicks, _submit, value, search):
        from relabscope.dashboard.context import parse_search

        run_id = parse_search(search).get("run")
        if value is None or run_id is None:
            return no_update
        return "?" + ctx.href("sample", run_id, sample=value).split("?", 1)[1]

    @app.callback(Output("sm-facts", "children"), Output("sm-timeline", "children"), Output("sm-probs", "children"),
                  Output("sm-method", "children"), Input("sm-args", "data"), live)
    def _sample(a, _version):
        from relabscope.dashboard.components import frame_table

        run_id, sid = (a or {}).get("run"), (a or {}).get("sample")
        return (safe(lambda: frame_table(facts(ctx, run_id, sid), page_size=40)),
                safe(lambda: graph(plot.label_timeline(ctx.run(run_id), sid))),
                safe(lambda: graph(plot.probability_trace(ctx.run(run_id), sid))),
                safe(lambda: graph(plot.method_fields(ctx.run(run_id), sid))))

    @app.callback(Output("sm-distances", "children"), Input("sm-args", "data"), Input("sm-epochs", "value"), live)
    def _distances(a, epochs, _version):
        run_id, sid = (a or {}).get("run"), (a or {}).get("sample")

        def make():
            run = ctx.run(run_id)
            chosen = parse_epochs(epochs, run.num_epochs)
            return graph(plot.distance_bars(run, sid, chosen))
        return safe(make)

    @app.callback(Output("sm-gradcam", "children"), Input("sm-gradcam-go", "n_clicks"), Input("sm-args", "data"))
    def _gradcam(clicks, a):
        run_id, sid = (a or {}).get("run"), (a or {}).get("sample")
        try:
            cached = ctx.has_gradcam(run_id, sid, "given") and ctx.has_gradcam(run_id, sid, "effect")
        except Exception as exc:
            return error_card(str(exc))
        if not clicks and not cached:
            return html.Div("Grad-CAM reloads the run's final model; press the button to compute it.",
                            className="muted")
        return safe(lambda: graph(gradcam_figure(ctx, run_id, sid)),
                    "Grad-CAM not available")
