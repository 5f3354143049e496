"""Label corrections: reviewers' decisions applied to a data set's labels for the next run.

A decision names a sample by its key (stable across runs of one data set) and says one of

- ``keep``: the given label is right;
- ``relabel``: the right label is ``label`` (the suggested one or any other class);
- ``ambiguous``: no single label fits (left out of training, see below);
- ``drop``: the sample should not be in the data set (not a face, a duplicate, ...).

Decisions are made and kept in the run's journal (``relabscope.data.journal``: acknowledged
means on disk), which writes ``corrections.csv``; this module reads such a file (or one
made by hand) and applies it.

**Training on them** (:func:`apply_corrections`): relabelled samples take their new label,
dropped samples leave the training split, and ambiguous samples leave it too: a label the
reviewer could not name is no better than the noisy one, and keeping it with either label
would train on a guess. ``keep`` changes nothing.

**Only on the label that was reviewed.** Each decision of relabscope's own files records
the label the sample was given when it was reviewed (``given``). A run whose data gives a
sample another label (its noise drawn with another seed, another noise file) would apply a
decision nobody made about that label, so such decisions are refused in one line naming
how many and the first few, unless ``mismatch="skip"`` (``--corrections-mismatch skip``)
leaves them out, counted in the run's log. A file without the column (made by hand, or
before it existed) cannot be checked; the summary says so.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from relabscope.data.journal import DECISIONS
from relabscope.errors import DataError

#: what to do with decisions made on another given label than the run trains with
MISMATCH = ("refuse", "skip")


def labels_fingerprint(keys: Sequence[str], labels: np.ndarray, class_names: Sequence[str]) -> str:
    """A short hash of samples' keys and given labels (by name): a decision records the one
    of the run it was made on, so a file from a run with other labels can say so."""
    h = hashlib.sha256()
    for key, label in zip(keys, np.asarray(labels).tolist()):
        h.update(f"{key}\t{class_names[label] if 0 <= label < len(class_names) else ''}\n".encode())
    return h.hexdigest()[:16]


# ---------------------------------------------------------------------- reading them
@dataclass(frozen=True)
class Correction:
    """One row of a corrections file: the decision, its label and the given label it was
    made on (None when the file does not say)."""

    decision: str
    label: str | None
    given: str | None = None
    run: str = ""


@dataclass(frozen=True)
class Corrections:
    """Decisions read from a ``corrections.csv``, by sample key."""

    path: Path
    decisions: dict[str, Correction]
    sha256: str


def read_corrections(path: str | os.PathLike) -> Corrections:
    """Read a ``corrections.csv``: the columns ``key``, ``decision`` and ``label`` are
    needed; ``given`` and ``run`` (relabscope's own files) bind each decision to the label it
    was made on; others are for the record.

    Raises:
        DataError: the file is missing, lacks a column, or a row is malformed or decides a
            key a row before it decided too (one line naming the file and the rows).
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
    decisions: dict[str, Correction] = {}
    lines: dict[str, int] = {}
    for line, row in enumerate(rows, start=2):
        key = row["key"] or ""
        decision, label = (row["decision"] or "").strip(), (row["label"] or "").strip() or None
        if decision not in DECISIONS:
            raise DataError(f"{path}:{line}: decision must be one of {', '.join(DECISIONS)}, not {decision!r}")
        if decision == "relabel" and label is None:
            raise DataError(f"{path}:{line}: a relabel decision without a label")
        if key in lines:
            raise DataError(f"{path}:{line}: {key!r} is decided twice (line {lines[key]} too): a corrections "
                            "file holds one decision per sample, remove the one that does not hold")
        lines[key] = line
        decisions[key] = Correction(decision, label, (row.get("given") or "").strip() or None,
                                    (row.get("run") or "").strip())
    return Corrections(path, decisions, hashlib.sha256(raw).hexdigest())


# ---------------------------------------------------------------------- training on them
@dataclass(frozen=True)
class Applied:
    """What :func:`apply_corrections` did: the new labels, which samples stay, and counts.

    Attributes:
        mismatched: decisions made on another given label, left out (``mismatch="skip"``).
        unchecked: decisions applied without a recorded given label to check.
    """

    labels: np.ndarray
    keep: np.ndarray
    counts: dict[str, int]
    unmatched: int
    sha256: str  # of the corrections file, for the run's record
    mismatched: int = 0
    unchecked: int = 0

    def summary(self) -> str:
        done = ", ".join(f"{n} {d}" for d, n in self.counts.items() if n)
        extra = f"; {self.unmatched} decisions name no training sample" if self.unmatched else ""
        if self.mismatched:
            extra += f"; {self.mismatched} made on another given label left out"
        if self.unchecked:
            extra += f"; {self.unchecked} without the given label they were made on (not checked)"
        return f"corrections: {done or 'nothing to apply'}{extra} (sha256 {self.sha256[:12]})"


def apply_corrections(keys: Sequence[str], labels: np.ndarray, class_names: Sequence[str],
                      corrections: Corrections, *, mismatch: str = "refuse") -> Applied:
    """The training labels with ``corrections`` applied (see the module docstring).

    Args:
        keys, labels: the training samples and the labels they are given (noise included).
        class_names: the data set's classes.
        corrections: what :func:`read_corrections` read.
        mismatch: a decision whose recorded given label is not the sample's here refuses
            the file ("refuse") or is left out and counted ("skip").

    Raises:
        DataError: a relabel names a class the data set lacks, no decision names a training
            sample (the file belongs to another data set), or decisions were made on another
            given label (``mismatch="refuse"``).
    """
    if mismatch not in MISMATCH:
        raise ValueError(f"mismatch must be one of {', '.join(MISMATCH)}, not {mismatch!r}")
    index = {name: i for i, name in enumerate(class_names)}
    out = np.asarray(labels).copy()
    keep = np.ones(len(keys), bool)
    counts = {d: 0 for d in DECISIONS}
    matched, unchecked, mismatched = 0, 0, []
    for i, key in enumerate(keys):
        found = corrections.decisions.get(key)
        if found is None:
            continue
        matched += 1
        here = class_names[int(out[i])]
        if found.given is None:
            unchecked += 1
        elif found.given != here:
            mismatched.append((key, found.given, here))
            continue
        counts[found.decision] += 1
        if found.decision == "relabel":
            if found.label not in index:
                raise DataError(f"{corrections.path}: {key}: {found.label!r} is not a class of this data set "
                                f"({', '.join(class_names)})")
            out[i] = index[found.label]
        elif found.decision in ("drop", "ambiguous"):
            keep[i] = False
    if corrections.decisions and not matched:
        raise DataError(f"{corrections.path}: none of its {len(corrections.decisions)} decisions names a "
                        "training sample of this data set")
    if mismatched and mismatch == "refuse":
        raise DataError(_mismatch_message(corrections, mismatched, matched, labels_fingerprint(keys, labels, class_names)))
    return Applied(out, keep, counts, len(corrections.decisions) - matched, corrections.sha256,
                   mismatched=len(mismatched), unchecked=unchecked)


def _mismatch_message(corrections: Corrections, mismatched: list[tuple[str, str, str]], matched: int,
                      here: str) -> str:
    first = "; ".join(f"{key}: reviewed as {given}, here {now}" for key, given, now in mismatched[:3])
    made_on = {c.run for c in corrections.decisions.values() if c.run}
    origin = (f"; the file was made on a run whose labels differ from this one's (labels fingerprint "
              f"{', '.join(sorted(made_on))[:40]}, here {here}): noise drawn with another seed or file?"
              if made_on and here not in made_on else "")
    return (f"{corrections.path}: {len(mismatched)} of {matched} decisions were made on another given label than "
            f"this run trains with ({first}){origin}; --corrections-mismatch skip leaves them out")
