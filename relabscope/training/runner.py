"""A training run end to end: run directory, data, method, trainer, hooks.

:func:`train` is what ``relabscope train`` calls, and what a notebook calls::

    import relabscope as rs
    result = rs.train({"method": "scn", "noise": 0.2, "epochs": 4, "out": "runs/scn"})

The run directory's rules (what it holds, its lock, what a resume may change) are
``relabscope.rundir``'s.
"""

from __future__ import annotations

import datetime as _dt
import platform
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import h5py
import numpy as np
import torch
import torchvision

from relabscope import __version__
from relabscope.config import TrainConfig, resolve, validate, write_toml
from relabscope.data.pipeline import default_workers, load_images, prepare
from relabscope.errors import RelabscopeError, RunDirError, RunLockedError
from relabscope.methods import METHODS, build_method
from relabscope.rundir import (CONFIG_NAME, LOCK_NAME, RunDirLock, checkpoint_path, claim, default_run_dir,
                               resume_config, start_over)
from relabscope.runlog.reader import RunLogReader
from relabscope.runlog.schema import LOG_NAME
from relabscope.runlog.writer import RunLogWriter
from relabscope.training import checkpoint
from relabscope.training.distributed import (SINGLE, RecordSender, World, check_batch, check_sync_bn,
                                             check_train_size, joined, main_first, on_main)
from relabscope.training.hooks import Hook, RunInfo, RunResult
from relabscope.training.log_hook import RunLogHook
from relabscope.training.loop import Trainer
from relabscope.training.progress import ProgressHook


def train(
    config: TrainConfig | Mapping[str, Any] | None = None,
    *,
    resume: str | Path | None = None,
    overwrite: bool = False,
    restart: bool = False,
    progress: bool = True,
    hooks: Iterable[Hook] = (),
    log: Callable[[str], None] | None = None,
) -> RunResult:
    """Train one run and write its run directory (log, config, checkpoint): what
    ``relabscope train`` does, from Python.

    Args:
        config: a TrainConfig, or a mapping of its fields (docs/settings.md); missing
            fields take the method's and the data set's presets.
        resume: continue the run in this directory from its last checkpoint, with its
            stored config; ``config`` may then only change RESUMABLE settings (e.g. more
            epochs).
        overwrite: replace the run files already in the output directory (a directory
            that holds anything else is still refused).
        restart: with ``resume``: train the run again from its first epoch with its stored
            settings, replacing its log and checkpoint (for a run whose checkpoint is
            missing or damaged: such a resume is otherwise refused, so a log with committed
            epochs is never replaced unasked).
        progress: show progress bars.
        hooks: more hooks (:class:`~relabscope.training.hooks.Hook`) to tell about the run.
        log: receives the run's messages, one line each (default: stderr).

    Returns:
        How the run ended: its directory, status ("finished", "diverged" or
        "interrupted"), epochs done, the last epoch's metrics and the seconds it took.

    Raises:
        RelabscopeError: bad settings, data or run directory (a subclass says which).

    Example:
        One epoch of SCN on 32 synthetic images of 16 x 16 pixels (a few seconds on a CPU):

        >>> import tempfile, relabscope as rs
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     result = rs.train({"method": "scn", "epochs": 1, "batch_size": 8, "image_size": 16,
        ...                        "dataset_options": {"num_train": 32, "num_test": 16, "size": 16},
        ...                        "workers": 0, "device": "cpu", "data": tmp + "/synthetic", "out": tmp + "/scn"},
        ...                       progress=False, log=lambda line: None)
        ...     with rs.open_run(result.run_dir) as run:
        ...         result.status, result.epochs_done, run.method, run.num_epochs
        ('finished', 1, 'scn', 1)
    """
    log = log or (lambda line: print(line, file=sys.stderr))
    if resume is not None:
        cfg = resume_config(Path(resume), config)
    else:
        cfg = validate(config if isinstance(config, TrainConfig) else resolve(dict(config or {})))
    with joined(cfg.device) as world:
        check_batch(world, cfg.batch_size)
        return _train_on(world, cfg, resume, overwrite, restart, progress, list(hooks), log)


def _train_on(world: World, cfg: TrainConfig, resume: str | Path | None, overwrite: bool, restart: bool,
              progress: bool, hooks: list[Hook], log: Callable[[str], None]) -> RunResult:
    """Claim and lock the run directory (rank 0: one writer, whatever the world), then train."""
    created = False

    def claim_dir() -> Path:
        nonlocal created
        if resume is not None:
            return Path(resume)
        run_dir = Path(cfg.out) if cfg.out else default_run_dir(cfg)
        created = claim(run_dir, overwrite)
        return run_dir

    run_dir = on_main(world, claim_dir)
    try:
        with RunDirLock(run_dir) if world.is_main else nullcontext():
            return _train_in(world, run_dir, cfg, resume is not None, restart, progress, hooks, log)
    except RunLockedError:
        raise  # another process trains here: its files stay as they are
    except BaseException:
        if created and not (run_dir / CONFIG_NAME).exists():  # failed before the run began:
            (run_dir / LOCK_NAME).unlink(missing_ok=True)  # leave no half-made run behind
            if not any(run_dir.iterdir()):
                run_dir.rmdir()
        raise


