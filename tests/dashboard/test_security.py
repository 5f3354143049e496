"""What a client can make the server read: only runs under the roots and images of their
samples. Basic auth guards every route. Unknown pages and runs become error cards."""

from __future__ import annotations

import io
import os
import shutil
from urllib.parse import quote

import numpy as np
import pytest
from PIL import Image

from relabscope.dashboard import create_app, ids
from relabscope.dashboard.app import is_loopback, parse_auth
from relabscope.dashboard.harness import ROUTER, dash_call, texts
from relabscope.errors import RelabscopeError


def _png(resp) -> np.ndarray:
    assert resp.status_code == 200 and resp.mimetype == "image/png"
    return np.asarray(Image.open(io.BytesIO(resp.data)).convert("RGB"))


def test_image_of_a_sample_is_its_training_pixels(app, client) -> None:
    run = app.relabscope.registry.get("scn")
    for sid in (0, len(run.samples) - 1):
        img = _png(client.get(f"/_relabscope/image?run=scn&sample={sid}&size=96"))
        raw = run.images([sid], size=96)[0]
        assert img.shape[1] == 96
        step = 96 // raw.shape[1]  # upscaled by nearest neighbour
        np.testing.assert_array_equal(img[::step, ::step], raw)
    nested = _png(client.get("/_relabscope/image?" + "run=" + quote("group/nested") + "&sample=3&size=48"))
    assert nested.shape[:2] == (48, 48)


@pytest.mark.parametrize("query", [
    "run=../scn&sample=0", "run=scn/../scn&sample=0", "run=%2Fetc%2Fpasswd&sample=0", "run=/etc&sample=0",
    "run=..&sample=0", "run=.&sample=0", "run=group&sample=0", "run=nope&sample=0", "run=&sample=0", "sample=0",
    "run=broken&sample=0",
    "run=scn&sample=-1", "run=scn&sample=128", "run=scn&sample=99999999999", "run=scn&sample=1.0",
    "run=scn&sample=1e2", "run=scn&sample=%200", "run=scn&sample=0x1", "run=scn&sample=", "run=scn",
    "run=scn&sample=../../etc/passwd", "run=scn&sample=0&size=47", "run=scn&sample=0&size=-96",
    "run=scn&sample=0&size=100000",
])
def test_bad_image_requests_are_404(client, query) -> None:
    resp = client.get("/_relabscope/image?" + query)
    assert resp.status_code == 404
    assert b"root:" not in resp.data and resp.mimetype == "text/plain"


def test_symlinked_run_out_of_the_root_is_not_served(tiny_runs, tmp_path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    shutil.copytree(tiny_runs["baseline"], root / "inside")
    outside = tmp_path / "outside"
    shutil.copytree(tiny_runs["scn"], outside)
    os.symlink(outside, root / "escape")
    app = create_app([root], refresh_seconds=0)
    client = app.server.test_client()
    assert app.relabscope.registry.ids() == ["inside"]
    assert client.get("/_relabscope/image?run=escape&sample=0").status_code == 404
    assert client.get("/_relabscope/image?run=inside&sample=0").status_code == 200
    page = dash_call(app, client, ROUTER,
                     {f"{ids.URL}.pathname": "/", f"{ids.URL}.search": "?run=escape"})
    assert "unknown run 'escape'" in texts(page[ids.PAGE]["children"])


def test_dash_routes_do_not_serve_files(client) -> None:
    for path in ("/../../etc/passwd", "/_dash-component-suites/../../../../etc/passwd", "/assets/../app.py",
                 "/_dash-component-suites/dash/../../../../../../etc/passwd"):
        resp = client.get(path)
        assert b"root:x:" not in resp.data and b"def create_app" not in resp.data


@pytest.mark.parametrize("search,message", [
    ("?run=../scn", "unknown run '../scn'"), ("?run=/etc/passwd", "unknown run '/etc/passwd'"),
    ("?run=broken", "not a readable HDF5 run log"),
])
def test_router_shows_error_cards(app, client, search, message) -> None:
    for path in ("/", "/flipflops", "/sample"):
        out = dash_call(app, client, ROUTER,
                        {f"{ids.URL}.pathname": path, f"{ids.URL}.search": search})
        assert message in texts(out[ids.PAGE]["children"])


def test_unknown_page_is_an_error_card(app, client) -> None:
    out = dash_call(app, client, ROUTER,
                    {f"{ids.URL}.pathname": "/../etc", f"{ids.URL}.search": "?run=scn"})
    assert "Page not found" in texts(out[ids.PAGE]["children"])


@pytest.mark.parametrize("sample", ["-1", "128", "abc", "1.5", "99999999999999999999"])
def test_bad_sample_in_url_is_an_error_card(app, client, sample) -> None:
    out = dash_call(app, client, ROUTER,
                    {f"{ids.URL}.pathname": "/sample", f"{ids.URL}.search": f"?run=scn&sample={sample}"})
    assert "sample id" in texts(out[ids.PAGE]["children"])


# ---------------------------------------------------------------------- auth
@pytest.fixture(scope="module")
def guarded(served):
    app = create_app([served], auth="alice:s3cret:with-colon", refresh_seconds=0)
    return app.server.test_client()


def _basic(user: str, password: str) -> dict:
    import base64

    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.mark.parametrize("path", ["/", "/flipflops?run=scn", "/_dash-layout", "/_dash-dependencies",
                                  "/_relabscope/image?run=scn&sample=0"])
def test_basic_auth(guarded, path) -> None:
    resp = guarded.get(path)
    assert resp.status_code == 401 and resp.headers["WWW-Authenticate"].startswith("Basic")
    assert guarded.get(path, headers=_basic("alice", "wrong")).status_code == 401
    assert guarded.get(path, headers=_basic("bob", "s3cret:with-colon")).status_code == 401
    assert guarded.get(path, headers={"Authorization": "Bearer s3cret"}).status_code == 401
    assert guarded.get(path, headers=_basic("alice", "s3cret:with-colon")).status_code == 200


def test_auth_callbacks_need_credentials_too(guarded) -> None:
    assert guarded.post("/_dash-update-component", json={}).status_code == 401


def test_parse_auth_and_hosts() -> None:
    assert parse_auth("u:p:q") == ("u", "p:q") and parse_auth(None) is None and parse_auth("") is None
    for bad in ("nocolon", ":p", "u:"):
        with pytest.raises(RelabscopeError):
            parse_auth(bad)
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.2") and not is_loopback("example.org")
