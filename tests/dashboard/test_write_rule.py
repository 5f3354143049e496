"""One write rule however the dashboard is served (relabscope.dashboard.security): decisions
need a signed-in reviewer unless the server is bound to loopback and the request came
straight to it; a loopback server answers only loopback host names; writes only from its
own pages; no framing; several reviewers from an htpasswd-style file, each decision under
the signed-in name.

Each test says what main at 0696aaf did instead."""

from __future__ import annotations

import base64
import importlib
import shutil
import sys

import numpy as np

import pytest
from click.testing import CliRunner

import relabscope as rs
from relabscope.cli import main
from relabscope.dashboard import create_app, ids
from relabscope.dashboard.harness import ROUTER, answer, callback_key, payload, texts
from relabscope.dashboard.users import Users, check, pbkdf2_hash
from relabscope.errors import RelabscopeError
from tests.dashboard.test_review import _decide, _layout

CROSS_SITE = {"Origin": "http://evil.example"}


@pytest.fixture
def root(tmp_path):
    rs.example_run(tmp_path / "runs" / "ex")
    return tmp_path


def _sid(app) -> int:
    return int(app.relabscope.run("ex").suspects()["sample_id"].iloc[0])


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def _wsgi(monkeypatch, root, **env):
    """apps/wsgi.py imported as gunicorn imports it, with ``env``."""
    monkeypatch.setenv("RELABSCOPE_RUNS", str(root / "runs"))
    for name in ("RELABSCOPE_AUTH", "RELABSCOPE_AUTH_FILE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.syspath_prepend(str(__import__("pathlib").Path(__file__).resolve().parents[2]))
    sys.modules.pop("apps.wsgi", None)
    return importlib.import_module("apps.wsgi").app


def test_the_wsgi_app_takes_no_decision_without_a_password(root, monkeypatch) -> None:
    """On main apps/wsgi.py built the app without the shared flag: under gunicorn on 0.0.0.0
    a remote client's decision was written with no password, under the name it chose."""
    app = _wsgi(monkeypatch, root)
    client = app.server.test_client()
    text, seq = _decide(app, client, _sid(app), {"decision": "drop", "n": 1}, 0, name="mallory")
    assert "Read-only: this server is served by a WSGI server" in text and seq == 0
    assert not (root / "runs" / "ex" / "corrections.journal").exists()
    app = _wsgi(monkeypatch, root, RELABSCOPE_AUTH="ann:secret")
    client = app.server.test_client()
    text, seq = _decide(app, client, _sid(app), {"decision": "drop", "n": 1}, 0, name="mallory", auth="ann:secret")
    assert seq == 1 and "· ann" in text


def test_a_request_through_a_proxy_needs_a_password(root) -> None:
    """On main a loopback server behind a reverse proxy saw every client as itself."""
    app = create_app([root / "runs"], refresh_seconds=0, host="127.0.0.1")
    client = app.server.test_client()
    for header in ("X-Forwarded-For", "Forwarded", "X-Real-IP", "Via"):
        client.environ_base = {f"HTTP_{header.upper().replace('-', '_')}": "203.0.113.9"}
        text, seq = _decide(app, client, _sid(app), {"decision": "drop", "n": 1}, 0)
        assert f"came through a proxy ({header})" in text and seq == 0, header
    client.environ_base = {}
    text, seq = _decide(app, client, _sid(app), {"decision": "drop", "n": 1}, 0)
    assert seq == 1  # straight to the loopback server: it writes


def test_a_loopback_server_answers_only_its_own_names(root) -> None:
    """On main a POST with Host: evil.example was written: DNS rebinding reached it."""
    app = create_app([root / "runs"], refresh_seconds=0, host="127.0.0.1", allow_hosts=["lab-box:8050"])
    client = app.server.test_client()
    for host in ("localhost", "localhost:8050", "127.0.0.1:8050", "[::1]:8050", "lab-box", "LAB-BOX:9"):
        assert client.get("/", headers={"Host": host}).status_code == 200, host
    for host in ("evil.example", "evil.example:8050", "127.0.0.1.evil.example", "localhost.evil.example"):
        resp = client.get("/", headers={"Host": host})
        assert resp.status_code == 403 and b"--allow-host" in resp.data, host
    shared = create_app([root / "runs"], refresh_seconds=0, host="0.0.0.0", auth="ann:secret")
    assert shared.server.test_client().get("/", headers={"Host": "lab.example", **_basic("ann", "secret")}).status_code == 200


def test_writes_come_only_from_the_server_s_own_pages(root) -> None:
    """On main a POST with Origin: http://evil.example was written (CSRF)."""
    app = create_app([root / "runs"], refresh_seconds=0, host="127.0.0.1")
    client = app.server.test_client()
    body = payload(app.callback_map, callback_key(app.callback_map, list(ROUTER)),
                   {f"{ids.URL}.pathname": "/review", f"{ids.URL}.search": "?run=ex"})
    for headers in (CROSS_SITE, {"Origin": "null"}, {"Sec-Fetch-Site": "cross-site"}):
        resp = client.post("/_dash-update-component", json=body, headers=headers)
        assert resp.status_code == 403, headers
    same = client.post("/_dash-update-component", json=body, headers={"Origin": "http://localhost"})
    assert same.status_code == 200 and ids.PAGE in answer(same.status_code, same.get_data(as_text=True))
    assert client.post("/_dash-update-component", json=body).status_code == 200  # no Origin: not a browser's


@pytest.mark.parametrize("path", ["/", "/review?run=ex", "/_dash-layout", "/_relabscope/image?run=ex&sample=0"])
def test_no_page_can_be_framed(root, path) -> None:
    """On main no response forbade framing: any page could overlay the review page, where
    one key drops a sample."""
    client = create_app([root / "runs"], refresh_seconds=0, host="127.0.0.1").server.test_client()
    resp = client.get(path)
    assert resp.headers["X-Frame-Options"] == "DENY"
    assert resp.headers["Content-Security-Policy"] == "frame-ancestors 'none'"


def test_each_reviewer_of_an_auth_file_decides_under_their_own_name(root, tmp_path) -> None:
    """On main --auth took one user: every reviewer was recorded under the same name."""
    import bcrypt

    users = tmp_path / "reviewers"
    users.write_text("# the lab's reviewers\n"
                     f"ann:{bcrypt.hashpw(b'ann-pw', bcrypt.gensalt(rounds=4)).decode().replace('$2b$', '$2y$')}\n"
                     f"bob:{pbkdf2_hash('bob-pw', rounds=1000)}\n")
    app = create_app([root / "runs"], refresh_seconds=0, host="0.0.0.0", auth_file=users)
    client = app.server.test_client()
    sid = _sid(app)
    assert client.get("/", headers=_basic("ann", "bob-pw")).status_code == 401
    text, seq = _decide(app, client, sid, {"decision": "drop", "n": 1}, 0, name="mallory", auth="ann:ann-pw")
    assert seq == 1 and "· ann" in text
    text, seq = _decide(app, client, sid, {"decision": "keep", "n": 2}, 1, auth="bob:bob-pw")
    assert seq == 2 and "· bob" in text
    assert [d.reviewer for d in app.relabscope.run("ex").journal.history()] == ["ann", "bob"]
    assert "bob  (signed in)" in texts(_layout(app, client, auth="bob:bob-pw"))


@pytest.mark.parametrize("line, problem", [
    ("ann:plain-password", "not a bcrypt or PBKDF2 hash"),
    ("ann:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=", "not a bcrypt or PBKDF2 hash"),
    ("ann:$apr1$Ph.Wh2zq$H4Zs4n3cR9GzR9U7fZzZ7/", "not a bcrypt or PBKDF2 hash"),
    ("no-colon-here", "expected USER:HASH"),
])
def test_a_users_file_with_anything_but_slow_hashes_is_one_line(tmp_path, line, problem) -> None:
    path = tmp_path / "reviewers"
    path.write_text(line + "\n")
    with pytest.raises(RelabscopeError, match=f"^{path}:1: .*{problem}"):
        Users.from_file(path)


def test_passwd_writes_a_salted_hash_that_signs_in(tmp_path) -> None:
    path = tmp_path / "reviewers"
    runner = CliRunner()
    result = runner.invoke(main, ["passwd", str(path), "ann"], input="pw-1\npw-1\n")
    assert result.exit_code == 0, result.output
    runner.invoke(main, ["passwd", str(path), "bob", "--password", "pw-2"])
    runner.invoke(main, ["passwd", str(path), "ann", "--password", "pw-3"])  # a new password replaces the old
    text = path.read_text()
    assert "pw-" not in text and text.count("$pbkdf2-sha256$600000$") == 2 and oct(path.stat().st_mode)[-3:] == "600"
    users = Users.from_file(path)
    assert users.verify("ann", "pw-3") and not users.verify("ann", "pw-1") and users.verify("bob", "pw-2")
    assert check("pw-2", users.hashes["bob"]) and not check("pw-2", users.hashes["ann"])


def test_a_log_gets_images_only_from_inside_the_served_folders(tmp_path) -> None:
    """On main a log naming any folder as its images (written elsewhere, images="folder:/")
    had the dashboard serve files outside every folder the operator named."""
    from PIL import Image

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    for i in range(6):
        Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(outside / f"{i}.png")
    samples = rs.SampleTable(key=[f"{i}.png" for i in range(6)], split=[0, 0, 0, 0, 1, 1], given_label=[0, 1, 0, 1, 0, 1])
    rng = np.random.default_rng(0)
    with rs.RunLogWriter.create(tmp_path / "runs" / "ex", samples, ["a", "b"], embed_dim=2, images=outside) as log:
        log.log_batch(np.arange(4), samples.given_label[:4], rng.normal(size=(4, 2)), rng.normal(size=(4, 2)))
        log.log_batch(np.arange(4, 6), samples.given_label[4:], rng.normal(size=(2, 2)), rng.normal(size=(2, 2)),
                      phase="test")
        log.end_epoch()
    app = create_app([tmp_path / "runs"], refresh_seconds=0, host="127.0.0.1")
    client = app.server.test_client()
    assert client.get("/_relabscope/image?run=ex&sample=0").status_code == 404
    run = app.relabscope.run("ex")
    assert not run.has_images and f"names images at {outside}, outside the folders this server serves" in \
        run.images_withheld
    assert "No pictures: its log names images at" in texts(_layout(app, client))
    # the operator names the folder: served
    app = create_app([tmp_path / "runs"], refresh_seconds=0, host="127.0.0.1", images={"ex": str(outside)})
    assert app.server.test_client().get("/_relabscope/image?run=ex&sample=0").status_code == 200
    # a log naming a folder inside the served root keeps its images
    inside = tmp_path / "runs" / "pictures"
    shutil.copytree(outside, inside)
    assert rs.Run(tmp_path / "runs" / "ex", image_roots=[tmp_path / "runs"]).images_withheld
    with rs.Run(tmp_path / "runs" / "ex", images=inside, image_roots=[tmp_path / "runs"]) as given:
        assert given.images_withheld is None and given.has_images
