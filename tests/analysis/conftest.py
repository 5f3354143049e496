"""Small real runs the analysis tests read: trained once per session on tiny synthetic data
with heavy noise and an eager relabel rule, so relabels and flip-flops do happen."""

from __future__ import annotations

from pathlib import Path

import pytest

TINY = {
    "dataset_options": {"num_train": 96, "num_test": 32, "size": 32},
    "image_size": 16, "batch_size": 16, "workers": 0, "device": "cpu",
    "noise": 0.3, "relabel_epoch": 1, "delta": 0.05, "epochs": 4, "embed_every": 2, "seed": 0,
}


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory: pytest.TempPathFactory, _isolated_cache) -> dict[str, Path]:
    """Run directories of SCN, SCN-C and baseline trained on the same noisy tiny data."""
    from relabscope.train.runner import train

    root = tmp_path_factory.mktemp("runs")
    runs = {}
    for method in ("scn", "scn-c", "baseline"):
        out = root / method
        train({**TINY, "method": method, "out": str(out)}, progress=False, log=lambda line: None)
        runs[method] = out
    return runs