def _train_in(world: World, run_dir: Path, cfg: TrainConfig, resuming: bool, restart: bool, progress: bool,
              hooks: list[Hook], log: Callable[[str], None]) -> RunResult:
    device = pick_device(cfg.device, world)
    check_sync_bn(world, cfg.sync_bn, device, cfg.method)
    if device.type == "cuda":  # fixed input sizes: let cuDNN pick kernels; TF32 for float32 matmuls
        torch.backends.cudnn.benchmark = True
        torch.set_float32_matmul_precision("high")
    if cfg.amp and device.type != "cuda":
        log("note: --amp only applies on CUDA; training in float32")
    state = None
    ckpt = checkpoint_path(run_dir)
    if resuming and not (run_dir / CONFIG_NAME).is_file() and world.is_main:
        log(f"note: {run_dir / CONFIG_NAME} was missing: resuming with the settings the log keeps (meta/config)")
    if resuming and ckpt.exists() and not restart:
        state = _read_checkpoint(ckpt)
    elif resuming:  # no checkpoint (killed before its first epoch completed), or --restart
        on_main(world, lambda: start_over(run_dir, restart))
    workers = default_workers() if cfg.workers is None else cfg.workers
    data = main_first(world, lambda: prepare(cfg))  # rank 0 draws or caches the data set first
    data, train_batches, test_batches = load_images(data, device, workers, cfg.cache_gb, log)
    check_train_size(world, data.num_train)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed % 2**32)
    method = build_method(cfg.method, len(data.class_names), cfg)
    if cfg.pretrained and state is None:
        log(method.load_pretrained(cfg.pretrained).summary())
    metadata = run_metadata(cfg, device, data.fingerprint, len(data.train), len(data.test))
    metadata.update(method_relabels=int(METHODS[cfg.method].relabels), world_size=world.size)
    if data.noise_matrix_sha256:
        metadata["noise_matrix_sha256"] = data.noise_matrix_sha256
    if data.corrections is not None:
        metadata["corrections_sha256"] = data.corrections.sha256
        metadata["corrections_mismatched"] = data.corrections.mismatched  # left out (--corrections-mismatch skip)
        log(data.corrections.summary())
    own = [RunLogHook(world), ConfigFile(cfg), *([ProgressHook()] if progress else [])] if world.is_main \
        else [RecordSender(world)]
    trainer = Trainer(cfg, data, train_batches, test_batches, method, device, [*own, *hooks], run_dir, metadata,
                      world=world)
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
            if world.is_main:
                _mark_finished(run_dir / LOG_NAME, trainer.epoch)
                if not (run_dir / CONFIG_NAME).is_file():
                    write_toml(cfg, run_dir / CONFIG_NAME)
                log(f"{run_dir}: already trained {trainer.epoch} epochs; pass --epochs N (> {trainer.epoch}) to extend")
            return RunResult(run_dir, "finished", trainer.epoch)
    return trainer.fit()


class ConfigFile(Hook):
    """Writes the run's config.toml once the run log is open for writing (hooks start in
    order, after ``RunLogHook``): a resume that cannot open its log (damaged, no room for
    the copy) leaves the stored config as it was."""

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg

    def on_run_start(self, run: RunInfo) -> None:
        write_toml(self.cfg, run.run_dir / CONFIG_NAME)


def _read_checkpoint(path: Path) -> dict[str, Any]:
    """A run's checkpoint, or one line saying it cannot be read (a truncated or damaged file:
    torch's zip reader, pickle or the disk refused it). The log is left as it is."""
    try:
        return checkpoint.load(path)
    except Exception as exc:  # torch raises RuntimeError, pickle and zipfile their own
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RunDirError(f"{path}: cannot be read, damaged or cut short ({reason[:200]}); the log is kept: train "
                          f"into a new --out, or pass --restart to train this run again from its first epoch") from None


def _mark_finished(log_path: Path, epochs: int) -> None:
    """A run killed after its last checkpoint but before closing its log still says
    "running"; resuming it has nothing left to train, so close the log properly."""
    with RunLogReader(log_path) as log:
        if log.status == "finished":
            return
    RunLogWriter.resume(log_path, keep_epochs=epochs).close("finished")


def pick_device(name: str, world: World = SINGLE) -> torch.device:
    """The device ``--device`` names (``auto``: CUDA when there is one); under torchrun a
    rank on CUDA takes the GPU of its local rank."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise RelabscopeError("--device cuda: no CUDA device is available (use --device auto or cpu)")
    if name == "cuda" and world.distributed:
        return torch.device("cuda", world.local_rank)
    return torch.device(name)


def run_metadata(cfg: TrainConfig, device: torch.device, fingerprint: str, n_train: int, n_test: int) -> dict[str, Any]:
    """What the log records about the run's setting (h5py attribute values)."""
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
