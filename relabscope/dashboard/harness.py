"""Calling the dashboard's callbacks as the browser does, and reading what comes back.

Dash's renderer runs a callback by POSTing ``/_dash-update-component`` with a payload built
from the app's ``callback_map``. The tests (through Flask's test client) and
``benchmarks/dashboard_load.py`` (through a ``requests.Session`` against a served app) build
that payload here, so both exercise exactly what a browser sends, with one copy of the
rules. A callback that no longer exists (an id or a property renamed) raises
``CallbackNotFound`` naming the outputs asked for, and an id missing from a layout raises
``ComponentNotFound`` listing the ids there: neither can turn into a silently empty answer.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Collection, Iterable, Mapping, Sequence

from relabscope.dashboard import ids

UPDATE_ROUTE = "/_dash-update-component"
#: outputs of the shell's routing callback, the one a browser calls first to open any page
ROUTER = (f"{ids.PAGE}.children", f"{ids.TOPNAV}.children", f"{ids.LIVE_VERSION}.data")
#: props that hold data or styling, not text a reader of the page sees
_NOT_TEXT = ("figure", "src", "href", "data", "id", "className", "style", "options", "columns", "type",
             "namespace", "config")


class CallbackNotFound(LookupError):
    """No callback (or several) writes the outputs asked for."""


class ComponentNotFound(LookupError):
    """No component with the id asked for under a layout."""


class CallbackFailed(RuntimeError):
    """The update route answered something other than a Dash response."""

    def __init__(self, status: int, detail: str):
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.detail = detail


# ---------------------------------------------------------------------- the callback map
def key_outputs(key: str) -> list[str]:
    """The ``id.prop`` outputs of a ``callback_map`` key (``..a.b...c.d..`` for several;
    ``@hash`` of an ``allow_duplicate`` output dropped)."""
    parts = key.strip(".").split("...") if key.startswith("..") else [key]
    return [p.split("@")[0] for p in parts]


def is_pattern(key: str) -> bool:
    """Whether the callback uses pattern-matching ids (dict ids; never in this app so far)."""
    return "{" in key


def _names(items: Iterable[dict]) -> set[str]:
    return {f"{i['id']}.{i['property']}" for i in items}


def callback_key(callback_map: Mapping[str, dict], outputs: Sequence[str], inputs: Collection[str] = ()) -> str:
    """The key of the one callback whose outputs are ``outputs`` (``id.prop``, in order);
    when several write them (``allow_duplicate``), the one that reads every name in ``inputs``."""
    outputs = list(outputs)
    matches = [key for key in callback_map if key_outputs(key) == outputs]
    if len(matches) > 1:
        matches = [key for key in matches if set(inputs) <= _names(callback_map[key]["inputs"])]
    if len(matches) != 1:
        raise CallbackNotFound(f"{len(matches)} callbacks with outputs {outputs} and inputs {sorted(inputs)}")
    return matches[0]


def is_clientside(callback: Mapping[str, Any]) -> bool:
    """Whether a ``callback_map`` entry runs in the browser (``app.clientside_callback``):
    the server has no function to answer a request for it."""
    return "callback" not in callback


def page_callbacks(callback_map: Mapping[str, dict], page_ids: Collection[str],
                   shell_ids: Collection[str]) -> list[tuple[str, dict]]:
    """(key, callback) of every server callback a page fires by itself: its inputs are all
    on the page (``page_ids``) or the shell (``shell_ids``), and one of them is on the page."""
    page, found = set(page_ids), []
    for key, cb in callback_map.items():
        if is_pattern(key) or is_clientside(cb):
            continue
        inputs = {i["id"] for i in cb["inputs"]}
        if inputs <= page | set(shell_ids) and inputs & page:
            found.append((key, cb))
    return found


def payload(callback_map: Mapping[str, dict], key: str, values: Mapping[str, Any],
            changed: Sequence[str] | None = None) -> dict:
    """The request body the renderer sends to run callback ``key``: every input and state
    with its value from ``values`` (``id.prop`` -> value; missing: None); ``changed``: the
    props that triggered it (None: every input)."""
    cb = callback_map[key]

    def spec(items: list[dict]) -> list[dict]:
        return [{**item, "value": values.get(f"{item['id']}.{item['property']}")} for item in items]

    outs = [{"id": o.split(".")[0], "property": o.split(".", 1)[1]} for o in key_outputs(key)]
    inputs = spec(cb["inputs"])
    return {"output": key, "outputs": outs if key.startswith("..") else outs[0], "inputs": inputs,
            "state": spec(cb["state"]),
            "changedPropIds": list(changed) if changed is not None else [f"{i['id']}.{i['property']}" for i in inputs]}


# ---------------------------------------------------------------------- requests
def post_test_client(client: Any, body: dict) -> tuple[int, str]:
    """POST ``body`` to the update route through a Flask test client: (status, text)."""
    resp = client.post(UPDATE_ROUTE, data=json.dumps(body), content_type="application/json")
    return resp.status_code, resp.get_data(as_text=True)


def post_session(session: Any, base_url: str, body: dict, timeout: float = 60.0) -> tuple[int, str]:
    """POST ``body`` to the update route of the server at ``base_url`` through a
    ``requests.Session``: (status, text). Connection errors and timeouts propagate."""
    resp = session.post(base_url + UPDATE_ROUTE, data=json.dumps(body), headers={"Content-Type": "application/json"},
                        timeout=timeout)
    return resp.status_code, resp.text


def answer(status: int, text: str) -> dict[str, dict[str, Any]]:
    """{"id": {"prop": value}} of what a callback returned ({} for 204: nothing to update);
    CallbackFailed for any other answer than a Dash response."""
    if status == 204:
        return {}
    if status != 200:
        raise CallbackFailed(status, text[:300])
    try:
        body = json.loads(text)
    except ValueError:
        raise CallbackFailed(status, "not JSON: " + text[:200]) from None
    if not isinstance(body, dict) or "response" not in body or "error" in body:
        raise CallbackFailed(status, "no Dash response: " + text[:200])
    return body["response"]


def dash_call(app: Any, client: Any, outputs: Sequence[str], inputs: Mapping[str, Any],
              state: Mapping[str, Any] | None = None,
              changed: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
    """Run the callback of ``app`` whose outputs are ``outputs`` through ``client`` (Flask's
    test client) as the browser would; {"id": {"prop": value}} of what it returned."""
    key = callback_key(app.callback_map, outputs, inputs)
    body = payload(app.callback_map, key, {**inputs, **(state or {})}, changed)
    return answer(*post_test_client(client, body))


# ---------------------------------------------------------------------- layouts
def find(component: Any, predicate: Callable[[dict], bool]) -> list[dict]:
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


def components(tree: Any) -> dict[str, dict]:
    """{id: component JSON} of every component with a string id under ``tree``."""
    return {c["props"]["id"]: c for c in find(tree, lambda c: isinstance(c["props"], dict)
                                              and isinstance(c["props"].get("id"), str))}


def by_id(tree: Any, component_id: str) -> dict:
    """The first component with id ``component_id`` under ``tree``."""
    hits = find(tree, lambda c: isinstance(c["props"], dict) and c["props"].get("id") == component_id)
    if not hits:
        raise ComponentNotFound(f"no component {component_id!r}; ids here: {sorted(components(tree))}")
    return hits[0]


def texts(component: Any) -> str:
    """All strings under ``component``, joined (what a reader of the page sees, roughly)."""
    out = []
    if isinstance(component, str):
        out.append(component)
    elif isinstance(component, dict):
        for k, v in component.items():
            if k in _NOT_TEXT:
                continue
            out.append(texts(v))
    elif isinstance(component, list):
        out += [texts(v) for v in component]
    return " ".join(o for o in out if o)
