"""Every page of the dashboard, every callback, over runs in which relabelling emptied a
class: no error card, no NaN shown where a number is expected, and the class-balance
warning on the overview and the compare page."""

from __future__ import annotations

import re
import shutil

import pytest

from relabscope.dashboard.app import PAGES
from tests.dashboard.conftest import dash_call, find, texts

ROUTER = ["page.children", "topnav.children", "live-version.data"]
SHELL_IDS = {"url", "live-version", "tick"}
#: a projection method the test can wait for (UMAP's first use compiles for half a minute)
OVERRIDES = {"mp-method.value": "tsne"}
#: callbacks each page fires with its own inputs (a page that lost its callbacks fails)
MIN_CALLBACKS = {"": 7, "flipflops": 5, "sample": 4, "map": 2, "compactness": 1, "compare": 8}
NAN = re.compile(r"\bnan\b", re.IGNORECASE)


@pytest.fixture(scope="module")
def emptied_app(emptied_pair, tmp_path_factory):
    from relabscope.dashboard import create_app

    root = tmp_path_factory.mktemp("emptied-served")
    for path in emptied_pair:
        shutil.copytree(path, root / path.name)
    app = create_app([root], refresh_seconds=0)
    return app, app.server.test_client()


def _components(tree) -> dict[str, dict]:
    return {c["props"]["id"]: c["props"] for c in find(tree, lambda c: isinstance(c["props"].get("id"), str))}


def _outputs(key: str) -> list[str]:
    parts = key.strip(".").split("...") if key.startswith("..") else [key]
    return [p.split("@")[0] for p in parts]


def _page(app, client, path: str, search: str) -> tuple[dict, dict]:
    out = dash_call(app, client, ROUTER, {"url.pathname": path, "url.search": search})
    layout = out["page"]["children"]
    values = {"url.pathname": path, "url.search": search, "tick.n_intervals": 1,
              "live-version.data": out["live-version"]["data"]}
    comps = _components(layout)
    for cid, props in comps.items():
        for prop, value in props.items():
            values[f"{cid}.{prop}"] = value
    return comps, {**values, **{k: v for k, v in OVERRIDES.items() if k in values}}


def _page_callbacks(app, ids: set[str]) -> list[tuple[list[str], dict]]:
    """Callbacks whose inputs are all on the page (or the shell) and one of them on the page."""
    found = []
    for key, cb in app.callback_map.items():
        if "{" in key:
            continue
        inputs = {i["id"] for i in cb["inputs"]}
        if inputs <= ids | SHELL_IDS and inputs & ids:
            found.append((_outputs(key), cb))
    return found


@pytest.mark.parametrize("page", list(PAGES))
def test_every_callback_of_every_page_answers_without_nan(emptied_app, page) -> None:
    app, client = emptied_app
    for run_id, against in (("emptied", "emptied-scn"), ("emptied-scn", "emptied")):
        search = f"?run={run_id}&against={against}&sample=48"
        comps, values = _page(app, client, "/" + page, search)
        assert comps, f"/{page}{search} has no components"
        assert not find(comps, lambda c: "error-card" in str(c["props"].get("className", "")))
        called = 0
        for outputs, cb in _page_callbacks(app, set(comps)):
            inputs = {f"{i['id']}.{i['property']}": values.get(f"{i['id']}.{i['property']}") for i in cb["inputs"]}
            state = {f"{s['id']}.{s['property']}": values.get(f"{s['id']}.{s['property']}") for s in cb["state"]}
            out = dash_call(app, client, outputs, inputs, state)
            called += 1
            cards = find(out, lambda c: "error-card" in str(c["props"].get("className", "")))
            assert not cards, (page, outputs, texts(cards))
            shown = texts(out)
            assert not NAN.search(shown), (page, outputs, NAN.findall(shown))
        assert called >= MIN_CALLBACKS[page], (page, called)


def _warning_text(out) -> str:
    return texts(find(out, lambda c: "warn-card" in str(c["props"].get("className", ""))))


def test_overview_warns_and_draws_class_balance(emptied_app) -> None:
    app, client = emptied_app
    args = {"ov-args.data": {"run": "emptied"}, "live-version.data": None}
    out = dash_call(app, client, ["ov-head.children", "ov-numbers.children", "ov-config.children"], args)
    warning = _warning_text(out)
    assert "class 'anger' was emptied by relabelling in epoch 1: 16 given, 0 after the last epoch" in warning
    assert "class 'sadness' shrank below 50%" in warning
    for which in ("classes", "flow"):
        fig = dash_call(app, client, [f"ov-{which}.children"], args)[f"ov-{which}"]["children"]["props"]["figure"]
        assert "anger" in fig["layout"]["title"]["subtitle"]["text"]


def test_compare_page_warns_for_both_runs(emptied_app) -> None:
    app, client = emptied_app
    out = dash_call(app, client, ["cp-summary.children"],
                    {"cp-args.data": {"run": "emptied", "against": "emptied-scn"}, "live-version.data": None})
    warning = _warning_text(out)
    assert "emptied: class 'anger' was emptied" in warning and "emptied-scn: class 'anger' was emptied" in warning
    rows = {r["metric"]: r for r in find(out, lambda c: c["type"] == "DataTable")[0]["props"]["data"]}
    assert rows["classes_emptied"]["a"] == 1 and rows["classes_emptied"]["b"] == 1


def test_a_balanced_run_shows_no_warning(app, client) -> None:
    out = dash_call(app, client, ["ov-head.children", "ov-numbers.children", "ov-config.children"],
                    {"ov-args.data": {"run": "baseline"}, "live-version.data": None})
    assert _warning_text(out) == ""
