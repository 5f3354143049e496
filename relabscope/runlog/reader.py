"""Reading run logs, also while a run is still writing them or after it was killed.

The reader opens logs in SWMR read mode, which works for a live writer, a finished run and
a writer killed with ``kill -9`` alike, and only ever shows committed epochs: rows beyond
``len(epochs/done)`` may be half written and are never returned. Everything here returns
plain numpy arrays; the analysis layer builds on this.
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from relabscope.errors import RunDirError
from relabscope.runlog import schema


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


class RunLogReader:
    """Read-only access to one run log; cheap to open, reads lazily."""

    def __init__(self, path: str | Path):
        self.path = find_log(path)
        _refuse_truncated(self.path)
        try:
            self._file = h5py.File(self.path, "r", libver="latest", swmr=True)
        except OSError as exc:
            raise RunDirError(f"{self.path}: not a readable HDF5 run log ({exc})") from None
        fmt = self._file.attrs.get("format")
        if fmt != schema.FORMAT:
            self._file.close()
            raise RunDirError(f"{self.path}: not a relabscope run log")
        version = int(self._file.attrs["schema_version"])
        if version > schema.SCHEMA_VERSION:
            self._file.close()
            raise RunDirError(
                f"{self.path}: written with run-log schema {version}, this relabscope reads "
                f"up to {schema.SCHEMA_VERSION}; upgrade relabscope"
            )

    # ------------------------------------------------------------------ metadata
    @cached_property
    def meta(self) -> dict[str, Any]:
        return {k: _plain(v) for k, v in self._file["meta"].attrs.items()}

    @cached_property
    def config(self) -> dict[str, Any]:
        return json.loads(self._file["meta/config"][()])

    @cached_property
    def class_names(self) -> list[str]:
        return [_text(s) for s in self._file["meta/class_names"][:]]

    @cached_property
    def skipped(self) -> list[str]:
        return [_text(s) for s in self._file["meta/skipped"][:]]

    @cached_property
    def fields(self) -> list[str]:
        return list(json.loads(self.meta["fields"]))

    @property
    def has_centers(self) -> bool:
        return "center" in self._file["epochs"]

    @cached_property
    def samples(self) -> dict[str, np.ndarray]:
        """Per-sample columns: key, split, given_label, clean_label and any extras."""
        s = self._file["samples"]
        out = {
            "key": np.array([_text(k) for k in s["key"][:]], dtype=object),
            "split": s["split"][:],
            "given_label": s["given_label"][:],
            "clean_label": s["clean_label"][:],
        }
        for name, ds in s.get("extra", {}).items():
            out[name] = ds[:]
        return out

    @property
    def status(self) -> str:
        ds = self._file["status"]
        ds.refresh()
        code = int(ds[0])
        return next(name for name, value in schema.STATUS.items() if value == code)

    # ------------------------------------------------------------------ epochs
    @property
    def num_epochs(self) -> int:
        """Committed epochs; grows while the run is being written."""
        ds = self._file["epochs/done"]
        ds.refresh()
        return int(ds.shape[0])

    def epoch_array(self, name: str, epochs: int | slice | None = None) -> np.ndarray:
        """Rows of ``epochs/<name>`` for committed epochs (all, one, or a slice)."""
        n = self.num_epochs
        ds = self._file["epochs/" + name]
        ds.refresh()
        if epochs is None:
            return ds[:n]
        if isinstance(epochs, slice):
            return ds[:n][epochs] if epochs.step else ds[slice(*epochs.indices(n))]
        e = epochs + n if epochs < 0 else epochs
        if not 0 <= e < n:
            raise IndexError(f"epoch {epochs} out of range: {n} committed epochs")
        return ds[e]

    def sample_array(self, name: str, sample: int) -> np.ndarray:
        """One sample's column of ``epochs/<name>`` over the committed epochs, read without
        the rest (the datasets are chunked by epoch and uncompressed)."""
        n = self.num_epochs
        ds = self._file["epochs/" + name]
        ds.refresh()
        if not 0 <= sample < ds.shape[1]:
            raise IndexError(f"sample {sample} out of range: the log has {ds.shape[1]} samples")
        return ds[:n, sample]

    def relabels(self) -> np.ndarray:
        """Relabel events of committed epochs (structured: epoch, step, sample, old, new,
        p_old, p_new)."""
        n = self.num_epochs
        if n == 0:
            return np.empty(0, schema.RELABEL_DTYPE)
        end = int(self.epoch_array("relabel_end", n - 1))
        ds = self._file["relabels"]
        ds.refresh()
        return ds[:end]

    def embedding_epochs(self) -> np.ndarray:
        """Epochs (0-based) whose embeddings were kept, among committed epochs."""
        ds = self._file["embeddings/epoch"]
        ds.refresh()
        which = ds[:]
        return which[which < self.num_epochs]

    def embeddings(self, epoch: int = -1) -> np.ndarray:
        """The N x D float16 embeddings kept at ``epoch`` (negative counts from the last
        committed epoch)."""
        n = self.num_epochs
        e = epoch + n if epoch < 0 else epoch
        which = list(self.embedding_epochs())
        if e not in which:
            raise KeyError(f"no embeddings kept for epoch {epoch}; kept: {which}")
        ds = self._file["embeddings/data"]
        ds.refresh()
        return ds[which.index(e)]

    def close(self) -> None:
        self._file.close()

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
