"""Reviewing suspects: ``Run.review`` / ``Run.corrections`` from Python, and the review page
called as the browser calls it: tiles in the suspects' rank order with their pictures (or
none), the filters, a decision written through the journal with the seq the tile showed as
its base, a stale one refused with who decided, and writes only where the rule allows."""

from __future__ import annotations

import base64
import csv
import json

import numpy as np
import pytest

import relabscope as rs
from relabscope.dashboard import create_app, ids
from relabscope.dashboard import review as rvpage
from relabscope.dashboard.harness import ROUTER, answer, by_id, callback_key, dash_call, find, payload, texts
from relabscope.data.journal import CSV_NAME, DecisionConflict

GRID = [f"{ids.RV_GRID}.children", f"{ids.RV_COUNT}.children", f"{ids.RV_PAGE}.data"]


def _write_bare(folder) -> None:
    """A two-epoch log with no data set in its config and no image source: no pixels."""
    from relabscope.runlog import RunLogWriter, SampleTable

    rng = np.random.default_rng(0)
    n_train, n_test, k = 30, 6, 3
    given = rng.integers(0, k, n_train + n_test)
    samples = SampleTable(key=[f"f/{i}.png" for i in range(len(given))],
                          split=np.r_[np.zeros(n_train), np.ones(n_test)], given_label=given)
    with RunLogWriter.create(folder, samples, ["neutral", "happiness", "anger"], embed_dim=4) as log:
        for _ in range(2):
            emb = (np.eye(k, 4)[given] * 3 + rng.normal(0, 1, (len(given), 4))).astype(np.float32)
            logits = rng.normal(0, 1, (len(given), k)).astype(np.float32)
            train, test = np.arange(n_train), np.arange(n_train, len(given))
            log.log_batch(train, given[train], logits[train], emb[train], loss=rng.random(n_train))
            log.log_batch(test, given[test], logits[test], emb[test], phase="test")
            log.end_epoch(lr=0.001, seconds=1.0, save_embeddings=True)


@pytest.fixture
def root(tmp_path):
    """``ex`` (the example run: 64 training samples that relabel; its pixels an array given
    to the server) and ``bare`` (no pixels anywhere)."""
    rs.example_run(tmp_path / "runs" / "ex")
    _write_bare(tmp_path / "runs" / "bare")
    faces = np.random.default_rng(1).integers(0, 256, (80, 16, 16, 3), dtype=np.uint8)
    np.save(tmp_path / "faces.npy", faces)
    return tmp_path


def _app(root, **kwargs):
    """The app as ``relabscope serve`` builds it, on 127.0.0.1 unless ``host`` says otherwise."""
    kwargs.setdefault("host", "127.0.0.1")
    app = create_app([root / "runs"], refresh_seconds=0, images={"ex": str(root / "faces.npy")}, **kwargs)
    return app, app.server.test_client()


def _post(app, client, outputs, values, auth=None):
    """A callback through the update route as the browser sends it, with basic auth."""
    key = callback_key(app.callback_map, outputs)
    headers = {"Authorization": "Basic " + base64.b64encode(auth.encode()).decode()} if auth else {}
    resp = client.post("/_dash-update-component", data=json.dumps(payload(app.callback_map, key, values)),
                       content_type="application/json", headers=headers)
    return answer(resp.status_code, resp.get_data(as_text=True))


def _layout(app, client, auth=None):
    out = _post(app, client, ROUTER, {f"{ids.URL}.pathname": "/review", f"{ids.URL}.search": "?run=ex"}, auth)
    return out[ids.PAGE]["children"]


def _grid(app, client, run_id="ex", page=0, changed=None, **filters):
    values = {f"{ids.RV_ARGS}.data": {"run": run_id}, f"{ids.RV_GIVEN}.value": None,
              f"{ids.RV_SUGGESTED}.value": None, f"{ids.RV_SIGNAL}.value": "all", f"{ids.RV_STATE}.value": "all",
              f"{ids.RV_PREV}.n_clicks": 0, f"{ids.RV_NEXT}.n_clicks": 0, f"{ids.LIVE_VERSION}.data": None}
    values.update({f"{getattr(ids, 'RV_' + k.upper())}.value": v for k, v in filters.items()})
    out = dash_call(app, client, GRID, values, {f"{ids.RV_PAGE}.data": page},
                    changed=changed or [f"{ids.RV_ARGS}.data"])
    return out[ids.RV_GRID]["children"], out[ids.RV_COUNT]["children"], out[ids.RV_PAGE]["data"]


