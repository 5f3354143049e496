"""Label corrections: a reviewer's decisions about samples, kept so that nothing
acknowledged is ever lost, and applied to a data set's labels for the next run.

A decision names a sample by its key (stable across runs of one data set) and says one of

- ``keep``: the given label is right;
- ``relabel``: the right label is ``label`` (the suggested one or any other class);
- ``ambiguous``: no single label fits (left out of training, see below);
- ``drop``: the sample should not be in the data set (not a face, a duplicate, ...).

**Storage.** Every decision is appended to ``corrections.journal`` beside the run (one
JSON line, flushed and fsynced before the call returns), and ``corrections.csv`` (the latest
decision per sample) is rewritten atomically after each append. The journal is the truth:
a process killed at any moment loses at most the decision whose call had not returned, and
``corrections.csv`` is rebuilt from the journal on the next open when it differs from it. A
torn last line (a kill inside the write) is skipped when read. A folder this process may
not write (a shared, read-only copy of a run) is read as it is; deciding there is refused
in one line (:attr:`CorrectionJournal.read_only`).

**Two reviewers, two tabs.** Decisions carry the journal position of the decision the
reviewer saw on that sample (``base``: 0 for none). An append whose ``base`` is not the
sample's latest decision is refused with :class:`DecisionConflict` naming who decided it
meanwhile: the reviewer reloads and decides again, so no decision silently overwrites one
its author never saw. Appends are serialised by an exclusive lock on the journal file, so
this holds across processes too. ``base=None`` (the default in Python) means "replace
whatever is there": the caller takes responsibility.

**Training on them** (:func:`apply_corrections`): relabelled samples take their new label,
dropped samples leave the training split, and ambiguous samples leave it too: a label the
reviewer could not name is no better than the noisy one, and keeping it with either label
would train on a guess. ``keep`` changes nothing.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import hashlib
import io
import json
import os
import threading
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator, Sequence

import numpy as np

from relabscope.atomic import write_atomic
from relabscope.diskspace import disk_full, is_disk_full
from relabscope.errors import DataError, RelabscopeError, WriteError

DECISIONS = ("keep", "relabel", "ambiguous", "drop")
JOURNAL_NAME = "corrections.journal"
CSV_NAME = "corrections.csv"
CSV_COLUMNS = ("key", "sample_id", "decision", "label", "reviewer", "source", "time", "seq")


class DecisionConflict(RelabscopeError):
    """A decision made on a version of the sample's decisions that is no longer the latest."""


@dataclass(frozen=True)
class Decision:
    """One reviewer decision. ``seq`` is its 1-based position in the journal."""

    key: str
    sample_id: int
    decision: str
    label: str | None
    reviewer: str
    source: str
    time: float
    seq: int


