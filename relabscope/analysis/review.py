"""Reviewer decisions on a run's samples: what a decision word means for one sample, and
the latest decisions as a table.

``Run.review`` (a notebook) and the dashboard's review page (a key pressed on a tile) both
go through :func:`resolve`, so the same word stores the same thing in the run's corrections
journal (``relabscope.data.corrections``, which defines how decisions are kept and applied):

- ``keep``: the given label is right (stored with its name, for the record);
- ``suggested``: the suspects table's suggestion is right: stored as a relabel to it, or as
  a keep when it is the given label; a sample without a suggestion is refused;
- ``relabel``: ``label`` (a class name or id) is right; a relabel to the given label is
  stored as a keep, so that "which samples changed label" reads the decision alone;
- ``ambiguous``, ``drop``: as the journal defines them (no label).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np
import pandas as pd

from relabscope.data.journal import Decision, Proposal, SuggestionChanged

if TYPE_CHECKING:
    from relabscope.analysis.run import Run

#: the decisions a reviewer makes (``suggested`` is stored as ``relabel`` or ``keep``)
REVIEW_DECISIONS = ("keep", "suggested", "relabel", "ambiguous", "drop")
#: the columns of :func:`corrections_table` (``Run.corrections``)
CORRECTION_COLUMNS = ["sample_id", "key", "decision", "label", "reviewer", "source", "time", "seq"]


def class_id(label: str | int, class_names: Sequence[str]) -> int:
    """The class id of ``label``, a class name or id; ValueError (one line) for neither."""
    if isinstance(label, (int, np.integer)) and not isinstance(label, bool):
        if 0 <= int(label) < len(class_names):
            return int(label)
    elif isinstance(label, str) and label in class_names:
        return list(class_names).index(label)
    raise ValueError(f"label must be a class name or id of this run ({', '.join(class_names)} or "
                     f"0..{len(class_names) - 1}), not {label!r}")


def resolve(decision: str, label: str | int | None, *, given: int, suggested: int | None,
            class_names: Sequence[str]) -> tuple[str, str | None]:
    """The journal's (decision, label name) for a reviewer's ``decision`` about one sample
    given ``given`` and suggested ``suggested`` (-1 or None: no suggestion); see the module
    docstring.

    Raises:
        ValueError: an unknown decision, a relabel without a label or to an unknown class,
            a label given to a decision that takes none, or "suggested" without a suggestion.
    """
    if decision not in REVIEW_DECISIONS:
        raise ValueError(f"decision must be one of {', '.join(REVIEW_DECISIONS)}, not {decision!r}")
    if decision == "relabel":
        if label is None:
            raise ValueError("a relabel decision needs the new label (a class name or id)")
        target = class_id(label, class_names)
    elif label is not None:
        raise ValueError(f"a {decision!r} decision takes no label (got {label!r})")
    elif decision == "suggested":
        if suggested is None or suggested < 0:
            raise ValueError("the sample has no suggested label (the run never saw it)")
        target = int(suggested)
    elif decision == "keep":
        target = int(given)
    else:
        return decision, None
    return ("keep" if target == int(given) else "relabel"), class_names[target]


def corrections_table(decisions: Iterable[Decision]) -> pd.DataFrame:
    """The decisions as a table (:data:`CORRECTION_COLUMNS`), ordered by sample id; ``time``
    in UTC, ``label`` None where the decision takes none."""
    rows = [(d.sample_id, d.key, d.decision, d.label, d.reviewer, d.source, d.time, d.seq) for d in decisions]
    table = pd.DataFrame(rows, columns=CORRECTION_COLUMNS)
    table = table.astype({"sample_id": np.int64, "seq": np.int64, "time": np.float64})
    table["time"] = pd.to_datetime(table["time"], unit="s", utc=True)
    table["label"] = table["label"].astype(object).where(table["label"].notna(), None)
    ordered: pd.DataFrame = table.sort_values(["sample_id", "key"], kind="stable").reset_index(drop=True)
    return ordered


def review(run: Run, sample_ids: int | Iterable[int], decision: str, label: str | int | None = None, *,
           reviewer: str = "", base: int | Iterable[int] | None = None, shown: int | str | None = None,
           source: str = "python") -> list[Decision]:
    """``Run.review``: check the samples and the decision, resolve the word per sample
    (:func:`resolve`) and record them in the run's journal in one write; the arguments and
    errors are ``Run.review``'s."""
    ids = np.atleast_1d(np.asarray(sample_ids)).ravel()
    if ids.size == 0:
        return []
    n = len(run.samples)
    if not np.issubdtype(ids.dtype, np.integer) or ((ids < 0) | (ids >= n)).any():
        raise ValueError(f"sample ids must be integers in 0..{n - 1}, not {sample_ids!r}")
    planted = ids[run.canary_labels[ids] >= 0]
    if len(planted):
        raise ValueError(f"samples {planted[:5].tolist()} are canaries (labels relabscope made wrong on purpose, "
                         "--canaries): no decision is taken on them")
    bases = [base] * len(ids) if base is None or isinstance(base, (int, np.integer)) else list(base)
    if len(bases) != len(ids):
        raise ValueError(f"{len(bases)} bases for {len(ids)} samples")
    suggested: dict[int, int] = {}
    if decision == "suggested":
        table = run.suspects()
        suggested = dict(zip(table["sample_id"].tolist(), table["suggested_label"].tolist()))
        missing = [int(s) for s in ids if int(s) not in suggested]
        if missing:
            raise ValueError(f"samples {missing[:5]} are not training samples: they have no suggested label")
    keys, given, names = run.decision_keys, run.given_labels, run.class_names
    proposals = []
    for sid, seen in zip(ids.tolist(), bases):
        if shown is not None and decision == "suggested" and suggested[sid] != class_id(shown, names):
            raise SuggestionChanged(str(keys[sid]), names[suggested[sid]], names[class_id(shown, names)])
        kind, name = resolve(decision, label, given=int(given[sid]), suggested=suggested.get(sid), class_names=names)
        proposals.append(Proposal(str(keys[sid]), sid, kind, name, reviewer, source,
                                  None if seen is None else int(seen), names[int(given[sid])], run.fingerprint))
    return run.journal.record(proposals)
