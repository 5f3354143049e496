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
    _check_tiny_runs(runs)
    return runs


def _check_tiny_runs(runs: dict[str, Path]) -> None:
    """The properties tests of the tiny runs rely on, checked once here: which samples and
    classes a run relabels depends on floating point (it differs between machines), so a
    test must not assume more than this. In particular a class may be relabelled empty (its
    distances are then NaN); the ``emptied_run`` fixture covers that case on purpose."""
    from relabscope.analysis.run import Run

    for method, path in runs.items():
        with Run(path) as run:
            assert run.num_epochs == TINY["epochs"] and run.status == "finished", (method, run)
            assert run.embedding_epochs() == [1, 3], (method, run.embedding_epochs())
            ff = run.flipflops()
            if method == "baseline":
                assert ff["changes"].sum() == 0
            else:  # the noisy labels and the eager rule make both SCN variants relabel and flip-flop
                assert ff["changes"].sum() > 0 and ff["flipflops"].sum() > 0, (method, ff["changes"].sum())


@pytest.fixture(scope="session")
def emptied_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run log in which relabelling empties a class ("anger", in epoch 1) and shrinks
    another below half ("sadness"): written through RunLogWriter from seeded arrays, so it
    is the same on every machine (``relabscope.examples``)."""
    from relabscope.analysis.run import Run
    from relabscope.examples import EXAMPLE, example_run

    path = example_run(tmp_path_factory.mktemp("emptied") / "emptied")
    with Run(path) as run:
        counts = run.class_counts()
        anger = counts[counts["class_name"] == EXAMPLE["emptied"]]
        assert (anger["count"].to_numpy()[EXAMPLE["emptied_epoch"] + 1:] == 0).all()
        assert run.classes_without_mean() == [EXAMPLE["emptied"]]
    return path


@pytest.fixture(scope="session")
def emptied_pair(emptied_run: Path) -> tuple[Path, Path]:
    """The emptied run and a second one like it (another seed, method SCN), side by side
    under one folder, for comparisons."""
    from relabscope.examples import example_run

    other = example_run(emptied_run.parent / "emptied-scn", seed=1, method="scn")
    return emptied_run, other
