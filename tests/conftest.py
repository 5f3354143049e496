"""Test-wide settings: caches go to a temporary folder, never the user's home."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    import os

    os.environ["RELABSCOPE_CACHE"] = str(tmp_path_factory.mktemp("relabscope-cache"))
