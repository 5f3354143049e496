"""Suspect labels out of relabscope, reviewers' decisions back in.

``export_suspects`` writes the top of ``Run.suspects()`` as a CSV (any spreadsheet or
labelling tool) or as Label Studio import tasks (images embedded, the suggestion as a
pre-annotation) with the matching labeling interface beside it; ``import_labelstudio``
reads Label Studio's JSON export into the run's ``corrections.csv`` (through the
decisions journal, ``relabscope.data.corrections``), from where ``relabscope train
--corrections`` trains on them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import pandas as pd

from relabscope.analysis.suspects import BASELINES
from relabscope.atomic import atomic_write
from relabscope.data.journal import Proposal
from relabscope.data.labelstudio import AMBIGUOUS, DROP, Task, export_tasks, labeling_config, read_export, settle
from relabscope.errors import DataError, RelabscopeError

if TYPE_CHECKING:
    from relabscope.analysis.run import Run

ExportFormat = Literal["csv", "labelstudio"]
FORMATS = ("csv", "labelstudio")
#: thumbnail side embedded in Label Studio tasks: enough to judge an expression, small files
TASK_IMAGE_SIZE = 160


def suspect_rows(run: Run, top: int | None = None) -> pd.DataFrame:
    """The ``top`` most suspect training samples with their labels named, for export.
    Canaries are never among them: their labels are wrong on purpose, and a review of them
    would be effort spent on relabscope's own errors (``relabscope.data.canaries``)."""
    table = run.suspects()
    if run.has_canaries:
        table = table[run.canary_labels[table["sample_id"].to_numpy()] < 0]
    if top is not None:
        table = table.head(top)
    names = run.class_names
    out = table.copy()
    for column in ("given_label", "suggested_label", "final_label"):
        out[column.replace("_label", "")] = [names[i] if i >= 0 else "" for i in table[column]]
    return out


def export_suspects(run: Run, out: str | Path, *, top: int | None = 200, format: ExportFormat = "csv") -> list[Path]:
    """Write the ``top`` suspects (None: every training sample) to ``out``.

    ``csv``: rank, sample_id, key, score, flag, given, suggested, final and every signal.
    ``labelstudio``: import tasks (JSON) and the labeling interface beside them
    (``out`` with suffix ``.xml``); every task carries its sample's image (the interface
    shows ``$image``), so a run without images is refused.

    Returns:
        The files written.

    Raises:
        RelabscopeError: an unknown format; for Label Studio, an ``out`` ending in .xml
            (the interface's name) or a run without images.
    """
    if format not in FORMATS:
        raise RelabscopeError(f"format must be one of {', '.join(FORMATS)}, not {format!r}")
    out = Path(out)
    if format == "labelstudio" and out.suffix.lower() == ".xml":
        raise RelabscopeError(f"{out}: the tasks are JSON and the labeling interface goes beside them as .xml: "
                              f"give the tasks' file, e.g. {out.with_suffix('.json')}")
    if format == "labelstudio" and not run.has_images:
        raise RelabscopeError(f"{run.run_dir}: the run has no images, and a Label Studio task shows its sample's: "
                              "give them (rs.open_run(path, images=FOLDER|ARRAY|LIST), or --images SOURCE)")
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = suspect_rows(run, top)
    if format == "csv":
        lead = ["rank", "sample_id", "key", "score", "flag", "given", "suggested", "final"]
        signals = [c for c in rows.attrs.get("signals", []) if c in rows.columns]
        with atomic_write(out) as fh:
            fh.write(rows[lead + signals + list(BASELINES)].to_csv(index=False).encode())
        return [out]
    images = run.images(rows["sample_id"].tolist(), size=TASK_IMAGE_SIZE)
    columns = zip(rows["sample_id"].tolist(), rows["key"].tolist(), rows["given"].tolist(),
                  rows["suggested"].tolist(), rows["score"].tolist())
    tasks = export_tasks(Task(int(sid), str(key), str(given), str(suggested), float(score), images[i])
                         for i, (sid, key, given, suggested, score) in enumerate(columns))
    config = out.with_suffix(".xml")
    with atomic_write(out) as fh:
        fh.write(json.dumps(tasks).encode())
    with atomic_write(config) as fh:
        fh.write(labeling_config(run.class_names).encode())
    return [out, config]