def _tiles(children) -> list[dict]:
    return find(children, lambda c: "rv-tile" in str(c["props"].get("className", "")))


def _shown(children) -> list[int]:
    return [t["props"]["data-sample"] for t in _tiles(children)]


def _pattern(kind: str, sid: int) -> str:
    return json.dumps(ids.rv_tile(kind, sid), sort_keys=True, separators=(",", ":"))


def _decide(app, client, sid, request, shown, *, run_id="ex", name="ann", auth=None, suggested=None):
    """Run the tile callback of sample ``sid`` as a key press does on a tile that shows the
    decision ``shown`` (its seq) and the suggestion ``suggested``: (tile text, seq shown)."""
    key = next(k for k in app.callback_map if ids.RV_BODY in k)
    body = {"output": key,
            "outputs": [{"id": ids.rv_tile(ids.RV_BODY, sid), "property": "children"},
                        {"id": ids.rv_tile(ids.RV_SHOWN, sid), "property": "data"}],
            "inputs": [{"id": ids.rv_tile(ids.RV_REQUEST, sid), "property": "data", "value": request}],
            "state": [{"id": ids.rv_tile(ids.RV_SHOWN, sid), "property": "data",
                       "value": {"seq": shown, "suggested": suggested}},
                      {"id": ids.RV_ARGS, "property": "data", "value": {"run": run_id}},
                      {"id": ids.RV_NAME, "property": "value", "value": name}],
            "changedPropIds": [_pattern(ids.RV_REQUEST, sid) + ".data"]}
    headers = {"Authorization": "Basic " + base64.b64encode(auth.encode()).decode()} if auth else {}
    resp = client.post("/_dash-update-component", data=json.dumps(body), content_type="application/json",
                       headers=headers)
    out = answer(resp.status_code, resp.get_data(as_text=True))
    return texts(out[_pattern(ids.RV_BODY, sid)]["children"]), out[_pattern(ids.RV_SHOWN, sid)]["data"]["seq"]


def _csv(folder) -> dict[str, dict]:
    with open(folder / CSV_NAME, newline="") as fh:
        return {row["sample_id"]: row for row in csv.DictReader(fh)}


# ---------------------------------------------------------------------- Python
def test_review_from_python_stores_what_each_decision_means(root) -> None:
    with rs.open_run(root / "runs" / "ex") as run:
        names, given = run.class_names, run.given_labels
        table = run.suspects().set_index("sample_id")
        assert run.corrections().empty and list(run.corrections().columns) == [
            "sample_id", "key", "decision", "label", "reviewer", "source", "time", "seq"]
        run.review([0, 1], "keep", reviewer="ann")
        run.review(2, "suggested", reviewer="ann")
        run.review(3, "relabel", "anger", reviewer="ann")
        run.review(4, "relabel", 2, reviewer="ann")
        run.review(17, "relabel", names[given[17]], reviewer="ann")  # to its own label: a keep
        run.review([6, 7], "ambiguous", reviewer="bob")
        run.review(8, "drop", reviewer="bob")
        got = run.corrections().set_index("sample_id")
        want = {0: ("keep", names[given[0]]), 1: ("keep", names[given[1]]),
                2: ("relabel", names[table.loc[2, "suggested_label"]]), 3: ("relabel", "anger"),
                4: ("relabel", names[2]), 17: ("keep", names[given[17]]), 6: ("ambiguous", None),
                7: ("ambiguous", None), 8: ("drop", None)}
        assert dict(zip(got.index, zip(got["decision"], got["label"]))) == want
        assert got.loc[8, "reviewer"] == "bob" and got.loc[8, "source"] == "python"
        assert sorted(got["seq"]) == list(range(1, 10)) and got.loc[8, "seq"] == 9
        assert str(got["time"].dtype) == "datetime64[ns, UTC]"
        assert {k: (r["decision"], r["label"] or None) for k, r in _csv(root / "runs" / "ex").items()} == {
            str(sid): v for sid, v in want.items()}
        # base: 0 means "I saw it undecided"; the seq of the decision seen; a stale one is refused
        with pytest.raises(DecisionConflict, match="decided meanwhile by bob"):
            run.review(8, "keep", reviewer="cy", base=0)
        run.review(8, "keep", reviewer="cy", base=9)
        with pytest.raises(DecisionConflict):
            run.review([9, 8], "drop", base=0)  # 9 is saved, 8 is not
        assert run.corrections().set_index("sample_id").loc[[8, 9], "decision"].tolist() == ["keep", "drop"]
        for args, message in [(([0], "maybe"), "decision must be one of"), (([0], "relabel"), "needs the new label"),
                              (([0], "relabel", "joy"), "class name or id"), (([0], "relabel", 9), "class name or id"),
                              (([0], "drop", "anger"), "takes no label"), (([999], "keep"), "sample ids must be"),
                              (([70], "suggested"), "not training samples"), (([0, 1], "keep"), "bases for 2 samples")]:
            kwargs = {"base": [0]} if "bases" in message else {}
            with pytest.raises(ValueError, match=message):
                run.review(*args, **kwargs)
        assert run.review([], "keep") == []


