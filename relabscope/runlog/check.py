"""Walking a run log to find what is damaged and which epochs are intact
(``relabscope check RUN``; ``RunLogWriter.resume`` reports with it).

Every read here is checked by a checksum (see ``runlog.layout``): HDF5's on its metadata
and, per chunk, fletcher32 on the data and a SHA-256 on the strings, so a damaged place
shows as a read that fails, never as a wrong number. Logs written before the checksums
existed can only show damage to HDF5's own structures.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from relabscope.errors import RunDirError
from relabscope.runlog import hdf5, layout, schema
from relabscope.runlog.reader import find_log


@dataclass(frozen=True)
class Damage:
    """One damaged place: a dataset (or the file), and the epoch whose row it is (None for
    data that is not per epoch)."""

    where: str
    epoch: int | None
    problem: str

    def __str__(self) -> str:
        at = f" at epoch {self.epoch}" if self.epoch is not None else ""
        return f"{self.where}{at}: {self.problem}"


@dataclass
class LogCheck:
    """What :func:`check_log` found.

    Attributes:
        path: the log.
        epochs: committed epochs (``len(epochs/done)``; 0 when the file cannot be opened).
        intact: how many leading epochs read without damage (0 when damage outside the
            epochs, e.g. in the samples table, leaves no epoch to trust).
        damage: every damaged place, epochs ascending.
        status: the run's status, when it could be read.
    """

    path: Path
    epochs: int = 0
    intact: int = 0
    damage: list[Damage] = field(default_factory=list)
    status: str | None = None

    @property
    def ok(self) -> bool:
        """Nothing damaged."""
        return not self.damage

    def intact_text(self) -> str:
        """``epochs 0-2 intact (3 of 12)``, or what stands for it."""
        if self.intact == 0:
            return "no epoch is intact"
        span = "epoch 0" if self.intact == 1 else f"epochs 0-{self.intact - 1}"
        return f"{span} intact ({self.intact} of {self.epochs})"

    def summary(self) -> str:
        """One line: the first damaged place and the intact epochs (or that it is intact)."""
        if self.ok:
            return f"{self.path}: intact, {self.epochs} committed epochs"
        more = f"; {len(self.damage)} damaged places (relabscope check {self.path.parent} lists them)" \
            if len(self.damage) > 1 else ""
        return f"{self.path}: damaged: {self.damage[0]}; {self.intact_text()}{more}"

    def report(self) -> str:
        """The full listing, one line per damaged place, for ``relabscope check``."""
        lines = [f"{self.path}: {self.epochs} committed epochs, status {self.status or 'unknown'}"]
        lines += [f"damaged: {d}" for d in self.damage]
        lines.append(self.intact_text() if self.damage else f"intact: every one of its {self.epochs} epochs")
        return "\n".join(lines)


def check_log(path: str | Path) -> LogCheck:
    """Read every committed row of a run log and say what could not be read.

    Args:
        path: a run directory or its ``run.h5``.

    Returns:
        What was found; ``ok`` when nothing is damaged.

    Raises:
        RunDirError: there is no log at ``path``.
    """
    log = find_log(path)
    result = LogCheck(log)
    try:
        f = hdf5.open_log(log)
    except RunDirError as exc:
        result.damage.append(Damage("file", None, str(exc).removeprefix(f"{log}: ")))
        return result
    with f:
        _walk(f, result)
    epochs_hit = [d.epoch for d in result.damage if d.epoch is not None]
    whole_hit = any(d.epoch is None for d in result.damage)
    result.intact = 0 if whole_hit else min(epochs_hit, default=result.epochs)
    result.damage.sort(key=lambda d: (-1 if d.epoch is None else d.epoch, d.where))
    return result


def _walk(f: h5py.File, result: LogCheck) -> None:
    found = result.damage
    try:
        dict(f["meta"].attrs)  # the attributes every reader needs, read through once
        status = int(f["status"][0])
        result.status = next((k for k, v in schema.STATUS.items() if v == status), f"code {status}")
        n = result.epochs = int(f["epochs/done"].shape[0])
    except hdf5.HDF5_ERRORS as exc:
        found.append(Damage("meta", None, hdf5.describe(exc)))
        return
    for name in ("meta/config", "meta/class_names", "meta/skipped", "samples/key"):
        problem = _read_problem(f, name, lambda _: layout.texts(f, name))
        if problem is not None:
            found.append(Damage(name, None, problem))
    f["samples"].visititems(lambda name, obj: _whole(f, "samples/" + name, found) if isinstance(obj, h5py.Dataset)
                            and name != "key" else None)
    per_epoch: list[str] = []
    f["epochs"].visititems(lambda name, obj: per_epoch.append("epochs/" + name) if isinstance(obj, h5py.Dataset)
                           else None)
    for name in per_epoch:
        _rows(f, name, n, found)
    _relabels(f, n, found)
    _embeddings(f, n, found)


def _read_problem(f: h5py.File, name: str, select: Any) -> str | None:
    try:
        select(f[name])
    except hdf5.HDF5_ERRORS as exc:
        return hdf5.describe(exc)
    return None


def _whole(f: h5py.File, name: str, found: list[Damage]) -> None:
    problem = _read_problem(f, name, lambda ds: ds[()])
    if problem is not None:
        found.append(Damage(name, None, problem))


def _rows(f: h5py.File, name: str, n: int, found: list[Damage]) -> None:
    """Each committed row of a per-epoch dataset; the first unreadable one is reported."""
    try:
        ds = f[name]
        rows = ds.shape[0]
    except hdf5.HDF5_ERRORS as exc:
        found.append(Damage(name, 0, hdf5.describe(exc)))
        return
    if rows < n:
        found.append(Damage(name, rows, f"holds {rows} rows of {n} committed epochs"))
    for e in range(min(rows, n)):
        problem = _read_problem(f, name, lambda ds: ds[e])
        if problem is not None:
            found.append(Damage(name, e, problem))
            return


def _relabels(f: h5py.File, n: int, found: list[Damage]) -> None:
    """The relabel events of each committed epoch (``epochs/relabel_end`` bounds them)."""
    try:
        ends = f["epochs/relabel_end"][:n].astype(np.int64)
        events = f["relabels"]
    except hdf5.HDF5_ERRORS:
        return  # relabel_end's own damage is reported with the per-epoch rows
    if n and (np.diff(ends) < 0).any():
        found.append(Damage("epochs/relabel_end", int(np.argmax(np.diff(ends) < 0)) + 1, "decreases"))
        return
    if n and ends[-1] > events.shape[0]:
        found.append(Damage("relabels", n - 1, f"holds {events.shape[0]} events, the epochs count {ends[-1]}"))
        return
    start = 0
    for e in range(n):
        problem = _read_problem(f, "relabels", lambda ds: ds[start:ends[e]])
        if problem is not None:
            found.append(Damage("relabels", e, problem))
            return
        start = int(ends[e])


def _embeddings(f: h5py.File, n: int, found: list[Damage]) -> None:
    try:
        which = f["embeddings/epoch"][:]
        f["embeddings/data"]  # its header: the rows are read one by one below
    except hdf5.HDF5_ERRORS as exc:
        found.append(Damage("embeddings/epoch", 0, hdf5.describe(exc)))
        return
    for row, epoch in enumerate(which):
        if epoch >= n:
            continue
        problem = _read_problem(f, "embeddings/data", lambda ds: ds[row])
        if problem is not None:
            found.append(Damage("embeddings/data", int(epoch), problem))
            return
