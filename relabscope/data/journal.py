"""The reviewers' decisions journal: an append-only log of record.

Every decision is one JSON line of ``corrections.journal`` beside the run. The journal is
the truth; ``corrections.csv`` (the latest decision per sample) is derived from it and
rebuilt, under the journal's lock, whenever it differs. What a caller is told is what is
on disk:

- **acknowledged = on disk.** A call returns only after its lines were written and fsynced
  (and, for the journal's first line, its folder fsynced too, so the file itself survives
  a power cut). A batch (an import) is one write and one fsync, so 20,000 decisions cost
  about what one does.
- **Whole lines only.** A write cut short (a full disk, a killed process) leaves a torn
  last line. The next append first cuts the journal back to its last whole line (under the
  lock, fsynced), so no acknowledged decision is ever glued onto a torn one and lost; a
  failed write takes back what part of it reached the file. Readers skip a torn tail.
- **Numbers never reused.** ``seq`` is a decision's position among the journal's whole
  lines: it counts up by one per decision, whatever was torn before.
- **One writer at a time, across processes.** Appends hold an exclusive ``flock`` on the
  journal; reads a shared one.

**Two reviewers, two tabs.** A decision carries the ``seq`` of the sample's decision the
reviewer saw (``base``: 0 for none). One whose ``base`` is no longer the sample's latest is
refused with :class:`DecisionConflict` naming who decided meanwhile. ``base=None`` replaces
whatever is there (an import: the export is the reviewers' latest word).

**Bound to what the reviewer saw.** A decision records the label the sample was given when
it was decided (``given``) and the fingerprint of the run it was decided on (``run``), so
training on it later can refuse a decision about a label nobody reviewed
(``relabscope.data.corrections``).
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import json
import os
import threading
import time
import warnings
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator, Sequence

from relabscope.atomic import fsync_folder, write_atomic
from relabscope.diskspace import disk_full, is_disk_full
from relabscope.errors import RelabscopeError, WriteError

DECISIONS = ("keep", "relabel", "ambiguous", "drop")
JOURNAL_NAME = "corrections.journal"
CSV_NAME = "corrections.csv"
#: corrections.csv's columns: ``given`` and ``run`` bind each decision to what was reviewed
CSV_COLUMNS = ("key", "sample_id", "decision", "label", "given", "reviewer", "source", "time", "seq", "run")


class DecisionConflict(RelabscopeError):
    """A decision made on what is no longer the sample's state: decided meanwhile, or (a
    :class:`SuggestionChanged`) its suggestion changed since it was shown."""


class SuggestionChanged(DecisionConflict):
    """"Take the suggestion" on a sample whose suggestion is no longer the one shown (a run
    still training suggests anew each epoch)."""

    def __init__(self, key: str, now: str, shown: str):
        super().__init__(f"sample {key!r}: the suggestion is {now} now, not {shown} as shown (the run trained on "
                         "meanwhile): reload and decide again")
        self.now, self.shown = now, shown


@dataclass(frozen=True)
class Decision:
    """One reviewer decision as the journal keeps it.

    Attributes:
        key: the sample's key (stable across runs of one data set).
        sample_id: its id in the run it was decided on.
        decision: one of :data:`DECISIONS`.
        label: the class name of a ``keep`` or ``relabel``; None for the others.
        reviewer: who decided (the signed-in user on a server with accounts).
        source: "dashboard", "python", "labelstudio", ...
        time: Unix time it was saved.
        seq: its 1-based position among the journal's decisions.
        given: the label the sample was given when it was decided (None: not recorded,
            journals written before it was).
        run: the fingerprint of the run it was decided on ("" when not recorded).
    """

    key: str
    sample_id: int
    decision: str
    label: str | None
    reviewer: str
    source: str
    time: float
    seq: int
    given: str | None = None
    run: str = ""


_FIELDS = {f.name for f in fields(Decision)}


@dataclass(frozen=True)
class Proposal:
    """A decision to append: a :class:`Decision` before the journal numbers and times it,
    with the ``base`` the reviewer saw (None: replace whatever is there)."""

    key: str
    sample_id: int
    decision: str
    label: str | None = None
    reviewer: str = ""
    source: str = "python"
    base: int | None = None
    given: str | None = None
    run: str = ""


class CorrectionJournal:
    """The decisions about one run's samples, kept in ``folder`` (see the module docstring).

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
            if self.read_only is not None:
                with self._locked(write=False) as fh:
                    self._read_new(fh)
            else:
                with self._locked() as fh:  # the CSV is rebuilt under the writers' lock
                    self._read_new(fh)
                    if not self._csv_current():
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
        return list(parse_journal(self.path.read_bytes()))

    # ------------------------------------------------------------------ writing
    def decide(self, key: str, sample_id: int, decision: str, label: str | None = None, *,
               reviewer: str = "", source: str = "python", base: int | None = None, given: str | None = None,
               run: str = "") -> Decision:
        """Append one decision; returns it once it is on disk (:meth:`record` of one).

        Raises:
            ValueError: an unknown decision or class, or a relabel without a label.
            DecisionConflict: ``base`` is not the sample's latest decision.
            RelabscopeError: the folder or the journal is read-only.
            WriteError: the disk is full (nothing of the decision stays in the journal).
        """
        return self.record([Proposal(key, sample_id, decision, label, reviewer, source, base, given, run)])[0]

    def record(self, proposals: Sequence[Proposal]) -> list[Decision]:
        """Append decisions in one write and one fsync, then rebuild corrections.csv once;
        returns them once they are on disk. Each is checked before anything is written; a
        conflict (a stale ``base``) keeps the ones before it and refuses it and the rest.

        Raises:
            ValueError: an unknown decision or class, or a relabel without a label.
            DecisionConflict: a proposal's ``base`` is not its sample's latest decision
                (the proposals before it are saved).
            RelabscopeError: the folder or the journal is read-only.
            WriteError: the disk is full or the write failed (none of them is saved).
        """
        for p in proposals:
            self._validate(p)
        if not proposals:
            return []
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.read_only is not None:
            raise RelabscopeError(self.read_only)
        created = not self.path.exists()
        with self._locked() as fh:
            self._read_new(fh)
            made, conflict = self._number(proposals)
            if made:
                self._append(fh, b"".join(_line(d) for d in made))
                for d in made:
                    self._take(d)
                self._refresh_csv()
        if created and made:
            fsync_folder(self.folder)  # the journal's own name survives a power cut too
        if conflict is not None:
            raise conflict
        return made

    def _validate(self, p: Proposal) -> None:
        if p.decision not in DECISIONS:
            raise ValueError(f"decision must be one of {', '.join(DECISIONS)}, not {p.decision!r}")
        if p.decision == "relabel" and not p.label:
            raise ValueError("a relabel decision needs the new label")
        for label in (p.label, p.given):
            if label is not None and label not in self.class_names:
                raise ValueError(f"label {label!r} is not a class of this data set ({', '.join(self.class_names)})")

    def _number(self, proposals: Sequence[Proposal]) -> tuple[list[Decision], DecisionConflict | None]:
        """The decisions the proposals become (numbered after the journal's last), up to the
        first whose ``base`` is stale; that one's conflict."""
        made: list[Decision] = []
        seen = dict(self._latest)
        now = time.time()
        for p in proposals:
            latest = seen.get(p.key)
            if p.base is not None and (latest.seq if latest else 0) != p.base:
                return made, DecisionConflict(conflict_message(p.key, latest))
            d = Decision(str(p.key), int(p.sample_id), p.decision, p.label if p.decision in ("keep", "relabel") else None,
                         p.reviewer, p.source, now, self._count + len(made) + 1, p.given, p.run)
            made.append(d)
            seen[d.key] = d
        return made, None

    def _append(self, fh: BinaryIO, data: bytes) -> None:
        """Write ``data`` after the journal's last whole line and fsync; on any failure take
        back what part of it reached the file."""
        end = _cut_torn_tail(fh)
        try:
            view = memoryview(data)
            while view:  # unbuffered: a write may take fewer bytes than asked
                view = view[fh.write(view) or 0:]
            os.fsync(fh.fileno())
        except OSError as exc:
            with contextlib.suppress(OSError):
                fh.truncate(end)
                os.fsync(fh.fileno())
            lines = data.count(b"\n")
            what = "saving the decision" if lines == 1 else f"saving {lines:,} decisions"
            if is_disk_full(exc):
                raise disk_full(self.path, len(data), what) from None
            raise WriteError(f"{self.path}: {what} failed ({exc.strerror or exc})") from None

    # ------------------------------------------------------------------ internals
    @contextlib.contextmanager
    def _locked(self, write: bool = True) -> Iterator[BinaryIO]:
        """The journal opened under a lock: for appending under an exclusive one, or (``write``
        False, which also works on a read-only file) for reading under a shared one. This
        process's threads take the thread lock, other processes wait on ``flock``.
        Unbuffered, so a failed write can be taken back and closing has nothing left to
        flush (a full disk would fail the close too)."""
        with self._lock, open(self.path, "a+b" if write else "rb", buffering=0) as fh:
            fcntl.flock(fh, fcntl.LOCK_EX if write else fcntl.LOCK_SH)
            try:
                yield fh
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _read_new(self, fh: BinaryIO) -> None:
        """Take the whole lines appended since the last read (by this or another process)."""
        size = fh.seek(0, os.SEEK_END)
        if size < self._offset:  # another process cut back a torn tail this one never took
            self._offset = size
        fh.seek(self._offset)
        data = fh.read()
        end = data.rfind(b"\n") + 1  # a torn last line is not a decision
        for record in parse_journal(data[:end]):
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

    def _refresh_csv(self) -> None:
        """Rewrite corrections.csv (under the journal's lock). It is derived from the journal
        and rebuilt whenever it differs, so a failure here (a full disk) does not undo a
        saved decision: it is warned about, and the next write or open rebuilds the file."""
        try:
            write_atomic(self.csv_path, corrections_csv(self._latest.values()))
        except WriteError as exc:
            warnings.warn(f"{exc}; {self.csv_path.name} is rebuilt from the journal later", stacklevel=3)


