"""Exact resume on the CPU: a run stopped after epoch 2 (cleanly, or by SIGKILL in the
middle of epoch 3) and resumed ends with the same log and weights as an uninterrupted run.
Plus what resume refuses, extends, and leaves alone."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from relabscope.errors import RunDirError
from relabscope.runlog import RunLogReader
from relabscope.training.runner import train
from tests.conftest import scratch

DATA = {"num_train": 96, "num_test": 32, "size": 32}
BASE = {
    "method": "scn", "noise": 0.3, "relabel_epoch": 1, "delta": 0.02, "epochs": 4,
    "embed_every": 1, "seed": 3, "dataset_options": DATA, "image_size": 16,
    "batch_size": 16, "workers": 0, "device": "cpu",
}
CLI_ARGS = [
    "train", "--method", "scn", "--noise", "0.3", "--relabel-epoch", "1", "--delta", "0.02",
    "--epochs", "4", "--embed-every", "1", "--seed", "3", "--device", "cpu",
    "-O", "num_train=96", "-O", "num_test=32", "-O", "size=32",
    "--image-size", "16", "--batch-size", "16", "--workers", "0",
]
EPOCH_LINE = re.compile(r"^epoch (\d+)/(\d+)  loss ")


def _env() -> dict[str, str]:
    assert "RELABSCOPE_CACHE" in os.environ  # set by conftest's session fixture
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _log_arrays(run_dir: Path) -> dict:
    with RunLogReader(run_dir) as log:
        out = {
            "n": log.num_epochs,
            "status": log.status,
            "label": log.epoch_array("label"),
            "pred": log.epoch_array("pred"),
            "prob": log.epoch_array("prob"),
            "relabel_end": log.epoch_array("relabel_end"),
            "relabels": log.relabels(),
            "embedding_epochs": list(log.embedding_epochs()),
        }
    with h5py.File(run_dir / "run.h5", "r", swmr=True) as f:
        out["raw_relabels"] = f["relabels"][:]
    return out


def _model(run_dir: Path) -> tuple[int, dict[str, torch.Tensor]]:
    state = torch.load(run_dir / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)
    return int(state["epoch"]), state["model"]


def _kill_mid_epoch_3(run_dir: Path) -> list[str]:
    """Start the CLI run, SIGKILL it as soon as it reports epoch 2 complete: epoch 3 is then
    training (it started while epoch 2 was being committed) and its checkpoint is far off."""
    proc = subprocess.Popen([sys.executable, "-m", "relabscope.cli", *CLI_ARGS, "--out", str(run_dir)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=_env())
    lines = []
    try:
        for line in proc.stderr:  # type: ignore[union-attr]
            lines.append(line)
            if line.startswith("epoch 1/"):
                # while it trains, nobody else may write its directory
                with pytest.raises(RunDirError, match="another process is training"):
                    train({"epochs": 4}, resume=run_dir, progress=False)
                with pytest.raises(RunDirError, match="another process is training"):
                    train({**BASE, "out": str(run_dir)}, overwrite=True, progress=False)
            if EPOCH_LINE.match(line) and line.startswith("epoch 2/"):
                proc.kill()
                break
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=60)
        lines += proc.stderr.read().splitlines(keepends=True)  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]
    assert proc.returncode == -9, "".join(lines)
    return lines


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, _isolated_cache) -> dict[str, Path]:
    with scratch(tmp_path_factory, "resume") as root:
        a, b, c = root / "A", root / "B", root / "C"
        # C first: the subprocess (torch import) overlaps nothing, but its kill must land mid-epoch
        lines = _kill_mid_epoch_3(c)
        epoch, _ = _model(c)
        assert epoch == 2, f"the kill should leave the epoch-2 checkpoint:\n{''.join(lines)}"
        with RunLogReader(c) as log:
            assert log.num_epochs in (2, 3) and log.status == "running"
        result_c = train({"epochs": 4}, resume=c, progress=False)
        assert (result_c.status, result_c.epochs_done) == ("finished", 4)

        result_a = train({**BASE, "out": str(a)}, progress=False)
        assert (result_a.status, result_a.epochs_done) == ("finished", 4)

        result_b1 = train({**BASE, "epochs": 2, "out": str(b)}, progress=False)
        assert (result_b1.status, result_b1.epochs_done) == ("finished", 2)
        with RunLogReader(b) as log:
            assert log.num_epochs == 2 and log.status == "finished"
        result_b = train({"epochs": 4}, resume=b, progress=False)
        assert (result_b.status, result_b.epochs_done) == ("finished", 4)
        yield {"A": a, "B": b, "C": c, "root": root}


def test_uninterrupted_run_relabels(runs) -> None:
    got = _log_arrays(runs["A"])
    assert got["n"] == 4 and got["status"] == "finished"
    events = got["relabels"]
    assert len(events) >= 10, "delta is meant to be small enough for several relabels"
    assert set(np.unique(events["epoch"])) >= {0, 1, 2, 3}  # relabelling from epoch 1 on
    assert len(got["raw_relabels"]) == got["relabel_end"][-1] == len(events)
    # the labels in effect move exactly by the events
    for e in range(3):
        ev = events[events["epoch"] == e]
        expect = got["label"][e].copy()
        expect[ev["sample"]] = ev["new"]
        assert np.array_equal(got["label"][e + 1], expect)
    assert not np.array_equal(got["label"][0], got["label"][-1])


@pytest.mark.parametrize("other", ["B", "C"])
def test_resumed_run_is_identical(runs, other: str) -> None:
    a, o = _log_arrays(runs["A"]), _log_arrays(runs[other])
    assert o["n"] == 4 and o["status"] == "finished"
    assert np.array_equal(a["label"], o["label"])
    assert np.array_equal(a["pred"], o["pred"])
    assert np.array_equal(a["prob"], o["prob"], equal_nan=True)
    assert a["relabels"].dtype == o["relabels"].dtype
    assert np.array_equal(a["relabels"], o["relabels"])  # epoch, step, sample, old, new, p_old, p_new
    assert np.array_equal(a["raw_relabels"], o["raw_relabels"])  # nothing left from the cut epoch
    assert np.array_equal(a["relabel_end"], o["relabel_end"])
    assert a["embedding_epochs"] == o["embedding_epochs"] == [0, 1, 2, 3]
    epoch_a, model_a = _model(runs["A"])
    epoch_o, model_o = _model(runs[other])
    assert epoch_a == epoch_o == 4
    assert model_a.keys() == model_o.keys()
    for key in model_a:
        assert torch.equal(model_a[key], model_o[key]), key


def _copy(run_dir: Path, name: str) -> Path:
    dst = run_dir.parent / name
    shutil.copytree(run_dir, dst)
    return dst


def _stamp(run_dir: Path) -> dict[str, tuple]:
    out = {}
    for p in sorted(run_dir.rglob("*")):
        if p.is_file() and p.name != ".lock":
            st = p.stat()
            out[str(p.relative_to(run_dir))] = (st.st_size, st.st_mtime_ns,
                                                p.read_bytes() if st.st_size < 10_000_000 else None)
    return out


@pytest.mark.parametrize("change, value", [("method", "scn-c"), ("noise", 0.2), ("delta", 0.3),
                                           ("seed", 4), ("dataset_options", {**DATA, "num_train": 64})])
def test_resume_refuses_to_change_what_is_computed(runs, change: str, value) -> None:
    before = _stamp(runs["A"])
    with pytest.raises(RunDirError, match=rf"cannot change {change} when resuming") as exc:
        train({change: value}, resume=runs["A"], progress=False)
    assert str(runs["A"]) in str(exc.value)
    assert _stamp(runs["A"]) == before


def test_resume_finished_run_with_more_epochs_extends_it(runs) -> None:
    run = _copy(runs["A"], "extended")
    before = _log_arrays(run)
    # restating non-resumable settings with their stored values is no change
    result = train({"epochs": 5, "method": "scn", "noise": 0.3}, resume=run, progress=False)
    assert (result.status, result.epochs_done) == ("finished", 5)
    got = _log_arrays(run)
    assert got["n"] == 5 and got["status"] == "finished"
    assert np.array_equal(got["label"][:4], before["label"])
    assert np.array_equal(got["pred"][:4], before["pred"])
    assert np.array_equal(got["relabels"][:len(before["relabels"])], before["relabels"])
    assert (got["relabels"]["epoch"][len(before["relabels"]):] == 4).all()
    assert got["embedding_epochs"] == [0, 1, 2, 3, 4]
    assert _model(run)[0] == 5
    assert "epochs = 5" in (run / "config.toml").read_text()


@pytest.mark.parametrize("epochs", [None, 4, 3])
def test_resume_finished_run_without_more_epochs_does_nothing(runs, epochs) -> None:
    before = _stamp(runs["A"])
    lines: list[str] = []
    result = train(None if epochs is None else {"epochs": epochs}, resume=runs["A"], progress=False,
                   log=lines.append)
    assert (result.status, result.epochs_done) == ("finished", 4)
    said = [ln for ln in lines if "already trained 4 epochs" in ln]
    assert len(said) == 1, lines
    assert str(runs["A"]) in said[0] and "--epochs" in said[0]
    assert _stamp(runs["A"]) == before


def test_a_run_that_drops_its_optimizer_is_smaller_and_cannot_be_extended(runs, tmp_path: Path) -> None:
    """keep_optimizer off: the finished run's checkpoint holds the same model as a run that
    kept its optimiser, at about a third of the size; extending it is refused without
    touching a file, and asking for the epochs it has does nothing."""
    slim = tmp_path / "slim"
    result = train({**BASE, "keep_optimizer": False, "out": str(slim)}, progress=False)
    assert (result.status, result.epochs_done) == ("finished", 4)
    ckpt, kept = slim / "checkpoints" / "last.pt", runs["A"] / "checkpoints" / "last.pt"
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    assert "optimizer" not in state and "scheduler" not in state
    (epoch, model), (kept_epoch, kept_model) = _model(slim), _model(runs["A"])
    assert epoch == kept_epoch == 4 and model.keys() == kept_model.keys()
    assert all(torch.equal(model[k], kept_model[k]) for k in model)
    assert ckpt.stat().st_size < 0.4 * kept.stat().st_size

    before = _stamp(slim)
    with pytest.raises(RunDirError, match="without optimiser state.*cannot be extended"):
        train({"epochs": 5}, resume=slim, progress=False)
    assert _stamp(slim) == before
    again = train(None, resume=slim, progress=False, log=lambda line: None)
    assert (again.status, again.epochs_done) == ("finished", 4)


def test_resume_needs_a_run(tmp_path: Path) -> None:
    with pytest.raises(RunDirError, match="no run to resume"):
        train({"epochs": 4}, resume=tmp_path, progress=False)


def test_resume_of_a_run_killed_at_its_very_end_marks_it_finished(runs) -> None:
    run = _copy(runs["A"], "killed-at-end")
    with h5py.File(run / "run.h5", "r+") as f:  # the state kill -9 leaves between the last
        f["status"][0] = 0                       # checkpoint and writer.close("finished")
    result = train(None, resume=run, progress=False, log=lambda line: None)
    assert result.status == "finished"
    with RunLogReader(run) as log:
        assert log.status == "finished"


def _faces(root: Path) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", 4), ("test", 2)):
        for cls in ("anger", "happy", "sad"):
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(root / split / cls / f"{i}.png")
    return root


@pytest.fixture()
def faces_run(tmp_path: Path, _isolated_cache) -> tuple[Path, Path]:
    data = _faces(tmp_path / "faces")
    run = tmp_path / "run"
    train({"dataset": "imagefolder", "data": str(data), "method": "scn", "epochs": 1, "image_size": 16,
           "batch_size": 4, "workers": 0, "device": "cpu", "out": str(run)}, progress=False)
    return data, run


def test_resume_refuses_changed_data(faces_run) -> None:
    data, run = faces_run
    (data / "train" / "sad" / "1.png").rename(data / "train" / "happy" / "9.png")  # a label changed
    before = _stamp(run)
    with pytest.raises(RunDirError, match="data set changed"):
        train({"epochs": 2}, resume=run, progress=False, log=lambda line: None)
    assert _stamp(run) == before


def test_resume_after_an_image_became_unreadable(faces_run) -> None:
    from relabscope.errors import RelabscopeError

    data, run = faces_run
    (data / "train" / "sad" / "2.png").write_bytes(b"not an image any more")
    with pytest.raises(RelabscopeError, match="unreadable|changed"):
        train({"epochs": 2}, resume=run, progress=False, log=lambda line: None)


def test_the_demo_resumes_an_unfinished_run_instead_of_replacing_it(tiny_runs, tmp_path, monkeypatch) -> None:
    """``relabscope demo`` used to train an unfinished run folder again with --overwrite,
    deleting its committed epochs; it resumes it now."""
    from relabscope import demo

    run_dir = tmp_path / "demo" / "scn-20"
    shutil.copytree(tiny_runs["scn"], run_dir)
    with h5py.File(run_dir / "run.h5", "r+") as f:
        f["status"][0] = 3  # interrupted
    calls: list[dict] = []
    monkeypatch.setattr(demo, "train", lambda config, **kw: calls.append({"config": config, **kw}))
    monkeypatch.setattr(demo, "DEMO_METHODS", ("scn",))
    demo.demo_runs(tmp_path / "demo", noise=0.2, progress=False, log=lambda line: None)
    assert len(calls) == 1 and calls[0]["resume"] == run_dir and not calls[0].get("overwrite")
