"""Fixtures for the dashboard tests: an app over the session's tiny runs (plus a corrupt
one) and a helper that calls a Dash callback the way the browser does, through
``/_dash-update-component``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="session")
def served(tiny_runs, tmp_path_factory) -> Path:
    """A root with the tiny runs (copied: caches written next to them stay out of the
    shared fixture), a nested run, and a run whose log is truncated."""
    root = tmp_path_factory.mktemp("served")
    for method, path in tiny_runs.items():
        shutil.copytree(path, root / method)
    shutil.copytree(tiny_runs["scn"], root / "group" / "nested")
    bad = root / "broken"
    bad.mkdir()
    data = (tiny_runs["scn"] / "run.h5").read_bytes()
    (bad / "run.h5").write_bytes(data[: len(data) // 3])
    return root


@pytest.fixture(scope="session")
def app(served):
    from relabscope.dashboard import create_app

    return create_app([served], refresh_seconds=5)


@pytest.fixture(scope="session")
def client(app):
    return app.server.test_client()


def _key_outputs(key: str) -> list[str]:
    parts = key.strip(".").split("...") if key.startswith("..") else [key]
    return [p.split("@")[0] for p in parts]


def dash_call(app, client, outputs: list[str], inputs: dict[str, Any], state: dict[str, Any] | None = None,
              changed: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """Call the callback whose outputs are ``outputs`` ("id.prop") through Dash's HTTP
    endpoint; returns {"id": {"prop": value}} of what it returned."""
    state = state or {}
    matches = [(key, cb) for key, cb in app.callback_map.items() if _key_outputs(key) == outputs]
    if len(matches) > 1:  # several callbacks write one output (allow_duplicate): pick by inputs
        matches = [(key, cb) for key, cb in matches
                   if set(inputs) <= {f"{i['id']}.{i['property']}" for i in cb["inputs"]}]
    if len(matches) != 1:
        raise KeyError(f"{len(matches)} callbacks with outputs {outputs} and inputs {sorted(inputs)}")
    key, cb = matches[0]

    def spec(items, values):
        out = []
        for item in items:
            name = f"{item['id']}.{item['property']}"
            out.append({**item, "value": values.get(name)})
        return out

    outs = [{"id": o.split(".")[0], "property": o.split(".", 1)[1]} for o in outputs]
    payload = {
        "output": key,
        "outputs": outs if key.startswith("..") else outs[0],
        "inputs": spec(cb["inputs"], inputs),
        "state": spec(cb["state"], state),
        "changedPropIds": changed or list(inputs),
    }
    resp = client.post("/_dash-update-component", data=json.dumps(payload), content_type="application/json")
    if resp.status_code == 204:
        return {}
    assert resp.status_code == 200, resp.data[:500]
    return resp.get_json()["response"]


def find(component: Any, predicate) -> list[dict]:
    """Every component (as JSON) under ``component`` for which ``predicate(c)`` holds."""
    found = []
    if isinstance(component, dict):
        if "type" in component and "props" in component and predicate(component):
            found.append(component)
        for v in component.values():
            found += find(v, predicate)
    elif isinstance(component, list):
        for v in component:
            found += find(v, predicate)
    return found


def texts(component: Any) -> str:
    """All strings under ``component``, joined (what a reader of the page sees, roughly)."""
    out = []
    if isinstance(component, str):
        out.append(component)
    elif isinstance(component, dict):
        for k, v in component.items():
            if k in ("figure", "src", "href", "data", "id", "className", "style", "options", "columns", "type",
                     "namespace", "config"):
                continue
            out.append(texts(v))
    elif isinstance(component, list):
        out += [texts(v) for v in component]
    return " ".join(o for o in out if o)