def corrections_csv(decisions: Iterable[Decision]) -> str:
    """The latest decisions as ``corrections.csv`` text (:data:`CSV_COLUMNS`), ordered by
    sample id."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for d in sorted(decisions, key=lambda d: (d.sample_id, d.key)):
        writer.writerow([d.key, d.sample_id, d.decision, d.label or "", d.given or "", d.reviewer, d.source,
                         time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(d.time)), d.seq, d.run])
    return buf.getvalue()


def decision_keys(keys: Sequence[str]) -> list[str]:
    """What decisions name each sample by: its key, and for the second, third ... sample
    sharing a key (a data set listing one image twice), the key with ``#2``, ``#3`` ... in
    sample order, so that each sample has decisions of its own (one no longer refuses the
    other's as "decided meanwhile"). Training samples come first in a run and in a data
    set's training split alike, so both number them the same."""
    keys = [str(k) for k in keys]
    if len(set(keys)) == len(keys):
        return keys  # the usual case: every key names one sample
    seen: dict[str, int] = {}
    out = []
    for key in keys:
        seen[key] = seen.get(key, 0) + 1
        out.append(key if seen[key] == 1 else f"{key}#{seen[key]}")
    return out


def conflict_message(key: str, seen: Decision | None) -> str:
    """Why a decision with a stale base was refused: who decided the sample meanwhile."""
    if seen is None:
        return f"sample {key!r} has no decision any more: reload and decide again"
    who = f" by {seen.reviewer}" if seen.reviewer else ""
    label = f" {seen.label}" if seen.label else ""
    return f"sample {key!r} was decided meanwhile{who} ({seen.decision}{label}, #{seen.seq}): reload and decide again"


def parse_journal(data: bytes) -> Iterable[Decision]:
    """The decisions of journal bytes, whole lines only (a torn tail was never acknowledged);
    fields a newer relabscope added are ignored, fields an older one lacked take defaults."""
    end = data.rfind(b"\n") + 1
    for line in data[:end].decode("utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            values = json.loads(line)
            yield Decision(**{k: v for k, v in values.items() if k in _FIELDS})
        except (ValueError, TypeError, AttributeError):
            continue  # a line damaged in place: its call never returned a decision


def _line(d: Decision) -> bytes:
    return (json.dumps(asdict(d), separators=(",", ":")) + "\n").encode()


def _cut_torn_tail(fh: BinaryIO) -> int:
    """Cut the journal back to its last whole line (fsynced), returning its length: what a
    write cut short left must not be glued to the next decision."""
    size = fh.seek(0, os.SEEK_END)
    if size == 0:
        return 0
    fh.seek(size - 1)
    if fh.read(1) == b"\n":
        return size
    end, pos = 0, size
    while pos > 0:
        start = max(0, pos - (1 << 16))
        fh.seek(start)
        found = fh.read(pos - start).rfind(b"\n")
        if found >= 0:
            end = start + found + 1
            break
        pos = start
    fh.truncate(end)
    os.fsync(fh.fileno())
    return end
