"""Every page of the dashboard, every callback, over runs in which relabelling emptied a
class: no error card, no NaN shown where a number is expected, and the class-balance
warning on the overview and the compare page."""

from __future__ import annotations

import re
import shutil

import pytest

from relabscope.dashboard import ids
from relabscope.dashboard.app import PAGES
from relabscope.dashboard.harness import ROUTER, components, dash_call, find, key_outputs, page_callbacks, texts

SHELL_IDS = {ids.URL, ids.LIVE_VERSION, ids.TICK}
SUMMARY = [f"{ids.OV_HEAD}.children", f"{ids.OV_NUMBERS}.children", f"{ids.OV_CONFIG}.children"]
#: a projection method the test can wait for (UMAP's first use compiles for half a minute)
OVERRIDES = {f"{ids.MP_METHOD}.value": "tsne"}
#: callbacks each page fires with its own inputs (a page that lost its callbacks fails)
MIN_CALLBACKS = {"": 7, "flipflops": 5, "sample": 4, "map": 2, "compactness": 1, "compare": 8, "review": 2}
NAN = re.compile(r"\bnan\b", re.IGNORECASE)


@pytest.fixture(scope="module")
def emptied_app(emptied_pair, tmp_path_factory):
    from relabscope.dashboard import create_app

    root = tmp_path_factory.mktemp("emptied-served")
    for path in emptied_pair:
        shutil.copytree(path, root / path.name)
    app = create_app([root], refresh_seconds=0)
    return app, app.server.test_client()


def _page(app, client, path: str, search: str) -> tuple[dict, dict]:
    out = dash_call(app, client, ROUTER, {f"{ids.URL}.pathname": path, f"{ids.URL}.search": search})
    layout = out[ids.PAGE]["children"]
    values = {f"{ids.URL}.pathname": path, f"{ids.URL}.search": search, f"{ids.TICK}.n_intervals": 1,
              f"{ids.LIVE_VERSION}.data": out[ids.LIVE_VERSION]["data"]}
    comps = components(layout)
    for cid, comp in comps.items():
        for prop, value in comp["props"].items():
            values[f"{cid}.{prop}"] = value
    return comps, {**values, **{k: v for k, v in OVERRIDES.items() if k in values}}


@pytest.mark.parametrize("page", list(PAGES))
def test_every_callback_of_every_page_answers_without_nan(emptied_app, page) -> None:
    app, client = emptied_app
    for run_id, against in (("emptied", "emptied-scn"), ("emptied-scn", "emptied")):
        search = f"?run={run_id}&against={against}&sample=48"
        comps, values = _page(app, client, "/" + page, search)
        assert comps, f"/{page}{search} has no components"
        assert not find(comps, lambda c: "error-card" in str(c["props"].get("className", "")))
        called = 0
        for key, cb in page_callbacks(app.callback_map, comps, SHELL_IDS):
            outputs = key_outputs(key)
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
    args = {f"{ids.OV_ARGS}.data": {"run": "emptied"}, f"{ids.LIVE_VERSION}.data": None}
    out = dash_call(app, client, SUMMARY, args)
    warning = _warning_text(out)
    assert "class 'anger' was emptied by relabelling in epoch 1: 16 given, 0 after the last epoch" in warning
    assert "class 'sadness' shrank below 50%" in warning
    for which in ("classes", "flow"):
        cell = ids.ov_figure(which)
        fig = dash_call(app, client, [f"{cell}.children"], args)[cell]["children"]["props"]["figure"]
        assert "anger" in fig["layout"]["title"]["subtitle"]["text"]


def test_compare_page_warns_for_both_runs(emptied_app) -> None:
    app, client = emptied_app
    out = dash_call(app, client, [f"{ids.CP_SUMMARY}.children"],
                    {f"{ids.CP_ARGS}.data": {"run": "emptied", "against": "emptied-scn"},
                     f"{ids.LIVE_VERSION}.data": None})
    warning = _warning_text(out)
    assert "emptied: class 'anger' was emptied" in warning and "emptied-scn: class 'anger' was emptied" in warning
    rows = {r["metric"]: r for r in find(out, lambda c: c["type"] == "DataTable")[0]["props"]["data"]}
    assert rows["classes_emptied"]["a"] == 1 and rows["classes_emptied"]["b"] == 1


def test_a_balanced_run_shows_no_warning(app, client) -> None:
    out = dash_call(app, client, SUMMARY, {f"{ids.OV_ARGS}.data": {"run": "baseline"},
                                           f"{ids.LIVE_VERSION}.data": None})
    assert _warning_text(out) == ""