@dataclass
class Imported:
    """What :func:`import_labelstudio` did.

    Attributes:
        decisions: the decisions written (one row each: sample_id, key, decision, label,
            given, reviewer, how the task was settled).
        format: the export's format ("JSON", "JSON-MIN" or "CSV").
        counts: tasks, decided, skipped, unannotated, conflicting, ground_truth,
            cancelled_annotations (``relabscope.data.labelstudio.settle``).
        conflicts: (key, choices) of the tasks whose annotators disagreed.
        resolve: how they were settled.
    """

    decisions: pd.DataFrame
    format: str
    counts: dict[str, int]
    conflicts: list[tuple[str, list[str]]]
    resolve: str = "refuse"

    def summary(self) -> str:
        """One line: what was imported and what was left out, and why."""
        c = self.counts
        kinds = self.decisions["decision"].value_counts()
        parts = [f"imported {len(self.decisions)} decisions ({', '.join(f'{n} {d}' for d, n in kinds.items()) or 'none'})"
                 f" from {c['tasks']} tasks ({self.format})"]
        if c["ground_truth"]:
            parts.append(f"{c['ground_truth']} settled by a ground-truth annotation")
        if c["conflicting"]:
            rule = "the latest annotation" if self.resolve == "latest" else "the majority's choice"
            parts.append(f"{c['conflicting']} where annotators disagreed, settled by {rule}")
        if c["cancelled_annotations"]:
            parts.append(f"{c['cancelled_annotations']} cancelled annotations beside others ignored")
        left = [f"{c[k]} {name}" for k, name in (("skipped", "skipped in Label Studio"), ("unannotated", "unannotated"))
                if c[k]]
        return "; ".join(parts + ([f"not decided: {', '.join(left)}"] if left else []))


def import_labelstudio(run: Run, export: str | Path, *, reviewer: str | None = None,
                       resolve: str = "refuse") -> Imported:
    """Read a Label Studio export (full JSON, JSON-MIN or CSV, as Label Studio writes them)
    into the run's decisions: one append to the journal, then ``corrections.csv`` once.

    Each task's answer (:func:`relabscope.data.labelstudio.settle`: a ground-truth annotation
    wins, annotators who agree decide, annotators who disagree are refused or settled by
    ``resolve``) becomes a decision by its annotator (or ``reviewer``), made on the given
    label the task showed; it replaces the sample's earlier decision (the export is the
    reviewers' latest word). Nothing is written unless the whole export can be imported.

    Raises:
        DataError: an unreadable export or malformed field; tasks about samples this run
            does not have, or whose given label is not this run's (an export of another
            run); a choice that is not a class, "ambiguous" or "drop"; or (``resolve``
            "refuse") annotators who disagree. Each one line naming how many and the first.
    """
    path = Path(export)
    fmt, tasks = read_export(path)
    names = run.class_names
    ids = {k: i for i, k in enumerate(run.decision_keys)}
    given_here = run.given_labels
    unknown = [t.key for t in tasks if t.key not in ids]
    if unknown:
        raise DataError(f"{path}: {len(unknown)} tasks name samples this run does not have (first: "
                        f"{', '.join(repr(k[:60]) for k in unknown[:3])}): import the export of this run's tasks")
    other = [(t.key, t.given, names[given_here[ids[t.key]]]) for t in tasks
             if t.given is not None and t.given != names[given_here[ids[t.key]]]]
    if other:
        raise DataError(f"{path}: {len(other)} tasks showed another given label than this run's (first: "
                        + "; ".join(f"{k}: {g}, here {h}" for k, g, h in other[:3])
                        + "): the export was made from a run with other labels; import it into that run")
    settled = settle(tasks, resolve)
    if settled.conflicts and resolve == "refuse":
        first = "; ".join(f"{k}: {' vs '.join(c)}" for k, c in settled.conflicts[:3])
        raise DataError(f"{path}: annotators disagree on {len(settled.conflicts)} tasks ({first}); "
                        "--resolve latest or --resolve majority settles them (docs/review.md)")
    proposals, rows = [], []
    for task, answer, how in settled.decided:
        choice = answer.choice or ""
        if choice not in (*names, AMBIGUOUS, DROP):
            raise DataError(f"{path}: {task.where} ({task.key}): choice {choice!r} is not a class, "
                            f"{AMBIGUOUS!r} or {DROP!r}")
        sid, given = ids[task.key], names[given_here[ids[task.key]]]
        decision, label = (choice, None) if choice in (AMBIGUOUS, DROP) else \
            ("keep" if choice == given else "relabel", choice)
        who = reviewer or answer.annotator
        proposals.append(Proposal(task.key, sid, decision, label, who, "labelstudio", None, given, run.fingerprint))
        rows.append({"sample_id": sid, "key": task.key, "decision": decision, "label": label, "given": given,
                     "reviewer": who, "settled": how})
    run.journal.record(proposals)
    columns = ["sample_id", "key", "decision", "label", "given", "reviewer", "settled"]
    return Imported(pd.DataFrame(rows, columns=columns), fmt, settled.counts, settled.conflicts, resolve)
