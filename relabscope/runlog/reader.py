"""Reading run logs, also while a run is still writing them or after it was killed.

The reader opens logs in SWMR read mode, which works for a live writer, a finished run and
a writer killed with ``kill -9`` alike, and only ever shows committed epochs: rows beyond
``len(epochs/done)`` may be half written and are never returned. Everything here returns
plain numpy arrays; the analysis layer builds on this.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, TypeVar

import h5py
import numpy as np

from relabscope.errors import LogDamagedError, RunDirError
from relabscope.runlog import chunks, hdf5, schema

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
    #: re-entrant: a reader dropped without close() gives its share back from ``__del__``,
    #: which the garbage collector may run inside ``acquire`` on the same thread (seen: the
    #: dashboard opening one damaged log while the reader of another was collected, which
    #: hung every request behind a plain lock)
    _registry_lock = threading.RLock()

    def __init__(self, key: tuple[int, int], file: h5py.File):
        self.key = key
        self.file = file
        self.lock = threading.RLock()
        self.users = 0
        self.closed = False
        self._datasets: dict[str, Any] = {}

    @classmethod
    def acquire(cls, path: Path) -> "_SharedFile":
        with cls._registry_lock:
            key = _file_key(path)
            shared = cls._open.get(key)
            if shared is None:
                file = hdf5.open_log(path)
                fd = hdf5.vfd_handle(file)
                if fd is not None:  # the file opened, should the path have been swapped since the stat
                    st = os.fstat(fd)
                    key = (st.st_dev, st.st_ino)
                shared = cls._open.get(key)
                if shared is None:
                    shared = cls._open[key] = cls(key, file)
                else:
                    file.close()
            shared.users += 1
            return shared

    def release(self) -> None:
        with self._registry_lock:
            self.users -= 1
            if self.users == 0:
                del self._open[self.key]
                with self.lock:  # after any read in progress
                    self._datasets.clear()
                    self.closed = True
                    self.file.close()

    def dataset(self, name: str) -> Any:
        """The process's one handle of ``name``, a dataset or group (call with ``lock`` held)."""
        ds = self._datasets.get(name)
        if ds is None:
            ds = self._datasets[name] = self.file[name]
        return ds


