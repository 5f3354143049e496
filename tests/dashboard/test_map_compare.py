"""The embedding map, compactness and compare pages on the tiny runs, called as the browser
calls them: what they show equals what the Run / Comparison API returns, and bad input
gives an error card."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from relabscope.analysis.compare import compare
from relabscope.dashboard import compare as cppage
from relabscope.dashboard import embedding_map as mppage
from relabscope.dashboard import ids
from relabscope.dashboard.harness import ROUTER, by_id, dash_call, find, texts
from relabscope.dashboard.inputs import parse_classes, parse_epoch, parse_method, sample_from_click, selected_ids
from tests.dashboard.test_pages import _values

MAP = [f"{ids.MP_GRAPH}.figure", f"{ids.MP_STATUS}.children"]
SELECTION = [f"{ids.MP_TABLE}.data", f"{ids.MP_COUNT}.children"]
COMPACTNESS = [f"{ids.CM_TABLE}.children", f"{ids.CM_FIGURE}.children"]


def _route(app, client, path, search):
    out = dash_call(app, client, ROUTER, {f"{ids.URL}.pathname": path, f"{ids.URL}.search": search})
    return out[ids.PAGE]["children"]


def _error_cards(component):
    return find(component, lambda c: "error-card" in str(c["props"].get("className", "")))


MAP_OUT = [*MAP, f"{ids.MP_POLL}.disabled"]


def _map(app, client, run_id="scn", method="umap", epoch=None, classes=None, colour="effect"):
    """The map callback as the page drives it: asked, then (while its projection is
    computed in the background) asked again when the poll interval fires."""
    args = {f"{ids.MP_ARGS}.data": {"run": run_id}, f"{ids.MP_METHOD}.value": method, f"{ids.MP_EPOCH}.value": epoch,
            f"{ids.MP_CLASSES}.value": classes, f"{ids.MP_COLOUR}.value": colour, f"{ids.LIVE_VERSION}.data": None,
            f"{ids.MP_POLL}.n_intervals": None}
    for _ in range(3):
        out = dash_call(app, client, MAP_OUT, args)
        if out[ids.MP_POLL]["disabled"]:
            return out
        assert "computing the" in texts(out[ids.MP_STATUS])
        app.relabscope.background.wait(timeout=120)
    raise AssertionError("the map never became ready")


def test_map_is_computed_in_the_background_with_a_pca_preview_meanwhile(app, client) -> None:
    ctx = app.relabscope
    ctx.projections.clear()
    run = ctx.run("scn")
    args = {f"{ids.MP_ARGS}.data": {"run": "scn"}, f"{ids.MP_METHOD}.value": "tsne", f"{ids.MP_EPOCH}.value": None,
            f"{ids.MP_CLASSES}.value": [1], f"{ids.MP_COLOUR}.value": "given", f"{ids.LIVE_VERSION}.data": None,
            f"{ids.MP_POLL}.n_intervals": None}
    first = dash_call(app, client, MAP_OUT, args)
    assert first[ids.MP_POLL]["disabled"] is False  # the page will ask again
    assert "computing the t-SNE" in texts(first[ids.MP_STATUS]) and "PCA preview" in texts(first[ids.MP_STATUS])
    preview = first[ids.MP_GRAPH]["figure"]
    assert "PCA (epoch 3) while the t-SNE computes" in preview["layout"]["title"]["text"].replace("<br>", " ")
    pca = run.project("pca", classes=[1], max_points=ctx.max_points)
    drawn = _points(preview).set_index("sample_id").sort_index()
    assert drawn.index.tolist() == sorted(pca["sample_id"])  # the same points, at their PCA places
    assert np.allclose(drawn[["x", "y"]], pca.set_index("sample_id").sort_index()[["x", "y"]], atol=1e-4)
    ctx.background.wait(timeout=120)
    ready = dash_call(app, client, MAP_OUT, {**args, f"{ids.MP_POLL}.n_intervals": 1})
    assert ready[ids.MP_POLL]["disabled"] is True and "training samples" in texts(ready[ids.MP_STATUS])
    assert "t-SNE of the embeddings" in ready[ids.MP_GRAPH]["figure"]["layout"]["title"]["text"]
    assert ready[ids.MP_GRAPH]["figure"]["layout"]["uirevision"] != preview["layout"]["uirevision"]
    assert len(ctx.projections) == 1


def test_pca_map_is_drawn_at_once(app, client) -> None:
    out = dash_call(app, client, MAP_OUT, {f"{ids.MP_ARGS}.data": {"run": "scn"}, f"{ids.MP_METHOD}.value": "pca",
                    f"{ids.MP_EPOCH}.value": None, f"{ids.MP_CLASSES}.value": None,
                    f"{ids.MP_COLOUR}.value": "effect", f"{ids.LIVE_VERSION}.data": None,
                    f"{ids.MP_POLL}.n_intervals": None})
    assert out[ids.MP_POLL]["disabled"] is True  # nothing pending, nothing polled
    assert len(_points(out[ids.MP_GRAPH]["figure"])) == int(app.relabscope.run("scn").train_mask.sum())


def _points(fig) -> pd.DataFrame:
    """Every drawn point of a projection figure: sample id (customdata[0]), x, y, trace."""
    rows = []
    for i, trace in enumerate(fig["data"]):
        cd = trace.get("customdata")
        if cd is None or (isinstance(cd, list) and not cd):
            continue
        for sid_row, x, y in zip(_values(cd), _values(trace["x"]), _values(trace["y"])):
            rows.append((int(float(sid_row[0])), float(x), float(y), i))
    return pd.DataFrame(rows, columns=["sample_id", "x", "y", "trace"])


# ---------------------------------------------------------------------- embedding map
def test_map_layout_offers_the_kept_epochs_and_colourings(app, client) -> None:
    run = app.relabscope.registry.get("scn")
    page = _route(app, client, "/map", "?run=scn")
    epochs = by_id(page, ids.MP_EPOCH)["props"]
    assert [o["value"] for o in epochs["options"]] == run.embedding_epochs()
    assert epochs["value"] == run.embedding_epochs()[-1]
    colours = [o["value"] for o in by_id(page, ids.MP_COLOUR)["props"]["options"]]
    assert colours == ["effect", "given", "clean", "flipflops", "aum_given"]  # the tiny data knows clean labels
    deep = _route(app, client, "/map", f"?run=scn&method=tsne&epoch={run.embedding_epochs()[0]}&classes=0,2&color=given")
    assert by_id(deep, ids.MP_METHOD)["props"]["value"] == "tsne"
    assert by_id(deep, ids.MP_EPOCH)["props"]["value"] == run.embedding_epochs()[0]
    assert by_id(deep, ids.MP_CLASSES)["props"]["value"] == [0, 2]
    assert by_id(deep, ids.MP_COLOUR)["props"]["value"] == "given"


def test_map_is_the_runs_projection(app, client) -> None:
    run = app.relabscope.registry.get("scn")
    out = _map(app, client)
    fig = out[ids.MP_GRAPH]["figure"]
    assert {t["type"] for t in fig["data"]} == {"scattergl"}
    e = run.embedding_epochs()[-1]
    want = run.project("umap", e, max_points=app.relabscope.max_points).set_index("sample_id")
    got = _points(fig).set_index("sample_id").sort_index()
    assert got.index.tolist() == sorted(want.index)
    np.testing.assert_allclose(got["x"], want.loc[got.index, "x"], rtol=1e-5)
    # one trace per class in effect, named with its count
    for t in fig["data"]:
        if t.get("customdata") is not None:
            sample_ids = [int(c[0]) for c in _values(t["customdata"])]
            labels = {run.class_names[v] for v in want.loc[sample_ids, "label"]}
            assert len(labels) == 1 and t["name"].startswith(labels.pop())
    assert f"{len(want)} of {int(run.train_mask.sum())} training samples" in texts(out[ids.MP_STATUS])


def test_map_classes_and_numeric_colour(app, client) -> None:
    run = app.relabscope.registry.get("scn")
    e = run.embedding_epochs()[-1]
    out = _map(app, client, method="tsne", epoch=e, classes=[0, 1], colour="flipflops")
    fig = out[ids.MP_GRAPH]["figure"]
    want = run.project("tsne", e, classes=[0, 1], max_points=app.relabscope.max_points)
    assert set(want["label"]) <= {0, 1}
    trace = fig["data"][0]
    sample_ids = [int(c[0]) for c in _values(trace["customdata"])]
    assert sorted(sample_ids) == sorted(want["sample_id"])
    flip = run.flipflops().set_index("sample_id")["flipflops"]
    np.testing.assert_array_equal(_values(trace["marker"]["color"]), flip.loc[sample_ids].to_numpy(float))


def test_lasso_lists_exactly_the_selected_samples(app, client) -> None:
    run = app.relabscope.registry.get("scn")
    fig = _map(app, client)[ids.MP_GRAPH]["figure"]
    pts = _points(fig)
    chosen = pts.iloc[::7]
    selected = {"points": [{"curveNumber": int(r.trace), "x": r.x, "y": r.y,
                            "customdata": [str(r.sample_id), "?", "?", "?"]} for r in chosen.itertuples()]
                + [{"curveNumber": 99, "x": 0, "y": 0}]}  # the legend-only trace: no customdata
    picks = {f"{ids.MP_METHOD}.value": "umap", f"{ids.MP_EPOCH}.value": None, f"{ids.MP_CLASSES}.value": []}
    state = {f"{ids.MP_ARGS}.data": {"run": "scn"}}
    out = dash_call(app, client, SELECTION, {f"{ids.MP_GRAPH}.selectedData": selected, **picks}, state,
                    changed=[f"{ids.MP_GRAPH}.selectedData"])
    rows = out[ids.MP_TABLE]["data"]
    assert [r["sample_id"] for r in rows] == sorted(chosen["sample_id"])
    e = run.embedding_epochs()[-1]
    flip = run.flipflops().set_index("sample_id")
    for r in rows:
        sid = r["sample_id"]
        assert r["given"] == run.class_names[run.given_labels[sid]]
        assert r["effect"] == run.class_names[run.labels()[e, sid]]
        assert r["clean"] == run.class_names[run.clean_labels[sid]]
        assert r["flipflops"] == flip.loc[sid, "flipflops"]
        assert f"(/sample?run=scn&sample={sid})" in r["sample"]
    assert texts(out[ids.MP_COUNT]).startswith(f"{len(rows)} samples selected")
    empty = dash_call(app, client, SELECTION, {f"{ids.MP_GRAPH}.selectedData": None, **picks}, state,
                      changed=[f"{ids.MP_GRAPH}.selectedData"])
    assert empty[ids.MP_TABLE]["data"] == []
    other_map = dash_call(app, client, SELECTION,
                          {f"{ids.MP_GRAPH}.selectedData": selected, **picks, f"{ids.MP_METHOD}.value": "tsne"},
                          state, changed=[f"{ids.MP_METHOD}.value"])
    assert other_map[ids.MP_TABLE]["data"] == []  # a new map: the old selection no longer applies


def test_clicking_a_point_opens_the_sample(app, client) -> None:
    fig = _map(app, client, run_id="group/nested")[ids.MP_GRAPH]["figure"]
    sid = _points(fig)["sample_id"].iloc[3]
    click = {"points": [{"curveNumber": 0, "pointNumber": 3, "customdata": [str(sid), "a", "b", "c"]}]}
    out = dash_call(app, client, [f"{ids.URL}.href"], {f"{ids.MP_GRAPH}.clickData": click},
                    {f"{ids.MP_ARGS}.data": {"run": "group/nested"}})
    assert out[ids.URL]["href"] == f"/sample?run=group%2Fnested&sample={sid}"
    nothing = dash_call(app, client, [f"{ids.URL}.href"], {f"{ids.MP_GRAPH}.clickData": {"points": [{"x": 1}]}},
                        {f"{ids.MP_ARGS}.data": {"run": "scn"}})
    assert nothing == {}


def test_map_bad_input_is_an_error_card(app, client) -> None:
    run = app.relabscope.registry.get("scn")
    missing = next(e for e in range(run.num_epochs) if e not in run.embedding_epochs())
    out = _map(app, client, epoch=missing)
    assert _error_cards(out[ids.MP_STATUS]) and f"no embeddings kept for epoch {missing}" in texts(out[ids.MP_STATUS])
    assert out[ids.MP_GRAPH]["figure"]["layout"]["meta"]["note"].startswith("ValueError: no embeddings kept")
    for search in (f"?run=scn&epoch={missing}", "?run=scn&epoch=x", "?run=scn&method=mds", "?run=scn&classes=0,99"):
        page = _route(app, client, "/map", search)
        assert _error_cards(page), search
    bad_colour = _map(app, client, colour="__class__")
    assert _error_cards(bad_colour[ids.MP_STATUS])


# ---------------------------------------------------------------------- compactness
def test_compactness_table_is_the_run_api(app, client) -> None:
    run = app.relabscope.registry.get("scn-c")
    page = _route(app, client, "/compactness", "?run=scn-c")
    assert [o["value"] for o in by_id(page, ids.CM_LABELS)["props"]["options"]] == ["effect", "given", "clean"]
    assert "scn-c" not in [o["value"] for o in by_id(page, ids.CM_AGAINST)["props"]["options"]]
    for labels, epoch in (("effect", -1), ("given", 1), ("clean", 0)):
        out = dash_call(app, client, COMPACTNESS, {f"{ids.CM_ARGS}.data": {"run": "scn-c"},
                                                   f"{ids.CM_AGAINST}.value": None, f"{ids.CM_LABELS}.value": labels,
                                                   f"{ids.CM_EPOCH}.value": epoch, f"{ids.LIVE_VERSION}.data": None})
        want = run.compactness(epoch, labels)
        rows = out[ids.CM_TABLE]["children"]["props"]["data"]
        assert [r["class"] for r in rows] == list(want.index)
        for r, (_, w) in zip(rows, want.iterrows()):
            assert r["n"] == w["n"]
            if w["n"]:
                assert r["mean"] == pytest.approx(w["mean"], rel=1e-12) and r["std"] == pytest.approx(w["std"], rel=1e-12)
                assert r["mean ± std"] == f"{w['mean']:.4g} ± {w['std']:.4g}"
            else:
                assert r["mean"] is None
        ratio, raw = out[ids.CM_FIGURE]["children"]["props"]["figure"]["data"][:2]  # scale-free first
        for trace, column in ((ratio, "ratio"), (raw, "mean")):
            shown = dict(zip(trace["x"], _values(trace["y"])))
            for cls, w in want.iterrows():
                if w["n"]:
                    assert shown[cls] == pytest.approx(w[column]), (cls, column)
        for r, (_, w) in zip(rows, want.iterrows()):
            assert (r["ratio"] is None and pd.isna(w["ratio"])) or r["ratio"] == pytest.approx(w["ratio"], rel=1e-12)


def test_compactness_against_a_second_run(app, client) -> None:
    a, b = (app.relabscope.registry.get(i) for i in ("scn", "scn-c"))
    out = dash_call(app, client, COMPACTNESS, {f"{ids.CM_ARGS}.data": {"run": "scn"},
                                               f"{ids.CM_AGAINST}.value": "scn-c", f"{ids.CM_LABELS}.value": "effect",
                                               f"{ids.CM_EPOCH}.value": -1, f"{ids.LIVE_VERSION}.data": None})
    want = compare(a, b).compactness(-1, "effect")
    rows = out[ids.CM_TABLE]["children"]["props"]["data"]
    assert [r["class"] for r in rows] == list(want.index)
    for r, (_, w) in zip(rows, want.iterrows()):
        for col in ("mean_a", "mean_b", "std_a", "std_b", "mean_difference", "ratio_a", "ratio_b", "ratio_difference"):
            assert (r[col] is None and pd.isna(w[col])) or r[col] == pytest.approx(w[col], rel=1e-12)
    headers = [c["name"] for c in out[ids.CM_TABLE]["children"]["props"]["columns"]]
    assert "difference of ratios (B − A)" in headers and "difference of raw means (B − A)" in headers
    assert headers.index("scn: own / nearest other") < headers.index("scn: distance, raw")  # scale-free first
    fig = out[ids.CM_FIGURE]["children"]["props"]["figure"]
    assert [(t["name"], t.get("xaxis", "x")) for t in fig["data"]] == [
        ("scn", "x"), ("scn", "x2"), ("scn-c", "x"), ("scn-c", "x2")]
    bad = dash_call(app, client, COMPACTNESS, {f"{ids.CM_ARGS}.data": {"run": "scn"},
                                               f"{ids.CM_AGAINST}.value": "../../etc",
                                               f"{ids.CM_LABELS}.value": "effect", f"{ids.CM_EPOCH}.value": -1,
                                               f"{ids.LIVE_VERSION}.data": None})
    assert "unknown run" in texts(bad[ids.CM_TABLE]) and _error_cards(bad[ids.CM_TABLE])
    broken = dash_call(app, client, COMPACTNESS, {f"{ids.CM_ARGS}.data": {"run": "scn"},
                                                  f"{ids.CM_AGAINST}.value": "broken",
                                                  f"{ids.CM_LABELS}.value": "effect", f"{ids.CM_EPOCH}.value": 99,
                                                  f"{ids.LIVE_VERSION}.data": None})
    assert _error_cards(broken[ids.CM_TABLE])


# ---------------------------------------------------------------------- compare
def test_compare_summary_is_the_comparison(app, client) -> None:
    a, b = (app.relabscope.registry.get(i) for i in ("scn", "scn-c"))
    page = _route(app, client, "/compare", "?run=scn&against=scn-c")
    assert by_id(page, ids.CP_ARGS)["props"]["data"] == {"run": "scn", "against": "scn-c"}
    out = dash_call(app, client, [f"{ids.CP_SUMMARY}.children"],
                    {f"{ids.CP_ARGS}.data": {"run": "scn", "against": "scn-c"}, f"{ids.LIVE_VERSION}.data": None})
    table = find(out, lambda c: c["type"] == "DataTable")[0]["props"]
    want = compare(a, b).summary()
    rows = table["data"]
    assert [r["metric"] for r in rows] == list(want.index)
    for r, (_, w) in zip(rows, want.iterrows()):
        for key, v in zip(("a", "b", "difference"), w.to_numpy(float)):
            assert (r[key] is None and np.isnan(v)) or r[key] == pytest.approx(v, rel=1e-12)
    acc = next(r for r in rows if r["metric"] == "test_acc")
    assert acc["a_shown"] == f"{float(want.loc['test_acc'].iloc[0]):.1%}"
    assert [c["name"] for c in table["columns"]][1:3] == ["scn", "scn-c"]


def test_compare_figures_show_both_runs(app, client) -> None:
    a, b = (app.relabscope.registry.get(i) for i in ("scn", "scn-c"))
    figs = {}
    for which in cppage.FIGURES:
        cell = ids.cp_figure(which)
        out = dash_call(app, client, [f"{cell}.children"], {f"{ids.CP_ARGS}.data": {"run": "scn", "against": "scn-c"},
                                                            f"{ids.LIVE_VERSION}.data": None})
        figs[which] = out[cell]["children"]["props"]["figure"]
    tests = [t for t in figs["accuracy"]["data"] if t["name"].endswith(": test")]
    for trace, run in zip(tests, (a, b)):
        np.testing.assert_allclose(_values(trace["y"]), run.metrics()["test_acc"].to_numpy(), rtol=1e-6)
    totals = {t["name"]: dict(zip(t["x"], _values(t["y"]))) for t in figs["totals"]["data"]}
    for name, run in (("scn", a), ("scn-c", b)):
        assert totals[name]["flip-flop events"] == run.flipflops()["flipflops"].sum()
    cons = {t["name"]: _values(t["y"])[0] for t in figs["consistency"]["data"] if t.get("xaxis", "x") == "x"}
    assert cons["scn-c"] == pytest.approx(float(b.consistency()["closer_to_new"]))
    comp = {(t["name"], t.get("xaxis", "x")): t for t in figs["compactness"]["data"]}
    for axis, column in (("x", "ratio"), ("x2", "mean")):  # scale-free, then raw
        trace = comp[("scn", axis)]
        np.testing.assert_allclose(_values(trace["y"]), a.compactness().reindex(trace["x"])[column].to_numpy(),
                                   rtol=1e-6)


def test_compare_defaults_to_the_newest_other_readable_run(app, client) -> None:
    reg = app.relabscope.registry
    page = _route(app, client, "/compare", "?run=scn")
    against = by_id(page, ids.CP_ARGS)["props"]["data"]["against"]
    readable = [i for i in reg.ids() if i != "scn" and reg.error(i) is None]
    assert against == readable[0] and against != "broken"
    assert "broken" in reg.ids()


def test_same_sample_in_both_runs(app, client) -> None:
    a, b = (app.relabscope.registry.get(i) for i in ("scn", "scn-c"))
    aligned = compare(a, b).samples()
    row = aligned.sort_values(["flipflops_a", "sample_id_a"], ascending=[False, True]).iloc[0]
    sid_a, sid_b = int(row["sample_id_a"]), int(row["sample_id_b"])
    out = dash_call(app, client, [f"{ids.CP_SAMPLE_VIEW}.children"],
                    {f"{ids.CP_SAMPLE}.value": str(sid_a), f"{ids.CP_ARGS}.data": {"run": "scn", "against": "scn-c"},
                     f"{ids.LIVE_VERSION}.data": None})
    view = out[ids.CP_SAMPLE_VIEW]["children"]
    facts = find(view, lambda c: c["type"] == "DataTable")[0]["props"]["data"]
    by_field = {f["field"]: f for f in facts}
    assert by_field["sample id"]["scn"] == str(sid_a) and by_field["sample id"]["scn-c"] == str(sid_b)
    assert by_field["flip-flops"]["scn"] == str(int(row["flipflops_a"]))
    assert by_field["flip-flops"]["scn-c"] == str(int(row["flipflops_b"]))
    assert by_field["relabel events"]["scn-c"] == str(int(row["changes_b"]))
    assert by_field["label after the last epoch"]["scn-c"] == b.class_names[b.final_labels()[sid_b]]
    graphs = [g["props"]["figure"] for g in find(view, lambda c: c["type"] == "Graph")]
    assert len(graphs) == 4  # timeline and distance bars, per run
    timeline_a, bars_a, timeline_b, bars_b = graphs
    assert timeline_a["data"][1]["y"] == [a.class_names[v] for v in a.labels()[:, sid_a]]
    assert timeline_b["data"][1]["y"] == [b.class_names[v] for v in b.labels()[:, sid_b]]
    profile = b.distance_profile(sid_b)
    last = profile[profile["epoch"] == profile["epoch"].max()].set_index("class_name")["relative_distance"]
    bars = [t for t in bars_b["data"] if t.get("x") and t["x"][0]][-1]
    for name, d in zip(bars["x"], _values(bars["y"])):
        assert d == pytest.approx(last[name], rel=1e-5, nan_ok=True)  # NaN: a class relabelled empty
    hrefs = [c["props"]["href"] for c in find(view, lambda c: c["type"] == "Link")]
    assert hrefs == [f"/sample?run=scn&sample={sid_a}", f"/sample?run=scn-c&sample={sid_b}"]


@pytest.mark.parametrize("value, message", [("abc", "must be a non-negative integer"), ("-3", "non-negative"),
                                            ("100", "is a test sample"), ("9999", "out of range")])
def test_same_sample_bad_input_is_an_error_card(app, client, value, message) -> None:
    out = dash_call(app, client, [f"{ids.CP_SAMPLE_VIEW}.children"],
                    {f"{ids.CP_SAMPLE}.value": value, f"{ids.CP_ARGS}.data": {"run": "scn", "against": "scn-c"},
                     f"{ids.LIVE_VERSION}.data": None})
    view = out[ids.CP_SAMPLE_VIEW]["children"]
    assert _error_cards(view) and message in texts(view)


def test_compare_with_an_unknown_or_broken_run_is_an_error_card(app, client) -> None:
    for search, message in (("?run=scn&against=nope", "unknown run 'nope'"),
                            ("?run=scn&against=broken", "not a readable HDF5 run log")):
        page = _route(app, client, "/compare", search)
        assert _error_cards(page) and message in texts(page)
        assert by_id(page, ids.CP_AGAINST)["props"]["value"] is None  # a picker to choose another
    page = _route(app, client, "/compare", "?run=scn&against=scn-c&sample=abc")
    assert by_id(page, ids.CP_SAMPLE)["props"]["value"] == "abc"  # the callback shows the error card


def test_compare_picker_and_swap_link(app, client) -> None:
    out = dash_call(app, client, [f"{ids.URL}.href"], {f"{ids.CP_AGAINST}.value": "baseline"},
                    {f"{ids.CP_ARGS}.data": {"run": "scn", "against": "scn-c"},
                     f"{ids.URL}.search": "?run=scn&against=scn-c"})
    assert out[ids.URL]["href"] == "/compare?run=scn&against=baseline"
    unknown = dash_call(app, client, [f"{ids.URL}.href"], {f"{ids.CP_AGAINST}.value": "nope"},
                        {f"{ids.CP_ARGS}.data": {"run": "scn", "against": "scn-c"}, f"{ids.URL}.search": ""})
    assert unknown == {}
    page = _route(app, client, "/compare", "?run=scn&against=scn-c")
    links = [c["props"]["href"] for c in find(page, lambda c: c["type"] == "Link")]
    assert "/compare?run=scn-c&against=scn" in links


def test_compare_with_a_single_run_explains(tiny_runs, tmp_path) -> None:
    from relabscope.dashboard import create_app

    shutil.copytree(tiny_runs["scn"], tmp_path / "only")
    app = create_app([tmp_path], refresh_seconds=0)
    client = app.server.test_client()
    page = _route(app, client, "/compare", "")
    assert "Comparing needs two runs" in texts(page) and not _error_cards(page)


# ---------------------------------------------------------------------- shell and CLI
def test_pages_in_nav_order(app, client) -> None:
    from relabscope.dashboard.app import PAGES

    assert list(PAGES) == ["", "flipflops", "sample", "map", "compactness", "compare", "review"]
    nav = dash_call(app, client, ROUTER,
                    {f"{ids.URL}.pathname": "/compactness", f"{ids.URL}.search": "?run=scn"})[ids.TOPNAV]
    links = find(nav, lambda c: c["type"] == "Link")
    assert [c["props"]["children"] for c in links] == ["Overview", "Flip-flops", "Sample", "Embedding map",
                                                       "Compactness", "Compare", "Review"]
    assert links[4]["props"]["className"] == "active" and links[5]["props"]["href"] == "/compare?run=scn"


def test_demo_opens_the_compare_page_of_its_runs(tiny_runs, tmp_path, monkeypatch) -> None:
    from relabscope import cli
    from relabscope.dashboard import RunRegistry
    from relabscope import demo as demo_module

    out = tmp_path / "runs" / "demo"
    dirs = [out / "scn-20", out / "scn-c-20"]
    for d, method in zip(dirs, ("scn", "scn-c")):
        shutil.copytree(tiny_runs[method], d)
    served = {}
    monkeypatch.setattr(demo_module, "demo_runs", lambda *a, **k: dirs)
    monkeypatch.setattr(cli, "_serve", lambda roots, page="", max_points=0, **serving: served.update(
        roots=roots, page=page, max_points=max_points))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli.main, ["demo", "--out", "runs/demo", "--max-points", "0"])
    assert result.exit_code == 0, result.output
    assert served["page"] == "compare?run=scn-20&against=scn-c-20"
    assert served["max_points"] == 0  # 0: every training sample on the maps
    run_ids = RunRegistry(served["roots"]).ids()
    assert {"scn-20", "scn-c-20"} <= set(run_ids)


def test_plain_helpers_of_the_new_pages() -> None:
    assert selected_ids({"points": [{"customdata": {"0": 7}}, {"customdata": {"0": 3.0, "1": 0.5}}]}) == [3, 7]
    assert selected_ids({"points": [{"customdata": ["3", "x"]}, {"customdata": [1]}, {"x": 0},
                                    {"customdata": ["3"]}]}) == [1, 3]
    assert selected_ids(None) == [] and sample_from_click({"points": []}) is None
    assert parse_classes("2,0,2", ["a", "b", "c"]) == [0, 2] and parse_classes([], ["a"]) is None
    with pytest.raises(ValueError):
        parse_classes("5", ["a"])
    with pytest.raises(ValueError):
        parse_method("mds", mppage.PROJECTION_NAMES)
    assert parse_epoch(None, 4) == -1 and parse_epoch("-4", 4) == -4
    for bad in ("4", "x", True):
        with pytest.raises(ValueError):
            parse_epoch(bad, 4)
    aligned = pd.DataFrame({"sample_id_a": [0, 1, 2], "flipflops_a": [0, 1, 1], "flipflops_b": [2, 0, 1],
                            "changes_a": [0, 1, 2], "changes_b": [3, 0, 1]})
    assert cppage.top_samples(aligned, 2) == [0, 2]  # ties by sample id
    assert cppage.summary_rows(pd.DataFrame({"x": [0.5], "y": [0.25], "d": [np.nan]}, index=["test_acc"]))[0] \
        == {"metric": "test_acc", "what": "test accuracy, last epoch", "a": 0.5, "b": 0.25, "difference": None,
            "a_shown": "50.0%", "b_shown": "25.0%", "difference_shown": "n/a"}