# ---------------------------------------------------------------------- the page
def test_the_page_shows_the_suspects_in_rank_order_a_page_at_a_time(root) -> None:
    app, client = _app(root)
    page = dash_call(app, client, ROUTER, {f"{ids.URL}.pathname": "/review", f"{ids.URL}.search": "?run=ex"})
    layout = page[ids.PAGE]["children"]
    assert "Review — ex" in texts(layout) and "take the suggestion" in texts(layout)
    assert by_id(layout, ids.RV_GRID)["props"]["data-writable"] == "1"
    nav = find(page[ids.TOPNAV]["children"], lambda c: c["type"] == "Link")
    assert nav[-1]["props"]["children"] == "Review" and nav[-1]["props"]["className"] == "active"
    run = app.relabscope.run("ex")
    order = run.suspects()["sample_id"].tolist()
    children, count, p = _grid(app, client)
    assert _shown(children) == order[:rvpage.PAGE_SIZE] and p == 0
    assert count.startswith(f"1–24 of {len(order)} samples shown · page 1 of 3")
    imgs = [c["props"]["src"] for c in find(children, lambda c: c["type"] == "Img")]
    assert imgs == [f"/_relabscope/image?run=ex&sample={s}&size={rvpage.THUMB_PX}" for s in order[:24]]
    assert client.get(imgs[0]).mimetype == "image/png"
    # the top tile says what the suspects table says
    top = run.suspects().iloc[0]
    names = run.class_names
    shown = texts(_tiles(children)[0])
    for line in (f"#1 · sample {top['sample_id']}", f"given: {names[top['given_label']]}",
                 f"in effect: {names[top['final_label']]}", f"suggested: {names[top['suggested_label']]}",
                 "undecided", f"epoch {run.num_epochs - 1}: "):
        assert line in shown, line
    cells = find(_tiles(children)[0], lambda c: c["props"].get("className") == "rv-timeline")[0]["props"]["children"]
    assert len(cells) == run.num_epochs + 1  # one per epoch, then the label after the last epoch's relabels
    # next page; past the last page stays on it
    children, count, p = _grid(app, client, page=0, changed=[f"{ids.RV_NEXT}.n_clicks"])
    assert _shown(children) == order[24:48] and p == 1
    children, count, p = _grid(app, client, page=2, changed=[f"{ids.RV_NEXT}.n_clicks"])
    assert _shown(children) == order[48:] and p == 2 and "page 3 of 3" in count


def test_filters_keep_the_rank_order(root) -> None:
    app, client = _app(root)
    table = app.relabscope.run("ex").suspects()

    def shown(**filters):
        """Every page of the filtered grid, in order."""
        out = []
        for p in range(3):
            children, _, got = _grid(app, client, page=p, **filters)
            if got != p:  # past the last page: the grid stays on the last one
                break
            out += _shown(children)
        return out

    def ranked(mask):
        return table[mask]["sample_id"].tolist()

    assert shown(given=2) == ranked(table["given_label"] == 2)
    assert shown(suggested=1) == ranked(table["suggested_label"] == 1)
    assert shown(signal="flag") == ranked(table["flag"]) and 0 < table["flag"].sum() < len(table)
    aum = table["aum"]
    assert shown(signal="aum") == ranked(aum < aum.median())  # low AUM is the suspect side
    away = table["away"]
    assert shown(signal="away") == ranked(away > away.median())
    assert shown(given=0, signal="aum") == ranked((table["given_label"] == 0) & (aum < aum.median()))
    options = [o["value"] for o in rvpage.signal_options(table)]
    assert options[:2] == ["all", "flag"] and {"aum", "distance_ratio", "away"} <= set(options)
    app.relabscope.run("ex").review(table["sample_id"].iloc[:3].tolist(), "keep")
    assert shown(state="decided") == ranked(table.index < 3)
    assert shown(state="undecided") == ranked(table.index >= 3)
    children, count, _ = _grid(app, client, given=3, suggested=3)
    assert "No training sample passes these filters" in texts(children) and count.startswith("0 of 64")