def _file_key(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_dev, stat.st_ino


#: tries of a read HDF5 fails (see ``RunLogReader._read``)
_READ_ATTEMPTS = 3


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
        self._shared = _SharedFile.acquire(self.path)
        self._swap_lock = threading.Lock()
        self._closed = False
        #: how many times a resume replaced the file under this reader (caches key on it)
        self.generation = 0
        #: the first damage a read met (one line), or None: a server stops asking a damaged log
        self.damage: str | None = None

    # ------------------------------------------------------------------ metadata
    @cached_property
    def meta(self) -> dict[str, Any]:
        """The ``meta`` group's attributes: data set, method, versions, device, sample counts."""
        meta: dict[str, Any] = self._read("meta", lambda g: {k: _plain(v) for k, v in g.attrs.items()},
                                          refresh=False)
        return meta

    @cached_property
    def config(self) -> dict[str, Any]:
        """The resolved training settings the run was started (or last resumed) with."""
        config: dict[str, Any] = json.loads(self._texts("meta/config")[0])
        return config

    @cached_property
    def class_names(self) -> list[str]:
        """Class names by class id."""
        return self._texts("meta/class_names")

    @cached_property
    def skipped(self) -> list[str]:
        """Keys of the unreadable samples the run left out."""
        return self._texts("meta/skipped")

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
        return bool(self._read("epochs", lambda g: "center" in g, refresh=False))

    @cached_property
    def samples(self) -> dict[str, np.ndarray]:
        """Per-sample columns: key, split, given_label, clean_label and any extras."""
        extras: list[str] = self._read("samples", lambda g: list(g.get("extra", {})), refresh=False)
        out = {"key": np.array(self._texts("samples/key"), dtype=np.object_)}
        for name in ("split", "given_label", "clean_label", *(f"extra/{e}" for e in extras)):
            out[name.removeprefix("extra/")] = self._read("samples/" + name, lambda ds: ds[:], refresh=False)
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
            return self._read("epochs/" + name, lambda ds: _rows(ds, 0, n))
        if isinstance(epochs, slice):
            if epochs.step:
                rows: np.ndarray = self._read("epochs/" + name, lambda ds: _rows(ds, 0, n))
                return rows[epochs]
            start, stop, _ = epochs.indices(n)
            return self._read("epochs/" + name, lambda ds: _rows(ds, start, stop))
        e = epochs + n if epochs < 0 else epochs
        if not 0 <= e < n:
            raise IndexError(f"epoch {epochs} out of range: {n} committed epochs")
        return self._read("epochs/" + name, lambda ds: _rows(ds, e, e + 1)[0])

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
        if not self._read("epochs", lambda g: "vetoed" in g, refresh=False):
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
        row = which.index(e)
        return self._read("embeddings/data", lambda ds: _rows(ds, row, row + 1)[0])

    def touch(self) -> None:
        """Read one value of the last committed row of every per-epoch dataset: a damaged
        chunk index (which would fail every read of its dataset) is found here, at the cost
        of one chunk per dataset, not when a page first asks for the numbers.

        Raises:
            LogDamagedError: a dataset cannot be read.
        """
        n = self.num_epochs
        if n == 0:
            return
        names: list[str] = []
        self._read("epochs", lambda g: g.visititems(
            lambda name, obj: names.append("epochs/" + name) if isinstance(obj, h5py.Dataset) else None), refresh=False)
        for name in names:
            self._read(name, lambda ds: ds[(n - 1,) + (0,) * (ds.ndim - 1)] if ds.shape[0] >= n else None)

    def _read(self, name: str, select: Callable[[Any], _T], *, refresh: bool = True) -> _T:
        """``select(dataset)`` on the refreshed dataset (or group), one thread at a time,
        through the one handle per dataset that this process keeps (see ``_SharedFile``),
        in the file now at :attr:`path` (a resume swaps in a new one).

        A read that HDF5 fails is tried again twice: a chunk's checksum can fail while the
        writer rewrites that chunk (the per-epoch numbers of up to 1,024 epochs share one).
        A read that keeps failing is damage: one line says where.

        Raises:
            RunDirError: the data is damaged (which dataset, and which epoch for per-epoch
                data), or the log lacks the dataset.
        """
        failure: BaseException | None = None
        for attempt in range(_READ_ATTEMPTS):
            if attempt:
                time.sleep(0.05 * attempt)
            shared = self._current()
            with shared.lock:
                if shared.closed:  # a swap released it meanwhile: the next try reads the new file
                    continue
                try:
                    ds = shared.dataset(name)
                    if refresh:
                        ds.refresh()
                    return select(ds)
                except KeyError:
                    raise self._record(LogDamagedError(
                        f"{self.path}: the log has no {name}: it is incomplete or damaged "
                        f"(relabscope check {self.path.parent})")) from None
                except hdf5.READ_ERRORS as exc:  # a checksum, or an object header HDF5 cannot parse
                    failure = exc
        raise self._record(self._damaged(name, failure))

    def _texts(self, name: str) -> list[str]:
        """A string dataset, checked against the digest the writer stored (it covers the
        config, a contiguous string no filter checks, and the strings of schema-1 logs in
        HDF5's unchecksummed heap; logs written before digests are not checked)."""
        raw = self._read(name, lambda ds: ds[()], refresh=False)
        values = [schema.text(v) for v in np.atleast_1d(raw)]
        if schema.digest_mismatch(self.meta.get("digests", ""), name, values):
            raise self._record(LogDamagedError(f"{self.path}: damaged: {name} does not match its checksum "
                                               f"(relabscope check {self.path.parent})"))
        return values

    def _record(self, damage: LogDamagedError) -> LogDamagedError:
        if self.damage is None:
            self.damage = str(damage)
        return damage

    def _damaged(self, name: str, failure: BaseException | None) -> LogDamagedError:
        """The one-line error for a read that kept failing: the dataset, and for per-epoch
        data the first epoch whose row cannot be read."""
        where = ""
        if name.startswith("epochs/") or name == "embeddings/data":
            bad = self._first_unreadable_row(name)
            if bad is not None:
                where = f" at epoch {bad},"
        why = hdf5.describe(failure) if failure is not None else "it changed while being read"
        return LogDamagedError(f"{self.path}: damaged{where} dataset {name} ({why}); relabscope check "
                               f"{self.path.parent} lists what is intact")

    def _first_unreadable_row(self, name: str) -> int | None:
        """The epoch of the first committed row of ``name`` that cannot be read (for the
        kept embeddings, the epoch they were kept at), or None."""
        shared = self._current()
        with shared.lock:
            try:
                ds = shared.dataset(name)
                epochs = shared.dataset("embeddings/epoch")[:] if name == "embeddings/data" else \
                    np.arange(min(ds.shape[0], shared.dataset("epochs/done").shape[0]))
            except hdf5.HDF5_ERRORS:
                return None
            for row, epoch in enumerate(epochs[:ds.shape[0]]):
                try:
                    ds[row]
                except hdf5.READ_ERRORS:
                    return int(epoch)
        return None

    def _current(self) -> _SharedFile:
        """The shared handle of the file now at :attr:`path`. A resume replaces the log with
        a new file (``RunLogWriter.resume``); the reader then reads the new one, forgets what
        it cached of the old one and counts a new :attr:`generation`."""
        try:
            key = _file_key(self.path)
        except OSError:  # moved or deleted: keep reading the file this reader holds
            return self._shared
        if key == self._shared.key or self._closed:
            return self._shared
        with self._swap_lock:
            if key != self._shared.key:
                old, self._shared = self._shared, _SharedFile.acquire(self.path)
                for name in _CACHED:
                    self.__dict__.pop(name, None)
                self.generation += 1
                self.damage = None
                old.release()
        return self._shared

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


def _rows(ds: h5py.Dataset, start: int, stop: int) -> np.ndarray:
    """Rows ``start:stop`` of a per-epoch dataset: straight from its chunks, checksums
    checked (``runlog.chunks``: several times faster than HDF5's filter), or through h5py
    for any other layout."""
    fast = chunks.read_epochs(ds, start, stop)
    rows: np.ndarray = ds[start:stop] if fast is None else fast
    return rows


#: what a reader caches of its file (forgotten when a resume swaps the file)
_CACHED = [name for name, value in vars(RunLogReader).items() if isinstance(value, cached_property)]


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):  # a fixed-length string attribute (np.bytes_)
        return schema.text(value)
    if isinstance(value, np.generic):
        return value.item()
    return value
