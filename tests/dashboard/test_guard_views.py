"""The relabel guards on the dashboard, called as the browser calls it, over a tiny guarded
SCN run and an unguarded one on the same data (``tests.guarded``, trained once here): the
overview's vetoed-relabels card and its relabels view with the vetoes beside, the floor
in the class sizes, and the compare page's summary rows and vetoes figure; every callback
of both pages answers; a pair of runs without guards shows nothing of them."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from relabscope import plot
from relabscope.dashboard import ids
from relabscope.dashboard.harness import ROUTER, components, dash_call, find, key_outputs, page_callbacks, texts
from tests.conftest import scratch
from tests.dashboard.test_pages import _values
from tests.guarded import GUARD_NAMES, GUARDED, OFF, train_pair

SUMMARY = [f"{ids.OV_HEAD}.children", f"{ids.OV_NUMBERS}.children", f"{ids.OV_CONFIG}.children"]
#: an unguarded run's log alone, under a second name: a pair of runs without guards
OFF_COPY = "scn-unguarded-copy"


@pytest.fixture(scope="module")
def guard_app(tmp_path_factory, _isolated_cache):
    from relabscope.dashboard import create_app

    with scratch(tmp_path_factory, "guard-views") as root:
        runs = train_pair(root)
        (root / OFF_COPY).mkdir()
        shutil.copy(runs[OFF] / "run.h5", root / OFF_COPY / "run.h5")
        app = create_app([root], refresh_seconds=0)
        yield app, app.server.test_client()


def _overview_figure(app, client, run_id: str, which: str) -> dict:
    cell = ids.ov_figure(which)
    out = dash_call(app, client, [f"{cell}.children"], {f"{ids.OV_ARGS}.data": {"run": run_id},
                                                        f"{ids.LIVE_VERSION}.data": None})
    return out[cell]["children"]["props"]["figure"]


def _cards(app, client, run_id: str) -> str:
    out = dash_call(app, client, SUMMARY, {f"{ids.OV_ARGS}.data": {"run": run_id}, f"{ids.LIVE_VERSION}.data": None})
    return texts(find(out[ids.OV_NUMBERS]["children"], lambda c: "num-card" in str(c["props"].get("className"))))


def test_overview_counts_the_vetoes_beside_the_relabel_events(guard_app) -> None:
    app, client = guard_app
    run = app.relabscope.registry.get(GUARDED)
    by_guard = run.vetoes().groupby("guard")["vetoed"].sum()
    cards = _cards(app, client, GUARDED)
    per_guard = " · ".join(f"{g} {int(by_guard[g]):,}" for g in GUARD_NAMES)
    assert f"{int(by_guard.sum()):,} relabels vetoed ({per_guard})" in cards
    assert cards.index("relabel events") < cards.index("relabels vetoed") < cards.index("flip-flops")
    assert "vetoed" not in _cards(app, client, OFF)  # a run without guards: no new card


def test_overview_relabels_view_shows_each_guards_vetoes_per_epoch(guard_app) -> None:
    app, client = guard_app
    run = app.relabscope.registry.get(GUARDED)
    fig = _overview_figure(app, client, GUARDED, "relabels")
    bars = {t["name"]: t for t in fig["data"]}
    np.testing.assert_array_equal(_values(bars["relabel events (granted)"]["y"]), run.metrics()["relabels"])
    table = run.vetoes()
    for guard in GUARD_NAMES:
        want = table[table["guard"] == guard].groupby("epoch")["vetoed"].sum().to_numpy()
        np.testing.assert_array_equal(_values(bars[f"vetoed by {guard}"]["y"]), want)
    plain = _overview_figure(app, client, OFF, "relabels")  # the plain relabels per epoch
    assert [t["name"] for t in plain["data"]] == [OFF]


def test_overview_class_sizes_show_the_floor(guard_app) -> None:
    app, client = guard_app
    run = app.relabscope.registry.get(GUARDED)
    fig = _overview_figure(app, client, GUARDED, "classes")
    floors = {t["hovertemplate"].split(":")[0]: t["y"][0] for t in fig["data"] if t.get("legendgroup") == "relabel floor"}
    given = run.class_counts().drop_duplicates("class_name").set_index("class_name")["given"]
    want = plot.floor_counts(given.to_numpy(), run.config["relabel_floor"]) / given.to_numpy()
    assert floors == pytest.approx(dict(zip(given.index, want)))
    # and the guard held: no class's count in effect fell below its floor
    counts = run.class_counts().pivot(index="epoch", columns="class_name", values="count")[given.index]
    assert (counts.to_numpy() >= plot.floor_counts(given.to_numpy(), 0.5)).all()
    assert not [t for t in _overview_figure(app, client, OFF, "classes")["data"]
                if t.get("legendgroup") == "relabel floor"]


def _compare_layout(app, client, a: str, b: str) -> dict:
    out = dash_call(app, client, ROUTER, {f"{ids.URL}.pathname": "/compare", f"{ids.URL}.search": f"?run={a}&against={b}"})
    return components(out[ids.PAGE]["children"])


def test_compare_page_shows_vetoes_when_either_run_had_a_guard(guard_app) -> None:
    app, client = guard_app
    assert ids.cp_figure("vetoes") in _compare_layout(app, client, OFF, GUARDED)
    assert ids.cp_figure("vetoes") not in _compare_layout(app, client, OFF, OFF_COPY)  # no empty chart
    args = {f"{ids.CP_ARGS}.data": {"run": OFF, "against": GUARDED}, f"{ids.LIVE_VERSION}.data": None}
    cell = ids.cp_figure("vetoes")
    fig = dash_call(app, client, [f"{cell}.children"], args)[cell]["children"]["props"]["figure"]
    assert f"{OFF}: no relabel guard was on" in fig["layout"]["meta"]["subtitle"]
    assert {t["name"] for t in fig["data"]} == {"relabel events (granted)", *(f"vetoed by {g}" for g in GUARD_NAMES)}

    out = dash_call(app, client, [f"{ids.CP_SUMMARY}.children"], args)
    rows = {r["metric"]: r for r in find(out, lambda c: c["type"] == "DataTable")[0]["props"]["data"]}
    vetoed = int(app.relabscope.registry.get(GUARDED).vetoes()["vetoed"].sum())
    assert rows["relabels_vetoed"]["b"] == vetoed and rows["relabels_vetoed"]["b_shown"] == f"{vetoed:,}"
    assert rows["relabels_vetoed"]["a_shown"] == "guard off"
    assert {f"vetoed_by_{g}" for g in GUARD_NAMES} <= set(rows) and "vetoed_by_agree" not in rows
    metrics = list(rows)
    assert metrics.index("relabels_vetoed") == metrics.index("relabel_events") + 1
    plain = dash_call(app, client, [f"{ids.CP_SUMMARY}.children"],
                      {f"{ids.CP_ARGS}.data": {"run": OFF, "against": OFF_COPY}, f"{ids.LIVE_VERSION}.data": None})
    assert "vetoed" not in texts(plain)


@pytest.mark.parametrize("page", ["", "compare"])
def test_every_callback_of_the_guard_pages_answers(guard_app, page) -> None:
    app, client = guard_app
    search = f"?run={GUARDED}&against={OFF}"
    out = dash_call(app, client, ROUTER, {f"{ids.URL}.pathname": "/" + page, f"{ids.URL}.search": search})
    comps = components(out[ids.PAGE]["children"])
    values = {f"{cid}.{prop}": v for cid, c in comps.items() for prop, v in c["props"].items()}
    values[f"{ids.LIVE_VERSION}.data"] = out[ids.LIVE_VERSION]["data"]
    called = 0
    for key, cb in page_callbacks(app.callback_map, comps, {ids.URL, ids.LIVE_VERSION, ids.TICK}):
        names = [f"{i['id']}.{i['property']}" for i in cb["inputs"]]
        state = [f"{s['id']}.{s['property']}" for s in cb["state"]]
        answer = dash_call(app, client, key_outputs(key), {n: values.get(n) for n in names},
                           {n: values.get(n) for n in state})
        cards = find(answer, lambda c: "error-card" in str(c["props"].get("className", "")))
        assert not cards, (page, key, texts(cards))
        called += 1
    assert called >= 6
