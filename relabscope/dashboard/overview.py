"""Page 1, the run overview: what ran (config), how it trained (test accuracy, relabels per
epoch and, with relabel guards on, the relabels they vetoed), whether relabelling fixed the
noise (when clean labels are known) and the paper's headline claim as numbers (relabel
consistency)."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
from dash import Input, Output, dcc, html

from relabscope import plot
from relabscope.analysis.compare import veto_counts
from relabscope.analysis.run import Run
from relabscope.dashboard import ids
from relabscope.dashboard.components import (class_balance_card, error_card, figure_block, fmt, frame_table,
                                             number_cards, safe)
from relabscope.dashboard.context import Context

PATH = ""
TITLE = "Overview"
#: what the vetoed-relabels card says on hover
VETO_HINT = ("refused by the relabel guards; a relabel several guards would refuse counts once, for the first "
             "in the order they apply (hysteresis, agree, floor)")
FIGURES = ("accuracy", "relabels", "recovery", "consistency", "classes", "flow")


def headline(run: Run, flip: pd.DataFrame) -> dict[str, Any]:
    """The key numbers, straight from the Run API (``flip``: ``run.flipflops()``)."""
    metrics = run.metrics()
    out: dict[str, Any] = {
        "epochs": run.num_epochs,
        "planned_epochs": run.config.get("epochs"),
        "status": run.status,
        "test_acc": float(metrics["test_acc"].iloc[-1]) if len(metrics) else float("nan"),
        "best_test_acc": float(metrics["test_acc"].max()) if len(metrics) else float("nan"),
        "relabel_events": int(flip["changes"].sum()),
        "relabelled_samples": int((flip["changes"] > 0).sum()),
        "flipflops": int(flip["flipflops"].sum()),
        "flipflopping_samples": int((flip["flipflops"] > 0).sum()),
        **{k: int(v) for k, v in veto_counts(run).items()},
    }
    if run.relabels_at_all:
        cons = run.consistency()
        out["closer_to_new"] = float(cons["closer_to_new"])
        out["control_closer"] = float(cons["control_closer"])
        out["undone_fraction"] = float(cons["undone_fraction"])
    if run.has_canaries and run.relabels_at_all and run.num_epochs:
        canaries = run.canary_recovery()
        out["canaries_back"] = float(canaries["canaries_back"].iloc[-1])
        out["others_away"] = float(canaries["others_away"].iloc[-1])
    if run.clean_labels is not None and run.relabels_at_all and run.num_epochs:
        rec = run.noise_recovery()
        out["noisy_corrected"] = float(rec["noisy_corrected"].iloc[-1])
        out["clean_corrupted"] = float(rec["clean_corrupted"].iloc[-1])
    return out


def accuracy_card(numbers: dict[str, Any]) -> tuple[str, str, str | None]:
    """The first card: "final" only for a finished run; otherwise which epoch it is from.

    >>> accuracy_card({"status": "running", "epochs": 3, "planned_epochs": 40, "test_acc": 0.5,
    ...                "best_test_acc": 0.6})
    ('test accuracy after epoch 3 of 40', '50.0%', 'running · best 60.0%')
    """
    value, best = fmt(numbers["test_acc"], "%"), f"best {fmt(numbers['best_test_acc'], '%')}"
    if numbers["status"] == "finished":
        return "final test accuracy", value, best
    planned = numbers.get("planned_epochs")
    of = f" of {planned}" if planned else ""
    return f"test accuracy after epoch {numbers['epochs']}{of}", value, f"{numbers['status']} · {best}"


def headline_cards(numbers: dict[str, Any]) -> list[tuple[str, str, str | None]]:
    cards = [
        accuracy_card(numbers),
        ("epochs", f"{numbers['epochs']} ({numbers['status']})", None),
        ("relabel events", fmt(numbers["relabel_events"]), f"on {numbers['relabelled_samples']} samples"),
        *veto_card(numbers),
        ("flip-flops", fmt(numbers["flipflops"]), f"{numbers['flipflopping_samples']} samples flip-flopped"),
    ]
    if "closer_to_new" in numbers:
        cards.append(("closer to new class once trained on it", fmt(numbers["closer_to_new"], "%"),
                      f"control: {fmt(numbers['control_closer'], '%')} · undone later: "
                      f"{fmt(numbers['undone_fraction'], '%')}"))
    if "canaries_back" in numbers:
        cards.append(("canaries relabelled back", fmt(numbers["canaries_back"], "%"),
                      f"other labels moved: {fmt(numbers['others_away'], '%')} (at most the corrupted)"))
    if "noisy_corrected" in numbers:
        cards.append(("noisy labels corrected", fmt(numbers["noisy_corrected"], "%"),
                      f"clean labels corrupted: {fmt(numbers['clean_corrupted'], '%')}"))
    return cards


def veto_card(numbers: dict[str, Any]) -> list[tuple[str, str, str | None]]:
    """The card of the relabels the guards vetoed, beside the relabel events: each guard
    on and its count in the label; none for a run without guards.

    >>> veto_card({"relabels_vetoed": 12, "vetoed_by_agree": 9, "vetoed_by_floor": 3})[0][:2]
    ('relabels vetoed (agree 9 · floor 3)', '12')
    """
    if "relabels_vetoed" not in numbers:
        return []
    by = " · ".join(f"{k.removeprefix('vetoed_by_')} {fmt(v)}" for k, v in numbers.items()
                    if k.startswith("vetoed_by_"))
    return [(f"relabels vetoed ({by})", fmt(numbers["relabels_vetoed"]), VETO_HINT)]


def config_table(run: Run) -> pd.DataFrame:
    """The run's resolved settings, one row per key (nested values as JSON)."""
    rows = [(k, v if isinstance(v, (str, int, float, bool)) or v is None else json.dumps(v))
            for k, v in run.config.items()]
    return pd.DataFrame({"setting": [r[0] for r in rows], "value": ["" if r[1] is None else str(r[1]) for r in rows]})


