"""Each page's callbacks on the tiny runs, called as the browser calls them: what they show
equals what the Run API returns."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from relabscope.dashboard import flipflops as ffpage
from relabscope.dashboard import ids, overview
from relabscope.dashboard.harness import ROUTER, by_id, dash_call, find, texts
from relabscope.dashboard.inputs import cycle_from_click, parse_epochs, sample_from_bar_click

TABLE = [f"{ids.FF_TABLE}.data", f"{ids.FF_TABLE}.page_count", f"{ids.FF_TABLE}.page_current",
         f"{ids.FF_COUNT}.children"]
SUMMARY = [f"{ids.OV_HEAD}.children", f"{ids.OV_NUMBERS}.children", f"{ids.OV_CONFIG}.children"]


def _route(app, client, path, search):
    return dash_call(app, client, ROUTER, {f"{ids.URL}.pathname": path, f"{ids.URL}.search": search})


def _table(app, client, run_id="scn", changed=None, **inputs):
    values = {f"{ids.FF_ARGS}.data": {"run": run_id}, f"{ids.LIVE_VERSION}.data": None,
              f"{ids.FF_MODE}.value": "flipflopping", f"{ids.FF_GIVEN}.value": None, f"{ids.FF_FINAL}.value": None,
              f"{ids.FF_CELL}.data": None, f"{ids.FF_TABLE}.page_current": 0, f"{ids.FF_TABLE}.sort_by": None}
    values.update(inputs)
    return dash_call(app, client, TABLE, values, changed=changed or [k for k in inputs] or [f"{ids.FF_ARGS}.data"])


# ---------------------------------------------------------------------- shell
def test_opens_on_the_newest_run_and_lists_every_run(app, client) -> None:
    reg = app.relabscope.registry
    out = _route(app, client, "/", "")
    assert out[ids.LIVE_VERSION]["data"]["run"] == reg.newest()
    nav = dash_call(app, client, [f"{ids.RUNS_NAV}.children"], {f"{ids.URL}.pathname": "/", f"{ids.URL}.search": "",
                                                                f"{ids.TICK}.n_intervals": None})
    shown = texts(nav)
    for run_id in reg.ids():
        assert run_id in shown
    assert "not a readable HDF5 run log" in shown  # the broken run's card, beside the good ones
    links = [c["props"]["href"] for c in find(nav, lambda c: c["type"] == "Link")]
    assert "/?run=scn" in links and "/?run=group%2Fnested" in links


def test_tick_reports_a_new_version_only_when_it_changed(app, client) -> None:
    state = {f"{ids.URL}.search": "?run=scn", f"{ids.LIVE_VERSION}.data": None}
    out = dash_call(app, client, [f"{ids.LIVE_VERSION}.data"], {f"{ids.TICK}.n_intervals": 1}, state)
    version = out[ids.LIVE_VERSION]["data"]
    assert version == {"run": "scn", "epochs": 4, "status": "finished"}
    again = dash_call(app, client, [f"{ids.LIVE_VERSION}.data"], {f"{ids.TICK}.n_intervals": 2},
                      {f"{ids.URL}.search": "?run=scn", f"{ids.LIVE_VERSION}.data": version})
    assert again == {}  # no_update: nothing redraws


# ---------------------------------------------------------------------- overview
@pytest.mark.parametrize("run_id", ["scn", "scn-c", "baseline"])
def test_overview_numbers_are_the_run_api(app, client, run_id) -> None:
    run = app.relabscope.registry.get(run_id)
    out = dash_call(app, client, SUMMARY, {f"{ids.OV_ARGS}.data": {"run": run_id}, f"{ids.LIVE_VERSION}.data": None})
    numbers = overview.headline(run, run.flipflops())
    metrics, flip = run.metrics(), run.flipflops()
    assert numbers["test_acc"] == pytest.approx(float(metrics["test_acc"].iloc[-1]))
    assert numbers["relabel_events"] == len(run.relabel_events()) == int(flip["changes"].sum())
    assert numbers["flipflops"] == int(flip["flipflops"].sum())
    shown = texts(out[ids.OV_NUMBERS]["children"])
    assert f"{numbers['test_acc']:.1%}" in shown and f"{numbers['relabel_events']:,}" in shown
    if run.relabels_at_all:
        cons = run.consistency()
        assert numbers["closer_to_new"] == pytest.approx(float(cons["closer_to_new"]))
        assert f"{float(cons['closer_to_new']):.1%}" in shown
        rec = run.noise_recovery()
        assert f"{float(rec['noisy_corrected'].iloc[-1]):.1%}" in shown
    else:
        assert "closer_to_new" not in numbers
    config = {r["setting"]: r["value"] for r in out[ids.OV_CONFIG]["children"]["props"]["data"]}
    assert config["method"] == run.method and config["noise"] == str(run.config["noise"])
    assert run_id in texts(out[ids.OV_HEAD]["children"])
    assert "final test accuracy" in shown  # the tiny runs are finished


def test_overview_of_a_run_in_training_does_not_call_its_accuracy_final(tmp_path) -> None:
    from relabscope import open_run
    from relabscope.examples import EXAMPLE, live_example_run

    with live_example_run(tmp_path / "live", epochs_done=2) as path:
        run = open_run(path)
        label, value, note = overview.headline_cards(overview.headline(run, run.flipflops()))[0]
        assert label == f"test accuracy after epoch 2 of {EXAMPLE['epochs']}"
        assert value == f"{float(run.metrics()['test_acc'].iloc[-1]):.1%}" and note.startswith("running")


def test_overview_figures_show_the_run_api(app, client) -> None:
    run = app.relabscope.registry.get("scn")
    figs = {}
    for which in overview.FIGURES:
        cell = ids.ov_figure(which)
        out = dash_call(app, client, [f"{cell}.children"], {f"{ids.OV_ARGS}.data": {"run": "scn"},
                                                            f"{ids.LIVE_VERSION}.data": None})
        figs[which] = out[cell]["children"]["props"]["figure"]
    test_trace = figs["accuracy"]["data"][0]
    np.testing.assert_allclose(_values(test_trace["y"]), run.metrics()["test_acc"].to_numpy(), rtol=1e-6)
    np.testing.assert_array_equal(_values(figs["relabels"]["data"][0]["y"]), run.metrics()["relabels"].to_numpy())
    rec = run.noise_recovery()
    lines = {t["name"]: t for t in figs["recovery"]["data"]}
    np.testing.assert_allclose(_values(lines["noisy samples now correct"]["y"]), rec["noisy_corrected"].to_numpy())
    cons = run.consistency()
    assert _values(figs["consistency"]["data"][0]["y"])[0] == pytest.approx(float(cons["closer_to_new"]))


def test_overview_of_a_baseline_says_it_never_relabels(app, client) -> None:
    cell = ids.ov_figure("consistency")
    out = dash_call(app, client, [f"{cell}.children"], {f"{ids.OV_ARGS}.data": {"run": "baseline"},
                                                        f"{ids.LIVE_VERSION}.data": None})
    assert out[cell]["children"]["props"]["figure"]["layout"]["meta"]["note"] == "baseline never relabels"


def test_overview_of_a_broken_run_is_an_error_card(app, client) -> None:
    out = dash_call(app, client, SUMMARY, {f"{ids.OV_ARGS}.data": {"run": "broken"}, f"{ids.LIVE_VERSION}.data": None})
    assert "not a readable HDF5 run log" in texts(out[ids.OV_HEAD]["children"])
    good = dash_call(app, client, SUMMARY, {f"{ids.OV_ARGS}.data": {"run": "scn-c"}, f"{ids.LIVE_VERSION}.data": None})
    assert "scn-c" in texts(good[ids.OV_HEAD]["children"])


# ---------------------------------------------------------------------- flip-flops
def test_flipflop_table_is_the_flipflop_table(app, client) -> None:
    run = app.relabscope.registry.get("scn")
    flip = run.flipflops()
    expect = flip[flip["flipflops"] > 0].sort_values(["flipflops", "changes", "sample_id"],
                                                     ascending=[False, False, True])
    out = _table(app, client)
    rows = out[ids.FF_TABLE]["data"]
    assert [r["sample_id"] for r in rows] == expect["sample_id"].tolist()[:ffpage.PAGE_SIZE]
    by_id = flip.set_index("sample_id")
    for r in rows:
        f = by_id.loc[r["sample_id"]]
        assert (r["changes"], r["flipflops"], r["labels_visited"]) == (f["changes"], f["flipflops"], f["labels_visited"])
        assert r["given"] == run.class_names[f["given_label"]] and r["final"] == run.class_names[f["final_label"]]
        assert f"sample={r['sample_id']}" in r["image"] and "run=scn" in r["image"]
    assert out[ids.FF_COUNT]["children"].startswith(f"{len(expect)} of {len(flip)} ")


def test_flipflop_table_sorts_pages_and_filters(app, client) -> None:
    run = app.relabscope.registry.get("scn")
    flip = run.flipflops()
    everyone = flip.sort_values(["changes", "sample_id"], ascending=[True, True])
    out = _table(app, client, **{f"{ids.FF_MODE}.value": "all",
                                 f"{ids.FF_TABLE}.sort_by": [{"column_id": "changes", "direction": "asc"}],
                                 f"{ids.FF_TABLE}.page_current": 2}, changed=[f"{ids.FF_TABLE}.page_current"])
    assert out[ids.FF_TABLE]["page_count"] == -(-len(flip) // ffpage.PAGE_SIZE)
    assert out[ids.FF_TABLE]["page_current"] == 2
    assert [r["sample_id"] for r in out[ids.FF_TABLE]["data"]] == everyone["sample_id"].tolist()[40:60]
    # a page past the end shows the last one; unknown sort columns are ignored
    last = _table(app, client, **{f"{ids.FF_MODE}.value": "all", f"{ids.FF_TABLE}.page_current": 999,
                                  f"{ids.FF_TABLE}.sort_by": [{"column_id": "__class__", "direction": "asc"}]},
                  changed=[f"{ids.FF_TABLE}.page_current"])
    assert last[ids.FF_TABLE]["page_current"] == last[ids.FF_TABLE]["page_count"] - 1
    # a filter change goes back to the first page
    given = int(flip["given_label"].mode()[0])
    filtered = _table(app, client, **{f"{ids.FF_MODE}.value": "relabelled", f"{ids.FF_GIVEN}.value": given,
                                      f"{ids.FF_TABLE}.page_current": 3})
    want = flip[(flip["changes"] > 0) & (flip["given_label"] == given)]
    assert filtered[ids.FF_TABLE]["page_current"] == 0
    assert sorted(r["sample_id"] for r in filtered[ids.FF_TABLE]["data"]) \
        == sorted(want["sample_id"])[:ffpage.PAGE_SIZE] or len(want) > ffpage.PAGE_SIZE


def test_matrix_cell_filters_to_that_cycle(app, client) -> None:
    run = app.relabscope.registry.get("scn")
    osc = run.oscillations()
    matrix = run.oscillation_matrix()
    a, b = np.unravel_index(int(np.argmax(matrix.to_numpy())), matrix.shape)
    assert matrix.iloc[a, b] > 0
    click = {"points": [{"x": run.class_names[b], "y": run.class_names[a], "z": int(matrix.iloc[a, b])}]}
    cell = dash_call(app, client, [f"{ids.FF_CELL}.data"],
                     {f"{ids.FF_HEATMAP}.clickData": click, f"{ids.FF_CLEAR}.n_clicks": 0},
                     {f"{ids.FF_ARGS}.data": {"run": "scn"}}, changed=[f"{ids.FF_HEATMAP}.clickData"])
    assert cell[ids.FF_CELL]["data"] == [a, b]
    out = _table(app, client, **{f"{ids.FF_MODE}.value": "all", f"{ids.FF_CELL}.data": [int(a), int(b)]})
    want = set(osc[(osc["a"] == a) & (osc["b"] == b)]["sample_id"])
    assert {r["sample_id"] for r in out[ids.FF_TABLE]["data"]} == want
    cleared = dash_call(app, client, [f"{ids.FF_CELL}.data"],
                        {f"{ids.FF_HEATMAP}.clickData": click, f"{ids.FF_CLEAR}.n_clicks": 1},
                        {f"{ids.FF_ARGS}.data": {"run": "scn"}}, changed=[f"{ids.FF_CLEAR}.n_clicks"])
    assert cleared[ids.FF_CELL]["data"] is None


def test_flipflop_figures_and_row_selection(app, client) -> None:
    run = app.relabscope.registry.get("scn")
    figs = dash_call(app, client, [f"{ids.FF_HEATMAP}.figure", f"{ids.FF_BARS}.figure"],
                     {f"{ids.FF_ARGS}.data": {"run": "scn"}, f"{ids.LIVE_VERSION}.data": None})
    z = _values(figs[ids.FF_HEATMAP]["figure"]["data"][0]["z"])
    assert z.sum() == run.oscillation_matrix().to_numpy().sum()
    rows = _table(app, client)[ids.FF_TABLE]["data"]
    picked = dash_call(app, client, [f"{ids.FF_SELECTED}.data"],
                       {f"{ids.FF_TABLE}.active_cell": {"row": 1, "column": 1, "column_id": "sample_id"},
                        f"{ids.FF_BARS}.clickData": None}, {f"{ids.FF_TABLE}.data": rows},
                       changed=[f"{ids.FF_TABLE}.active_cell"])
    sid = picked[ids.FF_SELECTED]["data"]
    assert sid == rows[1]["sample_id"]
    bar_label = figs[ids.FF_BARS]["figure"]["data"][0]["y"][0]
    bar = dash_call(app, client, [f"{ids.FF_SELECTED}.data"],
                    {f"{ids.FF_TABLE}.active_cell": None, f"{ids.FF_BARS}.clickData": {"points": [{"y": bar_label}]}},
                    {f"{ids.FF_TABLE}.data": rows}, changed=[f"{ids.FF_BARS}.clickData"])
    assert bar[ids.FF_SELECTED]["data"] == int(bar_label.split()[0][1:])
    detail = dash_call(app, client, [f"{ids.FF_DETAIL}.children"],
                       {f"{ids.FF_SELECTED}.data": sid, f"{ids.FF_ARGS}.data": {"run": "scn"},
                        f"{ids.LIVE_VERSION}.data": None})
    timeline = find(detail, lambda c: c["type"] == "Graph")[0]["props"]["figure"]
    shown = [y for y in timeline["data"][1]["y"]]
    assert shown == [run.class_names[v] for v in run.labels()[:, sid]]
    hrefs = [c["props"]["href"] for c in find(detail, lambda c: c["type"] == "Link")]
    assert hrefs == [f"/sample?run=scn&sample={sid}"]


def test_flipflop_page_of_a_baseline_says_so(app, client) -> None:
    out = _route(app, client, "/flipflops", "?run=baseline")
    assert "baseline never relabels" in texts(out[ids.PAGE]["children"])


def test_flipflop_table_thumbnails_are_served(app, client) -> None:
    rows = _table(app, client)[ids.FF_TABLE]["data"]
    url = rows[0]["image"].split("(", 1)[1].rstrip(")")
    resp = client.get(url)
    assert resp.status_code == 200 and resp.mimetype == "image/png"


# ---------------------------------------------------------------------- sample inspector
def test_sample_page_defaults_to_the_most_flipflopping_sample(app, client) -> None:
    run = app.relabscope.registry.get("scn")
    from relabscope.plot import select_flipflopping

    top = int(select_flipflopping(run.flipflops(), 1)["sample_id"].iloc[0])
    out = _route(app, client, "/sample", "?run=scn")
    store = by_id(out[ids.PAGE]["children"], ids.SM_ARGS)
    assert store["props"]["data"] == {"run": "scn", "sample": top}
    epochs = by_id(out[ids.PAGE]["children"], ids.SM_EPOCHS)["props"]["value"]
    assert epochs == [int(e) for e in run.distance_profile(top)["epoch"].unique()]
    deep = _route(app, client, "/sample", "?run=scn&sample=7&epochs=0,-1")
    assert by_id(deep[ids.PAGE]["children"], ids.SM_EPOCHS)["props"]["value"] == [0, 3]


def test_sample_views_are_the_run_api(app, client) -> None:
    run = app.relabscope.registry.get("scn")
    flip = run.flipflops().set_index("sample_id")
    sid = int(flip["changes"].idxmax())
    out = dash_call(app, client, [f"{ids.SM_FACTS}.children", f"{ids.SM_TIMELINE}.children",
                                  f"{ids.SM_PROBS}.children", f"{ids.SM_METHOD}.children"],
                    {f"{ids.SM_ARGS}.data": {"run": "scn", "sample": sid}, f"{ids.LIVE_VERSION}.data": None})
    facts = {r["field"]: r["value"] for r in out[ids.SM_FACTS]["children"]["props"]["data"]}
    assert facts["key"] == run.samples.loc[sid, "key"]
    assert facts["given label"] == run.class_names[run.given_labels[sid]]
    assert facts["label in effect after the last epoch"] == run.class_names[run.final_labels()[sid]]
    assert int(facts["relabel events"]) == flip.loc[sid, "changes"]
    assert int(facts["flip-flops"]) == flip.loc[sid, "flipflops"]
    probs = out[ids.SM_PROBS]["children"]["props"]["figure"]["data"]
    by_name = {t["name"].split(" (")[0]: t for t in probs if t.get("mode") == "lines"}
    for k, name in enumerate(run.class_names):
        np.testing.assert_allclose(_values(by_name[name]["y"]), run.probabilities()[:, sid, k].astype(float), rtol=1e-3)
    weight = out[ids.SM_METHOD]["children"]["props"]["figure"]["data"]
    assert [t["name"] for t in weight] == ["weight"]  # SCN's importance weight
    np.testing.assert_allclose(_values(weight[0]["y"]), run.field("weight")[:, sid].astype(float), rtol=1e-6)
    dist = dash_call(app, client, [f"{ids.SM_DISTANCES}.children"],
                     {f"{ids.SM_ARGS}.data": {"run": "scn", "sample": sid}, f"{ids.SM_EPOCHS}.value": [3, 0],
                      f"{ids.LIVE_VERSION}.data": None})
    bars = [t for t in dist[ids.SM_DISTANCES]["children"]["props"]["figure"]["data"] if t.get("x") and t["x"][0]]
    profile = run.distance_profile(sid, [0, 3])
    for trace, e in zip(bars, (0, 3)):
        want = profile[profile["epoch"] == e].set_index("class_name")["distance"]
        got = dict(zip(trace["x"], _values(trace["y"])))
        for name, d in want.items():
            assert got[name] == pytest.approx(d, rel=1e-5, nan_ok=True)  # NaN: a class relabelled empty
    bad = dash_call(app, client, [f"{ids.SM_DISTANCES}.children"],
                    {f"{ids.SM_ARGS}.data": {"run": "scn", "sample": sid}, f"{ids.SM_EPOCHS}.value": [99],
                     f"{ids.LIVE_VERSION}.data": None})
    assert "epoch 99 out of range" in texts(bad)
    relative = dash_call(app, client, [f"{ids.SM_DISTANCES}.children"],
                         {f"{ids.SM_ARGS}.data": {"run": "scn", "sample": sid}, f"{ids.SM_EPOCHS}.value": [3],
                          f"{ids.SM_SCALE}.value": "relative", f"{ids.LIVE_VERSION}.data": None})
    (trace,) = [t for t in relative[ids.SM_DISTANCES]["children"]["props"]["figure"]["data"] if t.get("x") and t["x"][0]]
    want = profile[profile["epoch"] == 3].set_index("class_name")["relative_distance"]
    for name, d in zip(trace["x"], _values(trace["y"])):
        assert d == pytest.approx(want[name], rel=1e-5, nan_ok=True)
    wrong = dash_call(app, client, [f"{ids.SM_DISTANCES}.children"],
                      {f"{ids.SM_ARGS}.data": {"run": "scn", "sample": sid}, f"{ids.SM_EPOCHS}.value": [3],
                       f"{ids.SM_SCALE}.value": "furlongs", f"{ids.LIVE_VERSION}.data": None})
    assert "scale must be one of raw, relative" in texts(wrong)


def test_sample_open_box_updates_the_url(app, client) -> None:
    out = dash_call(app, client, [f"{ids.URL}.search"],
                    {f"{ids.SM_OPEN}.n_clicks": 1, f"{ids.SM_INPUT}.n_submit": None},
                    {f"{ids.SM_INPUT}.value": 12, f"{ids.URL}.search": "?run=group/nested&sample=3"},
                    changed=[f"{ids.SM_OPEN}.n_clicks"])
    assert out[ids.URL]["search"] == "?run=group%2Fnested&sample=12"


def test_gradcam_is_computed_on_request_and_cached(app, client) -> None:
    run = app.relabscope.registry.get("scn-c")
    sid = 5
    args = {f"{ids.SM_ARGS}.data": {"run": "scn-c", "sample": sid}}
    idle = dash_call(app, client, [f"{ids.SM_GRADCAM}.children"], {f"{ids.SM_GRADCAM_GO}.n_clicks": 0, **args})
    assert "press the button" in texts(idle)
    out = dash_call(app, client, [f"{ids.SM_GRADCAM}.children"], {f"{ids.SM_GRADCAM_GO}.n_clicks": 1, **args},
                    changed=[f"{ids.SM_GRADCAM_GO}.n_clicks"])
    fig = out[ids.SM_GRADCAM]["children"]["props"]["figure"]
    titles = [a["text"] for a in fig["layout"]["annotations"]]
    given, effect = run.gradcam([sid], label="given"), run.gradcam([sid], label="effect")
    assert titles[1].startswith(f"given: {run.class_names[given.labels[0]]}")
    assert titles[2].startswith(f"in effect: {run.class_names[effect.labels[0]]}")
    assert app.relabscope.has_gradcam("scn-c", sid, "given")
    again = dash_call(app, client, [f"{ids.SM_GRADCAM}.children"], {f"{ids.SM_GRADCAM_GO}.n_clicks": 0, **args})
    assert again[ids.SM_GRADCAM]["children"]["props"]["figure"]["layout"]["annotations"][1]["text"] == titles[1]


# ---------------------------------------------------------------------- plain functions
def test_plain_helpers() -> None:
    flip = pd.DataFrame({"sample_id": [3, 1, 2], "given_label": [0, 1, 0], "final_label": [1, 1, 0],
                         "changes": [2, 0, 3], "flipflops": [1, 0, 1]})
    assert ffpage.select_rows(flip, mode="all", given=0)["sample_id"].tolist() == [3, 2]
    assert ffpage.sort_rows(flip, None)["sample_id"].tolist() == [2, 3, 1]
    with pytest.raises(ValueError):
        ffpage.select_rows(flip, mode="bogus")
    assert ffpage.page_rows(flip, "2", page_size=2)[2] == 0  # not an int: first page
    assert cycle_from_click({"points": [{"x": "b", "y": "a"}]}, ["a", "b"]) == (0, 1)
    assert cycle_from_click({"points": [{"x": "zz", "y": "a"}]}, ["a", "b"]) is None
    assert sample_from_bar_click({"points": [{"y": "#12 a→b"}]}) == 12
    assert parse_epochs("0, -1", 4) == [0, 3] and parse_epochs(None, 4) is None
    for bad in ("4", "x"):
        with pytest.raises(ValueError):
            parse_epochs(bad, 4)


def test_cli_serve_reports_errors_on_one_line(tmp_path) -> None:
    from relabscope.cli import main

    result = CliRunner().invoke(main, ["serve", str(tmp_path / "missing")])
    assert result.exit_code == 1 and result.output.strip().count("\n") == 0
    assert "run folder not found" in result.output
    result = CliRunner().invoke(main, ["serve", str(tmp_path), "--auth", "nopass"])
    assert result.exit_code == 1 and "USER:PASS" in result.output


def test_wsgi_entry_point(served, monkeypatch) -> None:
    import importlib.util
    from pathlib import Path

    monkeypatch.setenv("RELABSCOPE_RUNS", str(served))
    monkeypatch.setenv("RELABSCOPE_AUTH", "u:p")
    spec = importlib.util.spec_from_file_location("relabscope_wsgi", Path(__file__).parents[2] / "apps" / "wsgi.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    client = module.server.test_client()
    assert client.get("/").status_code == 401
    import base64

    ok = client.get("/", headers={"Authorization": "Basic " + base64.b64encode(b"u:p").decode()})
    assert ok.status_code == 200


def _values(v):
    """A plotly array from figure JSON (a list, or Dash's typed-array dict)."""
    if isinstance(v, dict) and "bdata" in v:
        import base64

        arr = np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"]))
        shape = v.get("shape")
        if isinstance(shape, str):
            shape = [int(x) for x in shape.split(",")]
        return arr.reshape(shape) if shape else arr
    return np.asarray(v, dtype=float)


def test_serve_runs_a_production_server(served, tmp_path) -> None:
    """`relabscope serve` answers over HTTP with basic auth, and says nothing of a
    development server (it runs on waitress, not Flask's)."""
    import base64
    import socket
    import subprocess
    import sys
    import time
    import urllib.error
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    err = tmp_path / "stderr.txt"
    with open(err, "w") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "relabscope", "serve", str(served), "--port", str(port),
                                 "--auth", "u:p"], stdout=fh, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(url, timeout=2)
                raise AssertionError("served without credentials")
            except urllib.error.HTTPError as refused:
                assert refused.code == 401
                break
            except (urllib.error.URLError, ConnectionError):
                assert proc.poll() is None, err.read_text()
                assert time.monotonic() < deadline, "the server did not listen within 60 s"
                time.sleep(0.2)
        auth = {"Authorization": "Basic " + base64.b64encode(b"u:p").decode()}
        with urllib.request.urlopen(urllib.request.Request(url, headers=auth), timeout=10) as ok:
            assert ok.status == 200 and b"relabscope" in ok.read()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    printed = err.read_text()
    assert f"open http://127.0.0.1:{port}/" in printed
    assert "development server" not in printed.lower() and "production" not in printed.lower()
