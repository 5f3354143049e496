"""Fixtures for the dashboard tests: an app over the session's tiny runs (plus a corrupt
one) and its Flask test client. The tests call callbacks the way the browser does through
``relabscope.dashboard.harness`` (``dash_call``, ``find``, ``texts``), which the load
benchmark shares."""

from __future__ import annotations

import shutil
from pathlib import Path

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

