"""A training run end to end: run directory, data, method, trainer, hooks.

:func:`train` is what ``relabscope train`` calls, and what a notebook calls::

    import relabscope as rs
    result = rs.train({"method": "scn", "noise": 0.2, "epochs": 4, "out": "runs/scn"})

A run directory holds ``run.h5`` (the log), ``config.toml`` (the resolved config) and
``checkpoints/last.pt``. While a run trains, ``.lock`` in it is locked, so a second trainer
(or a resume) cannot write the same directory.
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import os
import platform
import shutil
import sys
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import torch

from relabscope.config import TrainConfig, read_run_config, resolve, validate, write_toml
from relabscope.data.pipeline import default_workers, load_images, prepare
from relabscope.errors import RelabscopeError, RunDirError, RunLockedError
from relabscope.methods import build_method
from relabscope.runlog.hook import RunLogHook
from relabscope.runlog.reader import RunLogReader
from relabscope.runlog.writer import RunLogWriter
from relabscope.runlog.schema import LOG_NAME, PARTIAL_SUFFIX
from relabscope.training import checkpoint
from relabscope.training.hooks import Hook, RunResult
from relabscope.training.loop import Trainer
from relabscope.training.progress import ProgressHook

CONFIG_NAME = "config.toml"
LOCK_NAME = ".lock"
RUN_FILES = (LOG_NAME, LOG_NAME + PARTIAL_SUFFIX, CONFIG_NAME, checkpoint.CHECKPOINT_DIR, LOCK_NAME)
# Settings that say where and how a run is computed, not what: a resumed run or a sweep
# may change them (a grid started on the CPU may finish on a GPU).
HOW_TO_RUN = frozenset({"device", "workers", "cache_gb", "keep_optimizer", "out"})
# Settings a resumed run may change: those, and how long it trains. Anything else must
# match the run being resumed.
RESUMABLE = HOW_TO_RUN | {"epochs"}


def train(
    config: TrainConfig | Mapping[str, Any] | None = None,
    *,
    resume: str | Path | None = None,
    overwrite: bool = False,
    progress: bool = True,
    hooks: Iterable[Hook] = (),
    log: Callable[[str], None] | None = None,
) -> RunResult:
    """Train one run and write its log; returns how it ended.

    ``config`` is a TrainConfig or a mapping of its fields (missing fields take the data
    set's preset). ``resume`` continues the run in that directory from its last
    checkpoint, taking its stored config; ``config`` may then only change RESUMABLE
    settings (e.g. more epochs). Raises RelabscopeError subclasses for bad input.
    """
    log = log or (lambda line: print(line, file=sys.stderr))
    created = False
    if resume is not None:
        run_dir, cfg = _resume_config(Path(resume), config)
    else:
        cfg = config if isinstance(config, TrainConfig) else resolve(dict(config or {}))
        cfg = validate(cfg)
        run_dir = Path(cfg.out) if cfg.out else default_run_dir(cfg)
        created = _claim_run_dir(run_dir, overwrite)
    try:
        with RunDirLock(run_dir):
            return _train_in(run_dir, cfg, resume is not None, progress, list(hooks), log)
    except RunLockedError:
        raise  # another process trains here: its files stay as they are
    except BaseException:
        if created and not (run_dir / CONFIG_NAME).exists():  # failed before the run began:
            (run_dir / LOCK_NAME).unlink(missing_ok=True)  # leave no half-made run behind
            if not any(run_dir.iterdir()):
                run_dir.rmdir()
        raise


def _train_in(run_dir: Path, cfg: TrainConfig, resuming: bool, progress: bool,
              hooks: list[Hook], log: Callable[[str], None]) -> RunResult:
    device = pick_device(cfg.device)
    if device.type == "cuda":  # fixed input sizes: let cuDNN pick kernels; TF32 for float32 matmuls
        torch.backends.cudnn.benchmark = True
        torch.set_float32_matmul_precision("high")
    if cfg.amp and device.type != "cuda":
        log("note: --amp only applies on CUDA; training in float32")
    state = None
    ckpt = checkpoint.path_in(run_dir)
    if resuming and ckpt.exists():
        state = checkpoint.load(ckpt)
    elif resuming:  # killed before its first epoch completed: start over
        _remove_run_files(run_dir, keep_lock=True)
    workers = default_workers() if cfg.workers is None else cfg.workers
    data = prepare(cfg)
    data, train_batches, test_batches = load_images(data, device, workers, cfg.cache_gb, log)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed % 2**32)
    method = build_method(cfg.method, len(data.class_names), cfg)
    if cfg.pretrained and state is None:
        log(method.load_pretrained(cfg.pretrained).summary())
    metadata = run_metadata(cfg, device, data.fingerprint, len(data.train), len(data.test))
    metadata["method_relabels"] = int(method.relabels)
    trainer = Trainer(cfg, data, train_batches, test_batches, method, device,
                      [RunLogHook(), *([ProgressHook()] if progress else []), *hooks], run_dir, metadata)
    if state is not None:
        if state.get("fingerprint") != data.fingerprint:
            raise RunDirError(f"{run_dir}: the data set changed since this run started; cannot resume")
        if state.get("samples") != data.samples_fingerprint():
            raise RunDirError(
                f"{run_dir}: the readable samples changed since this run started "
                "(an image became unreadable, or an unreadable one was fixed); cannot resume"
            )
        if not (run_dir / LOG_NAME).is_file():
            raise RunDirError(f"{run_dir / LOG_NAME}: run log missing; cannot resume")
        if "optimizer" not in state and state["epoch"] < cfg.epochs:
            raise RunDirError(f"{ckpt}: holds the final model without optimiser state (keep_optimizer was off); "
                              "the run cannot be extended")
        trainer.load_state_dict(state)
        if trainer.epoch >= cfg.epochs:
            _mark_finished(run_dir / LOG_NAME, trainer.epoch)
            log(f"{run_dir}: already trained {trainer.epoch} epochs; pass --epochs N (> {trainer.epoch}) to extend")
            return RunResult(run_dir, "finished", trainer.epoch)
    write_toml(cfg, run_dir / CONFIG_NAME)
    return trainer.fit()


def _mark_finished(log_path: Path, epochs: int) -> None:
    """A run killed after its last checkpoint but before closing its log still says
    "running"; resuming it has nothing left to train, so close the log properly."""
    with RunLogReader(log_path) as log:
        if log.status == "finished":
            return
    RunLogWriter.resume(log_path, keep_epochs=epochs).close("finished")


def default_run_dir(cfg: TrainConfig) -> Path:
    """``runs/<method>-<dataset>-<timestamp>``: a fresh directory per run."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = Path("runs") / f"{cfg.method}-{cfg.dataset}-{stamp}"
    suffix = 1
    while path.exists():
        suffix += 1
        path = Path("runs") / f"{cfg.method}-{cfg.dataset}-{stamp}-{suffix}"
    return path


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RelabscopeError("--device cuda: no CUDA device is available (use --device auto or cpu)")
    return torch.device(name)


def run_metadata(cfg: TrainConfig, device: torch.device, fingerprint: str, n_train: int, n_test: int) -> dict[str, Any]:
    """What the log records about the run's setting (h5py attribute values)."""
    import h5py
    import torchvision

    from relabscope import __version__

    return {
        "created": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "relabscope_version": __version__,
        "torch_version": torch.__version__,
        "torchvision_version": torchvision.__version__,
        "h5py_version": h5py.version.version,
        "hdf5_version": h5py.version.hdf5_version,
        "numpy_version": np.__version__,
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "seed": cfg.seed,
        "dataset": cfg.dataset,
        "method": cfg.method,
        "fingerprint": fingerprint,
        "num_train": n_train,
        "num_test": n_test,
        "embedding_pass": f"probe every {cfg.probe_every} epochs, else train" if cfg.probe_every else "train",
    }


class RunDirLock:
    """An exclusive lock on a run directory for the duration of training."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK_NAME
        self._fh = None

    def __enter__(self) -> "RunDirLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "a+")  # not "w": a failed attempt must not wipe the holder's pid
        try:
            fcntl.flock(self._fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._fh.close()
            raise RunLockedError(f"{self.path.parent}: another process is training into this run directory") from None
        self._fh.truncate(0)
        self._fh.write(str(os.getpid()))
        self._fh.flush()
        return self

    def __exit__(self, *exc: Any) -> None:
        assert self._fh is not None
        fcntl.flock(self._fh, fcntl.LOCK_UN)
        self._fh.close()


def locked_elsewhere(run_dir: Path) -> bool:
    """Whether another process holds the lock of an existing run directory (a probe: the
    lock is released at once)."""
    try:
        with RunDirLock(run_dir):
            return False
    except RunLockedError:
        return True


def _claim_run_dir(run_dir: Path, overwrite: bool) -> bool:
    """Refuse a directory that already holds something, unless told to overwrite our files.
    Returns whether the run directory is new (nothing of a run in it yet)."""
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"{run_dir}: exists and is not a directory")
    if not run_dir.exists() or all(p.name == LOCK_NAME for p in run_dir.iterdir()):
        run_dir.mkdir(parents=True, exist_ok=True)
        return True
    ours = [p for p in run_dir.iterdir() if p.name in RUN_FILES and p.name != LOCK_NAME]
    others = [p for p in run_dir.iterdir() if p.name not in RUN_FILES]
    if not overwrite:
        what = "holds a run" if ours else "is not empty"
        raise RunDirError(f"{run_dir}: out directory {what}; pass --resume {run_dir} to continue it or --overwrite to replace it")
    if others:
        raise RunDirError(f"{run_dir}: --overwrite only replaces a run directory, and this one holds other files ({others[0].name})")
    with RunDirLock(run_dir):
        _remove_run_files(run_dir, keep_lock=True)
    return True


def _remove_run_files(run_dir: Path, keep_lock: bool) -> None:
    for name in RUN_FILES:
        if keep_lock and name == LOCK_NAME:
            continue
        path = run_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def _resume_config(run_dir: Path, overrides: TrainConfig | Mapping[str, Any] | None) -> tuple[Path, TrainConfig]:
    if not (run_dir / CONFIG_NAME).is_file():
        raise RunDirError(f"{run_dir}: no run to resume ({CONFIG_NAME} not found)")
    stored = read_run_config(run_dir / CONFIG_NAME)
    if isinstance(overrides, TrainConfig):
        overrides = overrides.to_dict()
    changes = dict(overrides or {})
    for key, value in changes.items():
        name = key.replace("-", "_")
        if name not in RESUMABLE and stored.get(name) != value:
            raise RunDirError(
                f"{run_dir}: cannot change {name} when resuming (run has {stored.get(name)!r}, asked {value!r})"
            )
    cfg = validate(TrainConfig(**{**stored, **{k.replace('-', '_'): v for k, v in changes.items()}}), str(run_dir / CONFIG_NAME))
    cfg.out = str(run_dir)
    return run_dir, cfg