class CorrectionJournal:
    """The decisions about one run's samples, in ``folder`` (usually the run directory).

    Args:
        folder: where ``corrections.journal`` and ``corrections.csv`` live.
        class_names: the data set's classes; a relabel must name one of them.
    """

    def __init__(self, folder: str | os.PathLike, class_names: Sequence[str]):
        self.folder = Path(folder)
        self.class_names = list(class_names)
        self.path = self.folder / JOURNAL_NAME
        self.csv_path = self.folder / CSV_NAME
        self._lock = threading.Lock()
        self._latest: dict[str, Decision] = {}
        self._count = 0
        self._offset = 0
        if self.path.exists():
            with self._locked(write=False) as fh:
                self._read_new(fh)
            if self.read_only is None and not self._csv_current():
                self._refresh_csv()

    @property
    def read_only(self) -> str | None:
        """Why no decision can be saved here (one line naming the file or folder), or None."""
        if self.path.exists() and not os.access(self.path, os.W_OK):
            return f"{self.path}: the journal is read-only, so no decision can be saved"
        if self.folder.exists() and not os.access(self.folder, os.W_OK | os.X_OK):
            return f"{self.folder}: the folder is read-only, so no decision can be saved"
        return None

    # ------------------------------------------------------------------ reading
    def latest(self) -> dict[str, Decision]:
        """The latest decision per sample key (re-reads what other processes appended)."""
        if self.path.exists():
            with self._locked(write=False) as fh:
                self._read_new(fh)
        return dict(self._latest)

    def history(self) -> list[Decision]:
        """Every decision ever made, oldest first."""
        if not self.path.exists():
            return []
        return list(_parse(self.path.read_bytes(), self.path))

    # ------------------------------------------------------------------ writing
    def decide(self, key: str, sample_id: int, decision: str, label: str | None = None, *,
               reviewer: str = "", source: str = "python", base: int | None = None) -> Decision:
        """Append one decision; returns it once it is on disk.

        Args:
            key: the sample's key.
            sample_id: its id in the reviewed run (for the record).
            decision: one of ``DECISIONS``.
            label: the class name for ``relabel`` (required) or ``keep`` (optional, the
                given label, for the record).
            reviewer: who decided.
            source: "dashboard", "python", "labelstudio", ...
            base: the ``seq`` of the sample's decision the reviewer saw (0: none); None
                replaces whatever is there.

        Raises:
            ValueError: an unknown decision or class, or a relabel without a label.
            DecisionConflict: ``base`` is not the sample's latest decision.
            RelabscopeError: the folder or the journal is read-only.
        """
        if decision not in DECISIONS:
            raise ValueError(f"decision must be one of {', '.join(DECISIONS)}, not {decision!r}")
        if decision == "relabel" and not label:
            raise ValueError("a relabel decision needs the new label")
        if label is not None and label not in self.class_names:
            raise ValueError(f"label {label!r} is not a class of this data set ({', '.join(self.class_names)})")
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.read_only is not None:
            raise RelabscopeError(self.read_only)
        with self._locked() as fh:
            self._read_new(fh)
            seen = self._latest.get(key)
            if base is not None and (seen.seq if seen else 0) != base:
                raise DecisionConflict(_conflict(key, seen))
            record = Decision(str(key), int(sample_id), decision, label if decision in ("keep", "relabel") else None,
                              reviewer, source, time.time(), self._count + 1)
            line = (json.dumps(asdict(record), separators=(",", ":")) + "\n").encode()
            end = fh.seek(0, os.SEEK_END)
            try:
                view = memoryview(line)
                while view:  # unbuffered: a write may take fewer bytes than asked
                    view = view[fh.write(view) or 0:]
                os.fsync(fh.fileno())
            except OSError as exc:  # the decision is not on disk: take back what part of it is
                with contextlib.suppress(OSError):
                    fh.truncate(end)
                if is_disk_full(exc):
                    raise disk_full(self.path, len(line), "saving the decision") from None
                raise WriteError(f"{self.path}: the decision could not be saved ({exc.strerror or exc})") from None
            self._take(record)
            self._offset += len(line)
            self._refresh_csv()
        return record

    # ------------------------------------------------------------------ internals
    @contextlib.contextmanager
    def _locked(self, write: bool = True) -> Iterator[BinaryIO]:
        """The journal opened under a lock: for appending under an exclusive one, or (``write``
        False, which also works on a read-only file) for reading under a shared one. This
        process's threads take the thread lock, other processes wait on ``flock``."""
        # unbuffered: what a failed write left behind is taken back, and closing has no
        # buffer left to flush (a full disk would fail the close too)
        with self._lock, open(self.path, "a+b" if write else "rb", buffering=0) as fh:
            fcntl.flock(fh, fcntl.LOCK_EX if write else fcntl.LOCK_SH)
            try:
                yield fh
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _read_new(self, fh: BinaryIO) -> None:
        """Take the lines appended since the last read (by this or another process)."""
        fh.seek(self._offset)
        data = fh.read()
        end = data.rfind(b"\n") + 1  # a torn last line is not a decision yet
        for record in _parse(data[:end], self.path):
            self._take(record)
        self._offset += end

    def _take(self, record: Decision) -> None:
        self._latest[record.key] = record
        self._count = max(self._count, record.seq)

    def _csv_current(self) -> bool:
        """Whether ``corrections.csv`` already says what the journal does."""
        try:
            return self.csv_path.read_bytes() == corrections_csv(self._latest.values()).encode()
        except OSError:
            return False

    def _write_csv(self) -> None:
        write_atomic(self.csv_path, corrections_csv(self._latest.values()))

    def _refresh_csv(self) -> None:
        """Rewrite corrections.csv after a decision is saved. It is derived from the journal
        (rebuilt whenever it differs), so a failure here (a full disk) does not undo the
        decision: it is warned about, and the next write or open rebuilds the file."""
        try:
            self._write_csv()
        except WriteError as exc:
            warnings.warn(f"{exc}; {self.csv_path.name} is rebuilt from the journal later", stacklevel=3)


