"""``relabscope train`` end to end (in-process through click's CliRunner): what a good run
writes, how a config file and options combine, and that every bad input ends in one line
``relabscope: error: ...`` naming the file or problem, without a traceback. Also
unreadable images (skipped and recorded) and a diverging loss (stopped, last good epoch
kept)."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner, Result
from PIL import Image

from relabscope.cli import main
from relabscope.errors import DivergedError
from relabscope.runlog import RunLogReader
from relabscope.training.hooks import BatchRecord, Hook, RunInfo
from relabscope.training.runner import train
from tests.conftest import scratch

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

TINY = ["-O", "num_train=96", "-O", "num_test=32", "-O", "size=32",
        "--image-size", "16", "--batch-size", "16", "--workers", "0", "--device", "cpu"]
TINY_CFG = {"dataset_options": {"num_train": 96, "num_test": 32, "size": 32}, "image_size": 16,
            "batch_size": 16, "workers": 0, "device": "cpu"}


def _invoke(*args: str) -> Result:
    return CliRunner().invoke(main, ["train", *args])


def _ok(result: Result) -> None:
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"


def _one_error_line(result: Result, *fragments: str) -> str:
    """Exit code != 0, stderr is exactly one line ``relabscope: error: ...`` holding every
    fragment, nothing on stdout, and no exception escaped (no traceback)."""
    assert result.exit_code != 0, result.output
    assert isinstance(result.exception, SystemExit), f"uncaught {result.exception!r} (a traceback)"
    assert "Traceback" not in result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("relabscope: error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert result.stdout == ""
    return lines[0]


# ------------------------------------------------------------------ a good run


@pytest.fixture(scope="module")
def good_run(tmp_path_factory: pytest.TempPathFactory, _isolated_cache) -> tuple[Path, Result]:
    with scratch(tmp_path_factory, "cli") as root:
        out = root / "run"
        yield out, _invoke("--method", "scn", "--noise", "0.2", "--epochs", "2", *TINY, "--out", str(out))


def test_train_end_to_end(good_run) -> None:
    out, result = good_run
    _ok(result)
    first, second = result.stdout.splitlines()
    assert first.startswith("finished: 2 epochs")
    assert second == f"run log: {out / 'run.h5'}"
    assert "epoch 2/2" in result.stderr  # the epoch lines go to stderr
    assert (out / "config.toml").is_file()
    assert (out / "checkpoints" / "last.pt").is_file()
    with RunLogReader(out) as log:
        assert log.num_epochs == 2 and log.status == "finished"
        assert log.meta["num_train"] == 96 and log.meta["num_test"] == 32
        assert {k: v for k, v in log.config.items() if v is not None} == _config_toml(out)
    state = torch.load(out / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)
    assert state["epoch"] == 2


def _config_toml(run_dir: Path) -> dict:
    with open(run_dir / "config.toml", "rb") as fh:
        return tomllib.load(fh)


def test_config_file_then_options(tmp_path: Path) -> None:
    config = tmp_path / "exp.toml"
    config.write_text(
        'method = "scn"\n'
        "batch-size = 16\n"        # dashes ...
        "image_size = 16\n"        # ... or underscores
        "epochs = 3\n"
        "noise = 0.2\n"
        "relabel-epoch = 1\n"
        "seed = 5\n"
        "workers = 0\n"
        'device = "cpu"\n'
        "[dataset-options]\n"
        "num_train = 64\n"
        "num_test = 16\n"
        "size = 32\n"
    )
    out = tmp_path / "run"
    result = _invoke("--config", str(config), "--epochs", "1", "--noise", "0.1", "-q", "--out", str(out))
    _ok(result)
    stored = _config_toml(out)
    expected = {"method": "scn", "batch_size": 16, "image_size": 16, "epochs": 1, "noise": 0.1,
                "relabel_epoch": 1, "seed": 5, "workers": 0, "device": "cpu",
                "dataset_options": {"num_train": 64, "num_test": 16, "size": 32}}
    for key, value in expected.items():
        assert stored[key] == value, key
    assert stored["embed_every"] == 1  # the synthetic preset fills what neither gave
    with RunLogReader(out) as log:
        meta_config = log.config
        assert log.num_epochs == 1
        assert log.meta["num_train"] == 64
        assert log.meta["seed"] == 5 and log.meta["method"] == "scn"
    assert {k: v for k, v in meta_config.items() if v is not None} == stored
    assert set(meta_config) - set(stored) == {k for k, v in meta_config.items() if v is None}


# ------------------------------------------------------------------ bad input


def _write_png(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(path)


def _imagefolder(root: Path, classes=("anger", "happy", "sad"), n_train: int = 4, n_test: int = 2) -> Path:
    for c, cls in enumerate(classes):
        for i in range(n_train):
            _write_png(root / "train" / cls / f"{i:02d}.png", 100 * c + i)
        for i in range(n_test):
            _write_png(root / "test" / cls / f"{i:02d}.png", 1000 + 100 * c + i)
    return root


def test_missing_data_path(tmp_path: Path) -> None:
    missing = tmp_path / "nonexistent"
    result = _invoke("--dataset", "rafdb", "--data", str(missing), "--epochs", "1", "--out", str(tmp_path / "o"))
    _one_error_line(result, str(missing), "not found")


def test_wrong_layout(tmp_path: Path) -> None:
    data = tmp_path / "raf"
    data.mkdir()
    result = _invoke("--dataset", "rafdb", "--data", str(data), "--epochs", "1", "--out", str(tmp_path / "o"))
    _one_error_line(result, str(data / "EmoLabel" / "list_patition_label.txt"), "not found")


def test_label_out_of_range(tmp_path: Path) -> None:
    data = tmp_path / "raf"
    (data / "EmoLabel").mkdir(parents=True)
    (data / "Image" / "aligned").mkdir(parents=True)
    labels = data / "EmoLabel" / "list_patition_label.txt"
    labels.write_text("train_00001.jpg 1\ntrain_00002.jpg 4\ntrain_00003.jpg 9\ntest_0001.jpg 2\n")
    result = _invoke("--dataset", "rafdb", "--data", str(data), "--epochs", "1", "--out", str(tmp_path / "o"))
    _one_error_line(result, f"{labels}:3:", "label 9", "out of range")


def test_empty_split(tmp_path: Path) -> None:
    data = _imagefolder(tmp_path / "faces", n_test=0)
    for cls in ("anger", "happy", "sad"):
        (data / "test" / cls).mkdir(parents=True, exist_ok=True)
    result = _invoke("--dataset", "imagefolder", "--data", str(data), "--epochs", "1", "--image-size", "16",
                     "--batch-size", "4", "--workers", "0", "--out", str(tmp_path / "o"))
    _one_error_line(result, str(data), "test split", "empty")


def test_unknown_config_key(tmp_path: Path) -> None:
    config = tmp_path / "exp.toml"
    config.write_text("epochs = 1\nlearning_rate = 0.1\n")
    result = _invoke("--config", str(config), *TINY, "--out", str(tmp_path / "o"))
    _one_error_line(result, str(config), "learning_rate")


def test_config_file_missing_or_malformed(tmp_path: Path) -> None:
    _one_error_line(_invoke("--config", str(tmp_path / "none.toml"), "--out", str(tmp_path / "o1")),
                    str(tmp_path / "none.toml"), "not found")
    bad = tmp_path / "bad.toml"
    bad.write_text("epochs = = 3\n")
    _one_error_line(_invoke("--config", str(bad), "--out", str(tmp_path / "o2")), str(bad), "TOML")


def test_noise_out_of_range(tmp_path: Path) -> None:
    _one_error_line(_invoke("--noise", "1.5", *TINY, "--out", str(tmp_path / "o")), "noise", "1.5")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_device_cuda_without_cuda(tmp_path: Path) -> None:
    _one_error_line(_invoke(*TINY, "--device", "cuda", "--out", str(tmp_path / "o")),
                    "--device cuda", "no CUDA device")


def test_pretrained_missing(tmp_path: Path) -> None:
    missing = tmp_path / "resnet18.pth"
    result = _invoke("--pretrained", str(missing), "--epochs", "1", *TINY, "--out", str(tmp_path / "o"))
    _one_error_line(result, str(missing), "not found")


def test_pretrained_garbage(tmp_path: Path) -> None:
    garbage = tmp_path / "resnet18.pth"
    garbage.write_bytes(b"<html>404 not found</html>\n" * 10)
    result = _invoke("--pretrained", str(garbage), "--epochs", "1", *TINY, "--out", str(tmp_path / "o"))
    _one_error_line(result, str(garbage), "not a PyTorch weights file")


def test_noise_file_names_an_unknown_sample(tmp_path: Path) -> None:
    from relabscope.data import load_dataset

    keys = load_dataset("synthetic", None, num_train=96, num_test=32, size=32).train.keys
    noise = tmp_path / "0.3noise_train.txt"
    lines = [f"{k} {i % 7}" for i, k in enumerate(keys)]
    lines.insert(2, "synthetic/train/no_such_face 3")
    noise.write_text("\n".join(lines) + "\n")
    result = _invoke("--noise-file", str(noise), "--epochs", "1", *TINY, "--out", str(tmp_path / "o"))
    _one_error_line(result, f"{noise}:3:", "no_such_face", "not a sample")


def test_resume_with_config_is_refused(good_run, tmp_path: Path) -> None:
    config = tmp_path / "exp.toml"
    config.write_text("epochs = 3\n")
    _one_error_line(_invoke("--resume", str(good_run[0]), "--config", str(config)), "--config", "--resume")


def test_real_console_script_prints_one_line(tmp_path: Path) -> None:
    """The same contract outside CliRunner: the installed entry point, a real stderr."""
    script = Path(sys.executable).with_name("relabscope")
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "relabscope.cli"]
    proc = subprocess.run([*cmd, "train", "--noise", "1.5", "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, env={**os.environ}, timeout=120)
    assert proc.returncode != 0
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("relabscope: error: "), proc.stderr
    assert "noise" in lines[0] and "1.5" in lines[0]


def test_unknown_dataset_option(tmp_path: Path) -> None:
    _one_error_line(_invoke("-O", "bogus=1", *TINY, "--out", str(tmp_path / "o")), "bogus")


def test_failed_run_does_not_block_its_out_dir(tmp_path: Path) -> None:
    out = tmp_path / "o"
    _one_error_line(_invoke("--noise", "0.2", "--pretrained", str(tmp_path / "none.pth"), "--epochs", "1",
                            *TINY, "--out", str(out)), "not found")
    _ok(_invoke("--noise", "0.2", "--epochs", "1", *TINY, "-q", "--out", str(out)))


# ------------------------------------------------------------------ out directory


def test_out_dir_that_holds_a_run(good_run, tmp_path: Path) -> None:
    out = tmp_path / "run"
    shutil.copytree(good_run[0], out)
    before = (out / "run.h5").read_bytes()
    ckpt_before = (out / "checkpoints" / "last.pt").stat()
    config_before = (out / "config.toml").read_bytes()
    result = _invoke("--method", "scn", "--epochs", "1", *TINY, "--out", str(out))
    _one_error_line(result, str(out), "--resume", "--overwrite")
    assert (out / "run.h5").read_bytes() == before
    assert (out / "config.toml").read_bytes() == config_before
    ckpt_after = (out / "checkpoints" / "last.pt").stat()
    assert (ckpt_after.st_size, ckpt_after.st_mtime_ns) == (ckpt_before.st_size, ckpt_before.st_mtime_ns)

    result = _invoke("--method", "scn", "--epochs", "1", *TINY, "-q", "--overwrite", "--out", str(out))
    _ok(result)
    with RunLogReader(out) as log:
        assert log.num_epochs == 1 and log.status == "finished"
    assert _config_toml(out)["epochs"] == 1


def test_overwrite_refuses_a_folder_with_other_files(tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("precious")
    _one_error_line(_invoke("--epochs", "1", *TINY, "--out", str(out)), str(out), "not empty")
    _one_error_line(_invoke("--epochs", "1", *TINY, "--overwrite", "--out", str(out)), "notes.txt")
    assert (out / "notes.txt").read_text() == "precious"


# ------------------------------------------------------------------ unreadable image


def test_unreadable_image_is_skipped_and_recorded(tmp_path: Path) -> None:
    data = _imagefolder(tmp_path / "faces")
    bad = data / "train" / "happy" / "01.png"
    bad.write_bytes(b"this is not an image at all")
    out = tmp_path / "run"
    result = _invoke("--dataset", "imagefolder", "--data", str(data), "--method", "scn", "--epochs", "2",
                     "--image-size", "16", "--batch-size", "4", "--workers", "0", "--device", "cpu",
                     "--out", str(out))
    _ok(result)
    warnings = [ln for ln in result.stderr.splitlines() if ln.startswith("warning:")]
    assert len(warnings) == 1 and str(bad) in warnings[0], result.stderr
    assert "11 train / 6 test images" in result.stderr
    with RunLogReader(out) as log:
        assert log.num_epochs == 2 and log.status == "finished"
        assert log.meta["skipped_count"] == 1
        assert len(log.skipped) == 1 and str(bad) in log.skipped[0]
        keys = list(log.samples["key"])
        assert "train/happy/01.png" not in keys and "train/happy/00.png" in keys
        assert len(keys) == 17 and log.meta["num_train"] == 11
        assert (log.epoch_array("label")[:, log.samples["split"] == 0] >= 0).all()


# ------------------------------------------------------------------ divergence


class _PoisonOnEpoch(Hook):
    """Fills the method's first parameter with NaN after the first training batch of
    epoch ``epoch`` (0-based): the next batch's loss is NaN."""

    def __init__(self, epoch: int):
        self.epoch = epoch
        self.method = None
        self.fired = False

    def on_run_start(self, run: RunInfo) -> None:
        self.method = run.method

    def on_batch_end(self, record: BatchRecord) -> None:
        if record.phase == "train" and record.epoch == self.epoch and not self.fired:
            with torch.no_grad():
                next(self.method.parameters()).fill_(math.nan)
            self.fired = True


