"""A served sweep folder: the compare page of one of its runs opens on the run's
counterpart (SCN against SCN-C at the same noise and seed) and shows the sweep's noise
table, with the numbers ``relabscope.sweep`` computes."""

from __future__ import annotations

import pytest

from relabscope.dashboard import ids
from relabscope.dashboard.harness import ROUTER, by_id, dash_call, find, texts
from relabscope.sweep import accuracy_table, run_sweep, sweep_table
from tests.conftest import TINY, scratch

SHARED = {k: v for k, v in TINY.items() if k not in ("noise", "seed")} | {"epochs": 2}


@pytest.fixture(scope="module")
def sweep_app(tmp_path_factory):
    from relabscope.dashboard import create_app

    with scratch(tmp_path_factory, "served-sweep") as root:
        run_sweep(root / "grid", methods=["scn", "scn-c", "rul"], noise=[0.3], seeds=1, settings=SHARED,
                  progress=False, log=lambda line: None)
        app = create_app([root], refresh_seconds=5)
        yield app, app.server.test_client(), root / "grid"


def _page(app, client, search):
    out = dash_call(app, client, ROUTER,
                    {f"{ids.URL}.pathname": "/compare", f"{ids.URL}.search": search})
    return out[ids.PAGE]["children"]


def test_compare_opens_on_the_counterpart_and_shows_the_sweep_table(sweep_app) -> None:
    app, client, folder = sweep_app
    page = _page(app, client, "?run=grid/scn/noise-30/seed-0")
    store = by_id(page, ids.CP_ARGS)["props"]["data"]
    assert store == {"run": "grid/scn/noise-30/seed-0", "against": "grid/scn-c/noise-30/seed-0"}
    shown = texts(page)
    assert "Sweep grid" in shown and "compare with grid/scn-c/noise-30/seed-0" in shown
    tables = find(page, lambda c: c.get("type") == "DataTable" and "noise 30%" in str(c["props"].get("columns")))
    rows = {r["method"]: r["noise 30%"] for r in tables[0]["props"]["data"]}
    want = accuracy_table(sweep_table(folder))["noise 30%"].to_dict()
    assert rows == want and set(rows) == {"scn", "scn-c", "rul"}
    # a run without a "-c" partner in the sweep falls back to another run, and still shows the table
    rul = _page(app, client, "?run=grid/rul/noise-30/seed-0")
    assert "Sweep grid" in texts(rul)
    assert by_id(rul, ids.CP_ARGS)["props"]["data"]["against"] is not None