def _conflict(key: str, seen: Decision | None) -> str:
    if seen is None:
        return f"sample {key!r} has no decision any more: reload and decide again"
    who = f" by {seen.reviewer}" if seen.reviewer else ""
    label = f" {seen.label}" if seen.label else ""
    return f"sample {key!r} was decided meanwhile{who} ({seen.decision}{label}, #{seen.seq}): reload and decide again"


def _parse(data: bytes, path: Path) -> Iterable[Decision]:
    for line in data.decode("utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            yield Decision(**json.loads(line))
        except (ValueError, TypeError):
            continue  # a torn line: its call never returned, so nobody was told it was saved


def corrections_csv(decisions: Iterable[Decision]) -> str:
    """The latest decisions as ``corrections.csv`` text, ordered by sample id."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for d in sorted(decisions, key=lambda d: (d.sample_id, d.key)):
        writer.writerow([d.key, d.sample_id, d.decision, d.label or "", d.reviewer, d.source,
                         time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(d.time)), d.seq])
    return buf.getvalue()


# ---------------------------------------------------------------------- training on them
@dataclass(frozen=True)
class Corrections:
    """Decisions read from a ``corrections.csv``: key -> (decision, label name or None)."""

    path: Path
    decisions: dict[str, tuple[str, str | None]]
    sha256: str


def read_corrections(path: str | os.PathLike) -> Corrections:
    """Read ``corrections.csv`` (the columns ``key``, ``decision`` and ``label`` are
    needed; others are for the record).

    Raises:
        DataError: the file is missing, lacks a column, or a row is malformed (one line
            naming the file and the row).
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read the corrections file ({exc.strerror or exc})") from None
    rows = csv.DictReader(io.StringIO(raw.decode("utf-8-sig", errors="replace")))
    missing = [c for c in ("key", "decision", "label") if c not in (rows.fieldnames or [])]
    if missing:
        raise DataError(f"{path}: not a corrections file (no column {', '.join(missing)})")
    decisions: dict[str, tuple[str, str | None]] = {}
    for line, row in enumerate(rows, start=2):
        decision, label = (row["decision"] or "").strip(), (row["label"] or "").strip() or None
        if decision not in DECISIONS:
            raise DataError(f"{path}:{line}: decision must be one of {', '.join(DECISIONS)}, not {decision!r}")
        if decision == "relabel" and label is None:
            raise DataError(f"{path}:{line}: a relabel decision without a label")
        decisions[row["key"]] = (decision, label)
    return Corrections(path, decisions, hashlib.sha256(raw).hexdigest())


@dataclass(frozen=True)
class Applied:
    """What :func:`apply_corrections` did: the new labels, which samples stay, and counts."""

    labels: np.ndarray
    keep: np.ndarray
    counts: dict[str, int]
    unmatched: int
    sha256: str  # of the corrections file, for the run's record

    def summary(self) -> str:
        done = ", ".join(f"{n} {d}" for d, n in self.counts.items() if n)
        extra = f"; {self.unmatched} decisions name no training sample" if self.unmatched else ""
        return f"corrections: {done or 'nothing to apply'}{extra} (sha256 {self.sha256[:12]})"


def apply_corrections(keys: Sequence[str], labels: np.ndarray, class_names: Sequence[str],
                      corrections: Corrections) -> Applied:
    """The training labels with ``corrections`` applied (see the module docstring).

    Raises:
        DataError: a relabel names a class the data set lacks, or no decision names a
            training sample (the file belongs to another data set).
    """
    index = {name: i for i, name in enumerate(class_names)}
    out = np.asarray(labels).copy()
    keep = np.ones(len(keys), bool)
    counts = {d: 0 for d in DECISIONS}
    matched = 0
    for i, key in enumerate(keys):
        found = corrections.decisions.get(key)
        if found is None:
            continue
        matched += 1
        decision, label = found
        counts[decision] += 1
        if decision == "relabel":
            if label not in index:
                raise DataError(f"{corrections.path}: {key}: {label!r} is not a class of this data set "
                                f"({', '.join(class_names)})")
            out[i] = index[label]
        elif decision in ("drop", "ambiguous"):
            keep[i] = False
    if corrections.decisions and not matched:
        raise DataError(f"{corrections.path}: none of its {len(corrections.decisions)} decisions names a "
                        "training sample of this data set")
    return Applied(out, keep, counts, len(corrections.decisions) - matched, corrections.sha256)
