"""Reading run logs, also while a run is still writing them or after it was killed.

The reader opens logs in SWMR read mode, which works for a live writer, a finished run and
a writer killed with ``kill -9`` alike, and only ever shows committed epochs: rows beyond
``len(epochs/done)`` may be half written and are never returned. Everything here returns
plain numpy arrays; the analysis layer builds on this.
"""

from __future__ import annotations

import json
import sys
import threading
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, TypeVar

import h5py
import numpy as np

from relabscope.errors import RunDirError
from relabscope.runlog import schema

_T = TypeVar("_T")


def find_log(path: str | Path) -> Path:
    """The log file for ``path``: the file itself or ``run.h5`` inside a run directory."""
    path = Path(path)
    log = path / schema.LOG_NAME if path.is_dir() else path
    if log.is_file():
        return log
    if log.with_name(log.name + schema.PARTIAL_SUFFIX).exists():
        raise RunDirError(f"{log}: the run stopped before its log was created")
    raise RunDirError(f"{log}: run log not found")


def _refuse_truncated(log: Path) -> None:
    """Refuse a truncated log before opening it in SWMR mode: HDF5 skips its end-of-file
    check in SWMR mode and then retries failing metadata reads for minutes, which would
    hang the first read. A plain read-only open finds truncation at once. It fails for
    other reasons too (the flags of a writer that is still running, or was killed): those
    are the SWMR open's to judge, so only truncation is reported here."""
    try:
        with h5py.File(log, "r", locking=False):
            pass
    except OSError as exc:
        text = str(exc)
        if "truncated file" in text:
            detail = text[text.index("truncated file"):].rstrip(")")
            raise RunDirError(f"{log}: not a readable HDF5 run log ({detail})") from None


class _SharedFile:
    """One SWMR handle per log file per process, shared by every reader of that file.

    HDF5's dataset refresh is only safe with one open handle of the dataset: refreshing
    while another handle of it is open (a second reader of the same file in this process,
    or a handle another thread still holds) makes reads return rows of the wrong epoch
    (measured with h5py 3.16 / HDF5 2.0: 175 of 200 reads wrong with two handles, none
    with one). So readers of one file (keyed by device and inode: hard links and other
    paths to it included) share one ``h5py.File``, one handle per dataset and one lock
    around every refresh-and-read; the dashboard serves several requests at once and a
    notebook may open the same run twice.
    """

    _open: dict[tuple[int, int], "_SharedFile"] = {}
    _registry_lock = threading.Lock()

    def __init__(self, key: tuple[int, int], file: h5py.File):
        self.key = key
        self.file = file
        self.lock = threading.RLock()
        self.users = 0
        self._datasets: dict[str, h5py.Dataset] = {}

    @classmethod
    def acquire(cls, path: Path) -> "_SharedFile":
        stat = path.stat()
        key = (stat.st_dev, stat.st_ino)
        with cls._registry_lock:
            shared = cls._open.get(key)
            if shared is None:
                try:
                    file = h5py.File(path, "r", libver="latest", swmr=True)
                except OSError as exc:
                    raise RunDirError(f"{path}: not a readable HDF5 run log ({exc})") from None
                shared = cls._open[key] = cls(key, file)
            shared.users += 1
            return shared

    def release(self) -> None:
        with self._registry_lock:
            self.users -= 1
            if self.users == 0:
                del self._open[self.key]
                with self.lock:
                    self._datasets.clear()
                    self.file.close()

    def dataset(self, name: str) -> h5py.Dataset:
        """The process's one handle of ``name`` (call with ``lock`` held)."""
        ds = self._datasets.get(name)
        if ds is None:
            ds = self._datasets[name] = self.file[name]
        return ds