def test_a_decision_is_written_with_the_seq_the_tile_showed(root) -> None:
    app, client = _app(root)
    run = app.relabscope.run("ex")
    names = run.class_names
    sid = int(run.suspects()["sample_id"].iloc[0])
    suggested = names[int(run.suspects()["suggested_label"].iloc[0])]
    text, seq = _decide(app, client, sid, {"decision": "suggested", "n": 1}, 0)
    assert seq == 1 and f"relabel → {suggested} · ann" in text
    latest = run.journal.latest()[f"img/{sid:04d}.png"]
    assert (latest.decision, latest.label, latest.reviewer, latest.source) == ("relabel", suggested, "ann", "dashboard")
    # the tile now shows seq 1: the next key decides on top of it
    text, seq = _decide(app, client, sid, {"decision": "relabel", "label": 3, "n": 2}, 1, name="bob")
    assert seq == 2 and f"relabel → {names[3]} · bob" in text
    # a tile still showing seq 1 (another tab) is refused, says who decided, and reloads
    text, seq = _decide(app, client, sid, {"decision": "drop", "n": 1}, 1, name="cy")
    assert f"decided meanwhile by bob (relabel → {names[3]})" in text and seq == 2
    assert f"relabel → {names[3]} · bob" in text  # the tile reloaded: it shows bob's decision
    assert [d.reviewer for d in run.journal.history()] == ["ann", "bob"]  # cy's is not written
    assert _csv(root / "runs" / "ex")[str(sid)]["reviewer"] == "bob"
    # a decision on a tile that showed it undecided is refused the same way
    text, seq = _decide(app, client, sid, {"decision": "keep", "n": 1}, 0)
    assert "decided meanwhile by bob" in text and len(run.journal.history()) == 2
    # a bad request changes nothing and says why
    text, _ = _decide(app, client, sid, {"decision": "relabel", "label": 7, "n": 3}, 2)
    assert "class must be 0..3" in text and len(run.journal.history()) == 2
    # the grid shows the decisions (and the seq each tile sends as its base)
    children, _, _ = _grid(app, client)
    first = _tiles(children)[0]
    assert f"relabel → {names[3]} · bob" in texts(first)
    assert by_id(first, ids.rv_tile(ids.RV_SHOWN, sid))["props"]["data"]["seq"] == 2


def test_writes_only_on_a_loopback_server_or_behind_auth(root) -> None:
    shared, client = _app(root, host="0.0.0.0")  # reachable from other machines, no password
    layout = _layout(shared, client)
    assert "Read-only: this server is reachable from other machines (0.0.0.0) without a password" in texts(layout)
    assert by_id(layout, ids.RV_GRID)["props"]["data-writable"] == "0" and "keep the given label" not in texts(layout)
    sid = int(shared.relabscope.run("ex").suspects()["sample_id"].iloc[0])
    text, seq = _decide(shared, client, sid, {"decision": "keep", "n": 1}, 0)  # a request sent anyway
    assert "Read-only" in text and seq == 0
    assert not (root / "runs" / "ex" / "corrections.journal").exists()

    guarded, client = _app(root, host="0.0.0.0", auth="ann:secret")
    assert client.post("/_dash-update-component", data="{}", content_type="application/json").status_code == 401
    text, seq = _decide(guarded, client, sid, {"decision": "keep", "n": 1}, 0, name="mallory", auth="ann:secret")
    assert seq == 1 and "· ann" in text  # the signed-in user, whatever the page sent
    assert guarded.relabscope.run("ex").corrections()["reviewer"].tolist() == ["ann"]
    layout = _layout(guarded, client, auth="ann:secret")
    assert by_id(layout, ids.RV_GRID)["props"]["data-writable"] == "1" and "ann  (signed in)" in texts(layout)
    assert by_id(layout, ids.RV_NAME)["props"]["type"] == "hidden"
    # loopback without a password: writes, the reviewer types a name
    layout = _layout(*_app(root))
    assert by_id(layout, ids.RV_GRID)["props"]["data-writable"] == "1" and by_id(layout, ids.RV_NAME)["props"]["type"] == "text"


