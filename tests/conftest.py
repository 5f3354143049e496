"""Test-wide settings: caches go to a temporary folder, never the user's home."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    import os

    os.environ["RELABSCOPE_CACHE"] = str(tmp_path_factory.mktemp("relabscope-cache"))


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """One intra-op thread: on a small machine that runs training subprocesses beside the
    tests, torch's default threads oversubscribe the cores and slow everything down; one
    thread also makes results identical across processes (same reduction order)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