class RunLogReader:
    """Read-only access to one run log: plain numpy arrays, no analysis (that is
    :class:`relabscope.Run`'s). Cheap to open, reads lazily, and shows only committed
    epochs, so it reads a run that is still training, or was killed, as safely as a
    finished one.

    Args:
        path: the run directory, or its ``run.h5``.

    Raises:
        RunDirError: no run log there, a truncated or foreign file, or a log written by a
            newer relabscope.

    Example:
        >>> import tempfile, relabscope as rs
        >>> log = rs.RunLogReader(rs.example_run(tempfile.mkdtemp() + "/example"))
        >>> log.num_epochs, log.class_names
        (5, ['neutral', 'happiness', 'sadness', 'anger'])
        >>> log.epoch_array("label").shape  # (epochs, samples): the label each sample trained on
        (5, 80)
        >>> log.epoch_array("distance", -1).shape  # (samples, classes): distance to every class mean
        (80, 4)
        >>> log.relabels().dtype.names
        ('epoch', 'step', 'sample', 'old', 'new', 'p_old', 'p_new')
        >>> log.close()
    """

    def __init__(self, path: str | Path):
        self.path = find_log(path)
        _refuse_truncated(self.path)
        self._shared = _SharedFile.acquire(self.path)
        self._lock = self._shared.lock
        self._file = self._shared.file
        self._closed = False
        fmt = self._file.attrs.get("format")
        if fmt != schema.FORMAT:
            self.close()
            raise RunDirError(f"{self.path}: not a relabscope run log")
        version = int(self._file.attrs["schema_version"])
        if version > schema.SCHEMA_VERSION:
            self.close()
            raise RunDirError(
                f"{self.path}: written with run-log schema {version}, this relabscope reads "
                f"up to {schema.SCHEMA_VERSION}; upgrade relabscope"
            )

    # ------------------------------------------------------------------ metadata
    @cached_property
    def meta(self) -> dict[str, Any]:
        """The ``meta`` group's attributes: data set, method, versions, device, sample counts."""
        with self._lock:
            return {k: _plain(v) for k, v in self._file["meta"].attrs.items()}

    @cached_property
    def config(self) -> dict[str, Any]:
        """The resolved training settings the run was started (or last resumed) with."""
        config: dict[str, Any] = json.loads(self._read("meta/config", lambda ds: ds[()], refresh=False))
        return config

    @cached_property
    def class_names(self) -> list[str]:
        """Class names by class id."""
        return [_text(s) for s in self._read("meta/class_names", lambda ds: ds[:], refresh=False)]

    @cached_property
    def skipped(self) -> list[str]:
        """Keys of the unreadable samples the run left out."""
        return [_text(s) for s in self._read("meta/skipped", lambda ds: ds[:], refresh=False)]

    @cached_property
    def fields(self) -> list[str]:
        """The method's own per-sample quantities (``epochs/field/<name>``)."""
        return list(json.loads(self.meta["fields"]))

    @cached_property
    def guards(self) -> list[str]:
        """The relabel guards the run switched on, in the order they applied (empty for a
        run without guards and for logs written before guards existed)."""
        return list(json.loads(self.meta.get("guards", "[]")))

    @property
    def has_centers(self) -> bool:
        """Whether the log holds learned centers ("-C" methods)."""
        with self._lock:
            return "center" in self._file["epochs"]

    @cached_property
    def samples(self) -> dict[str, np.ndarray]:
        """Per-sample columns: key, split, given_label, clean_label and any extras."""
        with self._lock:
            extras = list(self._file["samples"].get("extra", {}))
            out = {
                "key": np.array([_text(k) for k in self._shared.dataset("samples/key")[:]], dtype=np.object_),
                "split": self._shared.dataset("samples/split")[:],
                "given_label": self._shared.dataset("samples/given_label")[:],
                "clean_label": self._shared.dataset("samples/clean_label")[:],
            }
            for name in extras:
                out[name] = self._shared.dataset("samples/extra/" + name)[:]
        return out

    @property
    def status(self) -> str:
        """"running", "finished", "diverged" or "interrupted"."""
        code = int(self._read("status", lambda ds: ds[0]))
        return next(name for name, value in schema.STATUS.items() if value == code)

    # ------------------------------------------------------------------ epochs
    @property
    def num_epochs(self) -> int:
        """Committed epochs; grows while the run is being written."""
        return int(self._read("epochs/done", lambda ds: ds.shape[0]))

    def epoch_array(self, name: str, epochs: int | slice | None = None) -> np.ndarray:
        """Rows of the per-epoch dataset ``epochs/<name>`` (docs/run-log.md lists them), for
        committed epochs only.

        Args:
            name: e.g. "label", "prob", "distance", "test_acc", "field/weight".
            epochs: None for all, one epoch (negative counts from the last committed one)
                or a slice.

        Returns:
            ``(epochs, ...)``, or one epoch's row (a numpy scalar for per-epoch numbers).

        Raises:
            IndexError: the epoch is not committed.
        """
        n = self.num_epochs
        if epochs is None:
            return self._read("epochs/" + name, lambda ds: ds[:n])
        if isinstance(epochs, slice):
            if epochs.step:
                rows: np.ndarray = self._read("epochs/" + name, lambda ds: ds[:n])
                return rows[epochs]
            return self._read("epochs/" + name, lambda ds: ds[slice(*epochs.indices(n))])
        e = epochs + n if epochs < 0 else epochs
        if not 0 <= e < n:
            raise IndexError(f"epoch {epochs} out of range: {n} committed epochs")
        return self._read("epochs/" + name, lambda ds: ds[e])

    def sample_array(self, name: str, sample: int) -> np.ndarray:
        """One sample's column of ``epochs/<name>`` over the committed epochs, read without
        the rest (the datasets are chunked by epoch and uncompressed).

        Args:
            name: a per-sample dataset, e.g. "prob", "distance", "field/weight".
            sample: the sample id.

        Returns:
            ``(epochs, ...)``.

        Raises:
            IndexError: no such sample.
        """
        n = self.num_epochs

        def column(ds: h5py.Dataset) -> np.ndarray:
            if not 0 <= sample < ds.shape[1]:
                raise IndexError(f"sample {sample} out of range: the log has {ds.shape[1]} samples")
            values: np.ndarray = ds[:n, sample]
            return values

        return self._read("epochs/" + name, column)

    def relabels(self) -> np.ndarray:
        """Every relabel of the committed epochs, in the order they happened.

        Returns:
            A structured array with fields epoch, step, sample, old, new, p_old, p_new.
        """
        n = self.num_epochs
        if n == 0:
            return np.empty(0, schema.RELABEL_DTYPE)
        end = int(self.epoch_array("relabel_end", n - 1))
        return self._read("relabels", lambda ds: ds[:end])

    def vetoes(self) -> np.ndarray | None:
        """The relabels each guard refused, per committed epoch and class the relabel would
        have left.

        Returns:
            ``(epochs, guards, classes)`` int32, guards in :attr:`guards`' order (-1: not
            recorded for that epoch); None when the log records no vetoes (no guard was on,
            or it predates guards), which is not the same as zero vetoes.
        """
        with self._lock:
            if "vetoed" not in self._file["epochs"]:
                return None
        return self.epoch_array("vetoed")

    def embedding_epochs(self) -> np.ndarray:
        """The committed epochs whose embeddings the log kept.

        Returns:
            0-based epochs, ascending.
        """
        which: np.ndarray = self._read("embeddings/epoch", lambda ds: ds[:])
        return which[which < self.num_epochs]

    def embeddings(self, epoch: int = -1) -> np.ndarray:
        """The embeddings kept at an epoch.

        Args:
            epoch: the epoch (negative counts from the last committed one).

        Returns:
            ``(samples, D)`` float16.

        Raises:
            KeyError: no embeddings were kept for that epoch.
        """
        n = self.num_epochs
        e = epoch + n if epoch < 0 else epoch
        which = list(self.embedding_epochs())
        if e not in which:
            raise KeyError(f"no embeddings kept for epoch {epoch}; kept: {which}")
        return self._read("embeddings/data", lambda ds: ds[which.index(e)])

    def _read(self, name: str, select: Callable[[h5py.Dataset], _T], *, refresh: bool = True) -> _T:
        """``select(dataset)`` on the refreshed dataset, one thread at a time, through the
        one handle per dataset that this process keeps (see ``_SharedFile``)."""
        with self._lock:
            ds = self._shared.dataset(name)
            if refresh:
                ds.refresh()
            return select(ds)

    def close(self) -> None:
        """Give the file handle back (also on leaving a ``with`` block); idempotent."""
        if not self._closed:
            self._closed = True
            self._shared.release()

    def __del__(self) -> None:
        """A reader dropped without close() gives its share back; not at interpreter exit,
        when h5py's own modules may already be torn down (closing then raised TypeError
        from inside h5py), and the process's exit closes the file anyway."""
        if getattr(self, "_shared", None) is not None and not sys.is_finalizing():
            self.close()

    def __enter__(self) -> "RunLogReader":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value