def test_nan_loss_stops_and_keeps_the_last_good_epoch(tmp_path: Path) -> None:
    out = tmp_path / "run"
    poison = _PoisonOnEpoch(1)
    with pytest.raises(DivergedError) as exc:
        train({**TINY_CFG, "method": "scn", "epochs": 3, "out": str(out)}, progress=False, hooks=[poison])
    assert poison.fired
    message = str(exc.value)
    assert "\n" not in message and "NaN" in message and "epoch 2" in message
    assert "(1 complete)" in message
    with RunLogReader(out) as log:
        assert log.num_epochs == 1
        assert log.status == "diverged"
        assert np.isfinite(log.epoch_array("loss", 0)).all()
    with h5py.File(out / "run.h5", "r") as f:  # closed cleanly: plain read mode works
        assert f["epochs/done"].shape == (1,)
    state = torch.load(out / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)
    assert state["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_nan_loss_through_the_cli(tmp_path: Path) -> None:
    """Adam at lr 1e12 moves every weight by ~1e12 in the first step: the next forward
    overflows (checked reliable over seeds and methods)."""
    out = tmp_path / "run"
    result = _invoke("--method", "scn", "--lr", "1e12", "--epochs", "2", *TINY, "-q", "--out", str(out))
    _one_error_line(result, str(out), "NaN or infinite", "epoch 1")
    assert result.exit_code == 1
    with RunLogReader(out) as log:
        assert log.num_epochs == 0 and log.status == "diverged"


def test_nan_loss_message_names_only_files_that_exist(tmp_path: Path) -> None:
    out = tmp_path / "run"
    line = _one_error_line(_invoke("--method", "scn", "--lr", "1e12", "--epochs", "2", *TINY, "-q",
                                   "--out", str(out)), "NaN")
    assert "last.pt" not in line or (out / "checkpoints" / "last.pt").exists()


class _PoisonAfterLastStep(Hook):
    """NaN in the weights right after the LAST training step of epoch ``epoch``, as an
    optimiser step on an overflowing gradient leaves them: that step's loss was finite."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_run_start(self, run: RunInfo) -> None:
        self.method, self.steps = run.method, run.steps_per_epoch

    def on_batch_end(self, record: BatchRecord) -> None:
        if record.phase == "train" and record.step == (self.epoch + 1) * self.steps - 1:
            with torch.no_grad():
                next(self.method.parameters()).fill_(math.nan)


def test_nan_weights_after_an_epochs_last_step_are_not_checkpointed(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with pytest.raises(DivergedError):
        train({**TINY_CFG, "method": "scn", "epochs": 3, "out": str(out)}, progress=False,
              hooks=[_PoisonAfterLastStep(1)])
    state = torch.load(out / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    with RunLogReader(out) as log:
        assert np.isfinite(log.epoch_array("loss")).all()


def test_python_dash_m_runs_the_cli() -> None:
    """``python -m relabscope`` is the CLI (for a checkout on PYTHONPATH, e.g. the GPU
    machine), under the program name ``relabscope``."""
    out = subprocess.run([sys.executable, "-m", "relabscope", "--help"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("Usage: relabscope ")
    assert "sweep" in out.stdout and "train" in out.stdout


def test_every_setting_is_an_option_of_train_and_sweep() -> None:
    """A new TrainConfig field is reachable from the command line (train: all of them;
    sweep: all but the grid's), under its own name."""
    from relabscope.config import FIELDS
    from relabscope.sweep.manifest import GRID_KEYS

    options = {name: {p.name for p in main.commands[name].params} for name in ("train", "sweep")}
    assert set(FIELDS) <= options["train"]
    assert set(FIELDS) - set(GRID_KEYS) - {"out"} <= options["sweep"]
    flags = {o for p in main.commands["train"].params for o in (*p.opts, *p.secondary_opts)}
    assert {"--keep-optimizer", "--drop-optimizer"} <= flags


def test_a_checkpoint_that_cannot_be_written_ends_in_one_line_and_the_run_resumes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Epoch 2's checkpoint write fails as on a full disk (torch's zip writer raises a
    RuntimeError): one line naming the file and what is kept, no partial file left, epoch
    1's checkpoint intact, and once writes work again the run resumes to its end."""
    real_save, calls = torch.save, []

    def disk_full_on_second_call(obj, f, *args, **kwargs):
        calls.append(f)
        if len(calls) == 2:
            f.write(b"PK\x03\x04 partial")  # the checkpoint's open temporary file
            raise RuntimeError("[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed "
                               "writing file data/3: file write failed\nframe #0: ...")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", disk_full_on_second_call)
    out, ckpt = tmp_path / "run", tmp_path / "run" / "checkpoints" / "last.pt"
    result = _invoke("--method", "scn", "--epochs", "3", *TINY, "-q", "--out", str(out))
    _one_error_line(result, f"{ckpt}: could not be written", "file write failed", "after epoch 1:",
                    "--resume")
    assert not ckpt.with_name("last.pt.tmp").exists()
    assert torch.load(ckpt, map_location="cpu", weights_only=False)["epoch"] == 1
    with RunLogReader(out) as log:
        assert log.status == "interrupted" and log.num_epochs >= 1  # it may be ahead of the checkpoint

    monkeypatch.undo()
    _ok(CliRunner().invoke(main, ["train", "--resume", str(out), "-q"]))
    with RunLogReader(out) as log:
        assert log.status == "finished" and log.num_epochs == 3


def test_an_out_folder_the_system_refuses_is_one_line(tmp_path: Path) -> None:
    """--out below a regular file: the operating system's refusal, in one line naming the path."""
    (tmp_path / "a-file").write_text("not a folder")
    out = tmp_path / "a-file" / "run"
    _one_error_line(_invoke("--method", "scn", "--epochs", "1", *TINY, "-q", "--out", str(out)),
                    str(tmp_path / "a-file"), "Not a directory")
    assert (tmp_path / "a-file").read_text() == "not a folder"


def test_train_maps_are_the_ones_the_dashboard_asks_for(tmp_path: Path, monkeypatch) -> None:
    from relabscope.analysis import projection
    from relabscope.analysis.run import Run

    out = tmp_path / "o"
    result = _invoke("--epochs", "1", *TINY, "--out", str(out), "-q", "--maps", "pca,tsne")
    _ok(result)
    assert "map: tsne of epoch 0 ready" in result.stderr

    def recomputed(*args, **kwargs):
        raise AssertionError("the map was computed again")

    monkeypatch.setattr(projection, "project", recomputed)
    with Run(out) as run:  # the dashboard's call (embedding_map.projection): epoch as a number, its points
        for method in ("pca", "tsne"):
            assert len(run.project(method=method, epoch=0, classes=None, max_points=projection.MAP_POINTS)) == 96


def test_train_maps_unknown_is_one_line(tmp_path: Path) -> None:
    _one_error_line(_invoke(*TINY, "--maps", "mds", "--out", str(tmp_path / "o")), "--maps", "mds")
    assert not (tmp_path / "o").exists()  # refused before training


def test_serve_and_report_images_options_fail_in_one_line(tmp_path: Path) -> None:
    """A wrong --images stops the command before a server starts or a report is written."""
    (tmp_path / "runs").mkdir()
    for args, fragments in [
        (["serve", str(tmp_path / "runs"), "--images", str(tmp_path / "nope")], ("nope", "no such image folder")),
        (["serve", str(tmp_path / "runs"), "--images", str(tmp_path), "--images", str(tmp_path)],
         ("--images", "given twice")),
        (["serve", str(tmp_path / "runs"), "--images", f"ghost={tmp_path}"], ("images for run 'ghost'", "no such run")),
        (["report", "a", "b", "--out", str(tmp_path / "r"), "--images", "x", "--images", "y", "--images", "z"],
         ("--images", "one per run")),
    ]:
        _one_error_line(CliRunner().invoke(main, args), *fragments)