def figure(run: Run, which: str):
    if which == "accuracy":
        return plot.accuracy_curves(run)
    if which == "relabels":  # with relabel guards on: the relabels they vetoed beside those granted
        return plot.vetoes(run) if run.guards else plot.relabels_per_epoch(run)
    if which == "recovery":
        return plot.noise_recovery(run)
    if which == "consistency":
        return plot.consistency_summary(run)
    if which == "classes":
        return plot.class_counts(run)
    if which == "flow":
        return plot.label_flow(run)
    raise ValueError(f"unknown overview figure {which!r}")


def header(ctx: Context, run_id: str) -> Any:
    run = ctx.run(run_id)
    meta = run.meta
    facts = [f"method {run.method}", f"data set {meta.get('dataset', '?')}",
             f"{meta.get('num_train', '?')} train / {meta.get('num_test', '?')} test samples",
             f"{run.num_classes} classes", f"device {meta.get('device_name') or meta.get('device', '?')}",
             f"created {meta.get('created', '?')}"]
    return html.Div([html.H2(run_id), html.Div(" · ".join(str(f) for f in facts), className="muted")])


# ---------------------------------------------------------------------- Dash
def layout(ctx: Context, run_id: str, params: dict[str, str]) -> Any:
    return html.Div([
        dcc.Store(id=ids.OV_ARGS, data={"run": run_id}),
        html.Div(id=ids.OV_HEAD),
        dcc.Loading(html.Div(id=ids.OV_NUMBERS)),
        html.Div([dcc.Loading(html.Div(id=ids.ov_figure(w)), className="cell") for w in FIGURES], className="grid2"),
        html.H3("Settings"),
        html.Div(id=ids.OV_CONFIG),
    ])


def register(app, ctx: Context) -> None:
    args = [Input(ids.OV_ARGS, "data"), Input(ids.LIVE_VERSION, "data")]

    @app.callback(Output(ids.OV_HEAD, "children"), Output(ids.OV_NUMBERS, "children"),
                  Output(ids.OV_CONFIG, "children"), *args)
    def _summary(a, _version):
        run_id = (a or {}).get("run")
        try:
            run = ctx.run(run_id)
        except Exception as exc:
            card = error_card(str(exc), "Run not readable")
            return card, None, None
        numbers = safe(lambda: [class_balance_card(list(run.class_warnings()["message"])),
                                number_cards(headline_cards(headline(run, ctx.flipflops(run_id))))])
        return (safe(lambda: header(ctx, run_id)), numbers,
                safe(lambda: frame_table(config_table(run), page_size=60)))

    def figure_callback(which: str) -> None:
        @app.callback(Output(ids.ov_figure(which), "children"), *args)
        def _figure(a, _version):
            run_id = (a or {}).get("run")
            return figure_block(lambda: figure(ctx.run(run_id), which))

    for which in FIGURES:
        figure_callback(which)