def test_a_read_only_run_folder_shows_the_page_read_only(root, monkeypatch) -> None:
    """A run copied to a shared read-only place: the page opens (nothing is rewritten on
    open), says why it takes no decisions, and a decision sent anyway writes nothing."""
    from tests.data.test_corrections import _as_unprivileged

    folder = root / "runs" / "ex"
    rs.open_run(folder).review(5, "drop", reviewer="ann", base=0)
    _as_unprivileged(monkeypatch)
    for path, mode in ((folder / "corrections.journal", 0o444), (folder, 0o555)):
        path.chmod(mode)
    try:
        app, client = _app(root)
        layout = _layout(app, client)
        assert f"Read-only: {folder / 'corrections.journal'}: the journal is read-only" in texts(layout)
        assert by_id(layout, ids.RV_GRID)["props"]["data-writable"] == "0"
        sid = int(app.relabscope.run("ex").suspects()["sample_id"].iloc[0])
        text, seq = _decide(app, client, sid, {"decision": "keep", "n": 1}, 0)
        assert "Read-only" in text and seq == 0
        assert [d.sample_id for d in app.relabscope.run("ex").journal.history()] == [5]
    finally:
        folder.chmod(0o755)
        (folder / "corrections.journal").chmod(0o644)


def test_a_run_without_images_shows_tiles_without_pictures(root) -> None:
    app, client = _app(root)
    assert not app.relabscope.run("bare").has_images
    children, count, _ = _grid(app, client, run_id="bare")
    assert len(_tiles(children)) == 24 and not find(children, lambda c: c["type"] == "Img")
    assert "of 30 samples shown" in count and "given: " in texts(children)


def test_taking_the_suggestion_takes_the_one_the_tile_showed(root) -> None:
    """On main "take the suggestion" stored the suggestion recomputed when the key was
    pressed: on a run still training, another one than the tile showed (17 of them changed
    between two epochs in the issue's run)."""
    app, client = _app(root)
    run = app.relabscope.run("ex")
    names = run.class_names
    row = run.suspects().iloc[0]
    sid, now = int(row["sample_id"]), int(row["suggested_label"])
    shown = (now + 1) % len(names)  # what a tile drawn before the last epoch showed
    text, seq = _decide(app, client, sid, {"decision": "suggested", "n": 1}, 0, suggested=shown)
    assert f"the suggestion is {names[now]} now, not {names[shown]}: reloaded" in text and seq == 0
    assert run.journal.history() == []
    text, seq = _decide(app, client, sid, {"decision": "suggested", "n": 2}, 0, suggested=now)
    stored = run.journal.history()[0]
    assert seq == 1 and stored.label == names[now] and stored.given == names[int(row["given_label"])]
    assert stored.run == run.fingerprint


def test_samples_that_share_a_key_have_decisions_of_their_own(tmp_path) -> None:
    """On main two samples listing the same image shared one decision: deciding the second
    was refused as "decided meanwhile" by the first's."""
    from relabscope.runlog import RunLogWriter, SampleTable

    rng = np.random.default_rng(0)
    given = np.array([0, 1, 0, 1, 0, 1])
    samples = SampleTable(key=["same.png", "same.png", "b.png", "c.png", "t.png", "t.png"],
                          split=[0, 0, 0, 0, 1, 1], given_label=given)
    with RunLogWriter.create(tmp_path / "run", samples, ["a", "b"], embed_dim=2) as log:
        log.log_batch(np.arange(4), given[:4], rng.normal(size=(4, 2)), rng.normal(size=(4, 2)))
        log.log_batch(np.arange(4, 6), given[4:], rng.normal(size=(2, 2)), rng.normal(size=(2, 2)), phase="test")
        log.end_epoch()
    with rs.open_run(tmp_path / "run") as run:
        assert run.decision_keys[:2] == ["same.png", "same.png#2"]
        run.review(0, "drop", base=0)
        run.review(1, "keep", base=0)  # not a conflict with sample 0's decision
        assert run.corrections()[["sample_id", "key", "decision"]].values.tolist() == [
            [0, "same.png", "drop"], [1, "same.png#2", "keep"]]
