"""Test-wide settings (caches go to a temporary folder, never the user's home) and the tiny
real runs that the analysis, plot and report tests read."""

from __future__ import annotations

import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

#: Small real runs: trained once per session on tiny synthetic data with heavy noise and an
#: eager relabel rule, so relabels and flip-flops do happen.
TINY = {
    "dataset_options": {"num_train": 96, "num_test": 32, "size": 32},
    "image_size": 16, "batch_size": 16, "workers": 0, "device": "cpu",
    "noise": 0.3, "relabel_epoch": 1, "delta": 0.05, "epochs": 4, "embed_every": 2, "seed": 0,
}


@contextmanager
def scratch(tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[Path]:
    """A temporary folder removed when the ``with`` block ends, for module-scoped fixtures.

    Their runs hold checkpoints of 130 MB (a ResNet-18 with Adam's state) to 840 MB (DMUE's
    eight ``layer4`` copies); pytest keeps ``tmp_path_factory`` folders until the session
    ends, so without this the suite's peak disk use was 18 GB.
    """
    path = tmp_path_factory.mktemp(name)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


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


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory: pytest.TempPathFactory, _isolated_cache) -> dict[str, Path]:
    """Run directories of SCN, SCN-C and baseline trained on the same noisy tiny data."""
    from relabscope.training.runner import train

    root = tmp_path_factory.mktemp("runs")
    runs = {}
    for method in ("scn", "scn-c", "baseline"):
        out = root / method
        train({**TINY, "method": method, "out": str(out)}, progress=False, log=lambda line: None)
        runs[method] = out
    return runs
