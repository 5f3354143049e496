"""The notebooks in notebooks/ run top to bottom on two tiny real runs, and are stored clean.

Each notebook's first code cell reads ``$RELABSCOPE_RUNS`` and trains ``scn-20`` /
``scn-c-20`` there only when they are missing. ``test_notebook_runs`` gives it both runs
(trained by the fixture on the tests' tiny noisy data), so the kernel only reads them;
``test_first_cell_trains_missing_runs`` runs that cell alone on an empty directory, with
tiny settings passed through ``$RELABSCOPE_TRAIN_OPTIONS``, so the "from nothing" path is
covered too. ``your_own_model.ipynb`` reads no runs: it makes its own images and trains its
own model through the Lightning callback (``test_own_model_notebook_runs``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import TINY, scratch

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = ["quickstart.ipynb", "scn_vs_scn_c.ipynb"]
#: notebooks that make their own data and train their own model: they read no runs
OWN_DATA = ["your_own_model.ipynb"]
PLOTLY = "application/vnd.plotly.v1+json"
RUN_NAMES = {"scn": "scn-20", "scn-c": "scn-c-20"}


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory: pytest.TempPathFactory, _isolated_cache) -> Path:
    """``<tmp>/scn-20`` and ``<tmp>/scn-c-20``: tiny SCN and SCN-C runs on the same noisy data."""
    from relabscope.training.runner import train

    with scratch(tmp_path_factory, "notebook-runs") as root:
        for method, name in RUN_NAMES.items():
            train({**TINY, "method": method, "noise": 0.3, "out": str(root / name)}, progress=False,
                  log=lambda line: None)
        yield root


def _execute(name: str, runs_root: Path, monkeypatch: pytest.MonkeyPatch, *,
             first_cell_only: bool = False) -> nbformat.NotebookNode:
    """Run the notebook in a fresh python3 kernel (which inherits this environment)."""
    monkeypatch.setenv("RELABSCOPE_RUNS", str(runs_root))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # RELABSCOPE_CACHE: set by tests/conftest.py
    nb = nbformat.read(NOTEBOOK_DIR / name, as_version=4)
    if first_cell_only:
        nb.cells = _code_cells(nb)[:1]
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(runs_root)}})
    client.execute()
    return nb


def _code_cells(nb) -> list:
    return [c for c in nb.cells if c.cell_type == "code"]


def _texts(cell) -> str:
    """Everything a cell printed or showed as plain text."""
    parts = []
    for out in cell.outputs:
        if out.output_type == "stream":
            parts.append(out.text)
        elif out.output_type in ("execute_result", "display_data"):
            parts.append(out.data.get("text/plain", ""))
    return "\n".join(parts)


def _plotly_figures(nb) -> list[dict]:
    return [out.data[PLOTLY] for c in _code_cells(nb) for out in c.outputs
            if out.output_type in ("execute_result", "display_data") and PLOTLY in out.data]


def _figure_title(fig: dict) -> str:
    t = fig.get("layout", {}).get("title", {})
    return t.get("text", "") if isinstance(t, dict) else str(t)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs(name: str, runs_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import relabscope as rs

    nb = _execute(name, runs_root, monkeypatch)
    cells = _code_cells(nb)
    errors = [out for c in cells for out in c.outputs if out.output_type == "error"]
    assert not errors, [f"{e.ename}: {e.evalue}" for e in errors]
    assert all(c.execution_count is not None for c in cells), "a code cell did not run"
    assert [c.execution_count for c in cells] == list(range(1, len(cells) + 1))

    # The first code cell found both runs and trained nothing.
    assert "RELABSCOPE_RUNS" in cells[0].source
    assert "trained now: nothing" in _texts(cells[0])
    assert sorted(p.name for p in runs_root.iterdir()) == sorted(RUN_NAMES.values())

    figures = _plotly_figures(nb)
    text = "\n".join(_texts(c) for c in cells)
    if name == "quickstart.ipynb":
        with rs.open_run(runs_root / "scn-c-20") as run:
            rows, cols = run.flipflops().shape
            relabelled = int((run.flipflops()["changes"] > 0).sum())
        assert f"flip-flop table: {rows} training samples x {cols} columns" in text
        assert f"relabelled samples: {relabelled} |" in text
        assert "scn-c on synthetic" in text  # the Run's repr
        assert len(figures) >= 5
    else:
        titles = [_figure_title(f) for f in figures]
        assert len(figures) >= 12, titles
        for what in ("Most flip-flopping", "Relabel consistency", "Distance to class centers", "UMAP",
                     "Grad-CAM", "Compactness"):
            assert any(what in t for t in titles), (what, titles)
        # Both runs side by side (the comparison tables and the figure titles name them).
        assert any("scn-20 vs scn-c-20" in t for t in titles)
        assert "closer_to_new" in text and "scn-c-20" in text


def test_first_cell_trains_missing_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """From nothing: the setup cell (the same in every notebook) trains both runs, here with
    the tiny settings for one epoch passed through $RELABSCOPE_TRAIN_OPTIONS."""
    import relabscope as rs

    setups = {name: _code_cells(nbformat.read(NOTEBOOK_DIR / name, as_version=4))[0].source for name in NOTEBOOKS}
    assert len(set(setups.values())) == 1, "the notebooks' setup cells differ"
    monkeypatch.setenv("RELABSCOPE_TRAIN_OPTIONS", json.dumps({**TINY, "epochs": 1}))
    root = tmp_path / "fresh"
    root.mkdir()  # the kernel's working directory; the runs do not exist yet
    nb = _execute(NOTEBOOKS[0], root, monkeypatch, first_cell_only=True)
    assert "trained now: scn, scn-c" in _texts(nb.cells[0])
    for method, name in RUN_NAMES.items():
        with rs.open_run(root / name) as run:
            assert (run.method, run.num_epochs, run.status) == (method, 1, "finished")
            assert run.config["noise"] == TINY["noise"]


def test_own_model_notebook_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """your_own_model.ipynb from nothing: it draws its faces, trains its CNN through the
    Lightning callback into a temporary folder (here under ``tmp_path``, through $TMPDIR)
    and shows every view of that log, Grad-CAM of its own model included."""
    import relabscope as rs

    pytest.importorskip("lightning.pytorch")
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    nb = _execute(OWN_DATA[0], tmp_path, monkeypatch)
    cells = _code_cells(nb)
    errors = [out for c in cells for out in c.outputs if out.output_type == "error"]
    assert not errors, [f"{e.ename}: {e.evalue}" for e in errors]
    assert [c.execution_count for c in cells] == list(range(1, len(cells) + 1))
    [log] = tmp_path.glob("relabscope-own-model-*/runs/small-cnn")
    with rs.open_run(log) as run:
        assert (run.num_epochs, run.status, run.method) == (12, "finished", "margin-rule")
        events = len(run.relabel_events())
    text = "\n".join(_texts(c) for c in cells)
    assert f"{events} relabel events" in text and events > 0
    titles = [_figure_title(f) for f in _plotly_figures(nb)]
    for what in ("Relabel events per epoch", "Most flip-flopping", "Relabel consistency", "Closer to the new class",
                 "Class sizes", "Given label → label in effect", "Compactness", "Data map", "Distance to class centers",
                 "PCA of the embeddings", "Grad-CAM"):
        assert any(what in t for t in titles), (what, titles)
    shown = [out for c in cells for out in c.outputs if "image/png" in out.get("data", {})]
    assert len(shown) == 2  # the data set's first faces and the relabelled samples' images


@pytest.mark.parametrize("path", sorted(NOTEBOOK_DIR.glob("*.ipynb")), ids=lambda p: p.name)
def test_notebook_stored_clean(path: Path) -> None:
    assert path.name in NOTEBOOKS + OWN_DATA, f"{path.name} is not executed by a test: add it to NOTEBOOKS"
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"
    for cell in _code_cells(nb):
        assert cell.outputs == [], f"{path.name}: a code cell is stored with outputs"
        assert cell.execution_count is None, f"{path.name}: a code cell is stored with an execution count"


def test_every_notebook_is_executed() -> None:
    assert sorted(p.name for p in NOTEBOOK_DIR.glob("*.ipynb")) == sorted(NOTEBOOKS + OWN_DATA)
