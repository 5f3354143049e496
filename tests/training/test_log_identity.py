"""A refactor of the training path must not change what a run logs: a seeded SCN-C run
(every relabel guard on) and a RunCapture run of a loop of one's own (guards on) log the
same bytes as when the digests in ``log_digests.json`` were recorded.

Every dataset of the log is compared by its SHA-256, except the two that hold wall-clock
times (``epochs/done``, ``epochs/seconds``) and the config text (it names the run's
folder). Floating point differs between torch releases, so digests are kept per torch
version; under a version without digests the test is skipped and says how to record them:

    python -m tests.training.test_log_identity --record
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from relabscope.integrations.capture import RunCapture
from relabscope.runlog.schema import LOG_NAME
from tests.conftest import TINY
from tests.integrations.tiny import K, make_data, relabel_rule

DIGESTS = Path(__file__).with_name("log_digests.json")
#: datasets that differ between two runs of one seed by design
VARYING = {"epochs/done", "epochs/seconds", "meta/config"}
GUARDS = {"relabel_floor": 0.5, "relabel_hysteresis": 1, "relabel_agree": True}


def log_digests(run_dir: Path) -> dict[str, str]:
    """SHA-256 of every dataset of ``run_dir``'s log but :data:`VARYING`, by name."""
    out: dict[str, str] = {}
    with h5py.File(run_dir / LOG_NAME, "r") as f:
        def visit(name: str, obj: object) -> None:
            if isinstance(obj, h5py.Dataset) and name not in VARYING:
                out[name] = hashlib.sha256(np.ascontiguousarray(obj[()]).tobytes()).hexdigest()
        f.visititems(visit)
    return dict(sorted(out.items()))


def trained(out: Path) -> Path:
    """A seeded SCN-C run with every guard on, through ``relabscope train``'s path."""
    from relabscope.training.runner import train

    train({**TINY, **GUARDS, "method": "scn-c", "out": str(out)}, progress=False, log=lambda line: None)
    return out


def captured(out: Path) -> Path:
    """A loop of one's own: a seeded linear model, relabels by the integration tests' rule,
    every guard on."""
    data = make_data()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 8), torch.nn.ReLU(), torch.nn.Linear(8, K))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with RunCapture(out, data.y_train, data.y_test, guards="floor=0.5+hysteresis=1+agree") as cap:
        cap.attach(model, "2")
        for epoch in range(4):
            for ids in torch.arange(len(data.y_train)).split(16):
                logits = model(data.x_train[ids])
                loss = torch.nn.functional.cross_entropy(logits, cap.labels(ids))
                opt.zero_grad()
                loss.backward()
                opt.step()
                moved, new = relabel_rule(ids, logits, cap.labels(ids), epoch)
                cap.relabel(moved, new)
                cap.log(ids, logits)
            with torch.no_grad():
                cap.log(torch.arange(len(data.y_test)), model(data.x_test), phase="test")
            cap.end_epoch()
    return out


RUNS = {"scn-c-guarded": trained, "capture-guarded": captured}


def _version() -> str:
    return torch.__version__.split("+")[0]


@pytest.mark.parametrize("name", list(RUNS))
def test_the_log_is_the_recorded_one(tmp_path, name) -> None:
    recorded = json.loads(DIGESTS.read_text()) if DIGESTS.exists() else {}
    if _version() not in recorded:
        pytest.skip(f"no digests recorded under torch {_version()} (recorded: {', '.join(recorded) or 'none'}); "
                    "record them with python -m tests.training.test_log_identity --record")
    expected = recorded[_version()][name]
    run_dir = RUNS[name](tmp_path / name)
    with h5py.File(run_dir / LOG_NAME, "r") as f:  # the runs exercise what a refactor could change
        assert len(f["relabels"]) > 0 and f["epochs/vetoed"][()].sum() > 0
    got = log_digests(run_dir)
    differing = [k for k in sorted(set(expected) | set(got)) if expected.get(k) != got.get(k)]
    assert not differing, f"{name}: datasets that differ from the recorded log: {differing}"


def _record() -> None:
    import tempfile

    recorded = json.loads(DIGESTS.read_text()) if DIGESTS.exists() else {}
    with tempfile.TemporaryDirectory() as tmp:
        recorded[_version()] = {name: log_digests(make(Path(tmp) / name)) for name, make in RUNS.items()}
    DIGESTS.write_text(json.dumps(recorded, indent=1, sort_keys=True) + "\n")
    print(f"recorded digests under torch {_version()} in {DIGESTS}")


if __name__ == "__main__" and "--record" in sys.argv:
    torch.set_num_threads(1)  # as the test session runs (tests/conftest.py)
    _record()
