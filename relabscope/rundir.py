"""Run directories: what one holds, who may write it, and what a resumed run may change.

A run directory holds ``run.h5`` (the log; ``run.h5.partial`` while its layout is being
written), ``config.toml`` (the resolved config), ``checkpoints/last.pt`` and ``.lock``.
While a run trains, ``.lock`` is locked (``flock``), so a second trainer, a resume or a
sweep process cannot write the same directory; the lock is released by the kernel when the
process dies, so a killed run never leaves a stale lock. These rules are read by training,
sweeps and the dashboard alike; this module needs no torch.

Data is sacred here: the run files are removed only by ``claim(overwrite=True)`` (the
user's ``--overwrite``) and by :func:`start_over`, which refuses a log holding committed
epochs unless the user said ``--restart``.

Locks need a filesystem whose ``flock`` works across the processes that share a directory:
local disks do; on NFS it depends on the mount (``local_lock``).
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import os
import shutil
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Mapping

from relabscope.config import INTRODUCED, RESUMABLE, SPECS, TrainConfig, read_run_config, validate
from relabscope.errors import RunDirError, RunLockedError
from relabscope.runlog.reader import RunLogReader
from relabscope.runlog.schema import LOG_NAME, PARTIAL_SUFFIX, RESUME_SUFFIX

CONFIG_NAME = "config.toml"
LOCK_NAME = ".lock"
CHECKPOINT_DIR = "checkpoints"
CHECKPOINT_NAME = "last.pt"
RUN_FILES = (LOG_NAME, LOG_NAME + PARTIAL_SUFFIX, LOG_NAME + RESUME_SUFFIX, CONFIG_NAME, CHECKPOINT_DIR, LOCK_NAME)


def checkpoint_path(run_dir: str | Path) -> Path:
    """``RUNDIR/checkpoints/last.pt``: the state after the last complete epoch."""
    return Path(run_dir) / CHECKPOINT_DIR / CHECKPOINT_NAME


def default_run_dir(cfg: TrainConfig) -> Path:
    """``runs/<method>-<dataset>-<timestamp>``: a fresh directory per run."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = Path("runs") / f"{cfg.method}-{cfg.dataset}-{stamp}"
    suffix = 1
    while path.exists():
        suffix += 1
        path = Path("runs") / f"{cfg.method}-{cfg.dataset}-{stamp}-{suffix}"
    return path


class RunDirLock:
    """An exclusive lock on a run directory for the duration of training."""

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / LOCK_NAME
        self._fh: IO[str] | None = None

    def __enter__(self) -> RunDirLock:
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

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        assert self._fh is not None
        fcntl.flock(self._fh, fcntl.LOCK_UN)
        self._fh.close()


def locked_elsewhere(run_dir: str | Path) -> bool:
    """Whether another process holds the lock of an existing run directory (a probe: the
    lock is released at once)."""
    try:
        with RunDirLock(run_dir):
            return False
    except RunLockedError:
        return True


def claim(run_dir: Path, overwrite: bool) -> bool:
    """Make ``run_dir`` ready for a new run: refuse a directory that already holds
    something, unless told to overwrite a run's files (and only those). Returns whether
    the directory is new (nothing of a run in it yet)."""
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"{run_dir}: exists and is not a directory")
    if not run_dir.exists() or all(p.name == LOCK_NAME for p in run_dir.iterdir()):
        run_dir.mkdir(parents=True, exist_ok=True)
        return True
    ours = [p for p in run_dir.iterdir() if p.name in RUN_FILES and p.name != LOCK_NAME]
    others = [p for p in run_dir.iterdir() if p.name not in RUN_FILES]
    if not overwrite:
        what = "holds a run" if ours else "is not empty"
        raise RunDirError(f"{run_dir}: out directory {what}; pass --resume {run_dir} to continue it or --overwrite "
                          "to replace it")
    if others:
        raise RunDirError(f"{run_dir}: --overwrite only replaces a run directory, and this one holds other files "
                          f"({others[0].name})")
    with RunDirLock(run_dir):
        remove_run_files(run_dir, keep_lock=True)
    return True


def remove_run_files(run_dir: Path, keep_lock: bool) -> None:
    """Delete a run's own files (log, config, checkpoints; the lock unless ``keep_lock``)."""
    for name in RUN_FILES:
        if keep_lock and name == LOCK_NAME:
            continue
        path = run_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def holds_run(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` holds a run to continue: its config.toml or its log."""
    return (Path(run_dir) / CONFIG_NAME).is_file() or (Path(run_dir) / LOG_NAME).is_file()


def stored_config(run_dir: str | Path) -> dict[str, Any]:
    """The settings the run in ``run_dir`` was trained with: its config.toml, or, when that
    is gone, the copy its log keeps (``meta/config``), settings it predates filled in.

    Raises:
        RunDirError: neither is there, or the log cannot be read.
    """
    run_dir = Path(run_dir)
    if (run_dir / CONFIG_NAME).is_file():
        return read_run_config(run_dir / CONFIG_NAME)
    if not (run_dir / LOG_NAME).is_file():
        raise RunDirError(f"{run_dir}: no run to resume (neither {CONFIG_NAME} nor {LOG_NAME} is there)")
    with RunLogReader(run_dir) as log:
        return {**INTRODUCED, **{k: v for k, v in log.config.items() if k in SPECS}}


def committed_epochs(run_dir: str | Path) -> int | None:
    """The epochs the log in ``run_dir`` committed: 0 without a log, None when it cannot
    be read (damaged, or not a run log)."""
    if not (Path(run_dir) / LOG_NAME).is_file():
        return 0
    try:
        with RunLogReader(run_dir) as log:
            return log.num_epochs
    except RunDirError:
        return None


def start_over(run_dir: Path, restart: bool) -> None:
    """Make a run that cannot continue from a checkpoint (there is none) train from its
    first epoch again in the same directory: its run files are removed, but only when its
    log holds no committed epoch or ``restart`` (``--restart``) says to replace it.

    Raises:
        RunDirError: the log holds committed epochs (or cannot be read) and ``restart`` is off.
    """
    held = committed_epochs(run_dir)
    if held != 0 and not restart:
        what = f"its log holds {held} committed epochs" if held is not None else \
            f"its log cannot be read (relabscope check {run_dir})"
        raise RunDirError(f"{run_dir}: {checkpoint_path(run_dir)} is missing and {what}: resuming would retrain "
                          f"from the first epoch and replace the log. Train into a new --out, or pass --restart "
                          "to replace this run")
    remove_run_files(run_dir, keep_lock=True)


def resume_config(run_dir: Path, overrides: TrainConfig | Mapping[str, Any] | None) -> TrainConfig:
    """The config a resumed run trains with: the stored one (:func:`stored_config`), with
    ``overrides`` of the RESUMABLE settings (where and how it runs, how long); any other
    change is refused in one line naming the setting."""
    stored = stored_config(run_dir)
    changes = {k.replace("-", "_"): v for k, v in
               (overrides.to_dict() if isinstance(overrides, TrainConfig) else dict(overrides or {})).items()}
    for name, value in changes.items():
        if name not in RESUMABLE and stored.get(name) != value:
            raise RunDirError(
                f"{run_dir}: cannot change {name} when resuming (run has {stored.get(name)!r}, asked {value!r})"
            )
    source = run_dir / CONFIG_NAME if (run_dir / CONFIG_NAME).is_file() else run_dir / LOG_NAME
    cfg = validate(TrainConfig(**{**stored, **changes}), str(source))
    cfg.out = str(run_dir)
    return cfg
