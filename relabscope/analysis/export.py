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
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import pandas as pd

from relabscope.analysis.suspects import BASELINES
from relabscope.atomic import atomic_write
from relabscope.data.journal import CorrectionJournal
from relabscope.data.labelstudio import Task, export_tasks, labeling_config, read_export
from relabscope.errors import RelabscopeError

if TYPE_CHECKING:
    from relabscope.analysis.run import Run

ExportFormat = Literal["csv", "labelstudio"]
FORMATS = ("csv", "labelstudio")
#: thumbnail side embedded in Label Studio tasks: enough to judge an expression, small files
TASK_IMAGE_SIZE = 160


def suspect_rows(run: Run, top: int | None = None) -> pd.DataFrame:
    """The ``top`` most suspect training samples with their labels named, for export."""
    table = run.suspects()
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
    (``out`` with suffix ``.xml``); tasks carry their image when the run has images.

    Returns:
        The files written.

    Raises:
        RelabscopeError: an unknown format.
    """
    if format not in FORMATS:
        raise RelabscopeError(f"format must be one of {', '.join(FORMATS)}, not {format!r}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = suspect_rows(run, top)
    if format == "csv":
        lead = ["rank", "sample_id", "key", "score", "flag", "given", "suggested", "final"]
        signals = [c for c in rows.attrs.get("signals", []) if c in rows.columns]
        with atomic_write(out) as fh:
            fh.write(rows[lead + signals + list(BASELINES)].to_csv(index=False).encode())
        return [out]
    images = run.images(rows["sample_id"].tolist(), size=TASK_IMAGE_SIZE) if run.has_images else None
    columns = zip(rows["sample_id"].tolist(), rows["key"].tolist(), rows["given"].tolist(),
                  rows["suggested"].tolist(), rows["score"].tolist())
    tasks = export_tasks(Task(int(sid), str(key), str(given), str(suggested), float(score),
                              None if images is None else images[i])
                         for i, (sid, key, given, suggested, score) in enumerate(columns))
    config = out.with_suffix(".xml")
    with atomic_write(out) as fh:
        fh.write(json.dumps(tasks).encode())
    with atomic_write(config) as fh:
        fh.write(labeling_config(run.class_names).encode())
    return [out, config]


def import_labelstudio(run: Run, export: str | Path, *, reviewer: str | None = None) -> pd.DataFrame:
    """Read a Label Studio JSON export into the run's decisions (``corrections.csv``).

    Each task's latest annotation becomes a decision by its annotator (or ``reviewer``);
    a later import of the same task replaces the earlier decision (the export is the
    reviewers' latest word). Returns the decisions imported.
    """
    keys = {str(k): i for i, k in enumerate(run.log.samples["key"])}
    journal = CorrectionJournal(run.run_dir, run.class_names)
    done = []
    for d in read_export(export, run.class_names):
        sample_id = keys.get(d.key, d.sample_id)
        made = journal.decide(d.key, sample_id, d.decision, d.label, reviewer=reviewer or d.reviewer,
                              source="labelstudio")
        done.append({"sample_id": made.sample_id, "key": made.key, "decision": made.decision,
                     "label": made.label, "reviewer": made.reviewer})
    return pd.DataFrame(done, columns=["sample_id", "key", "decision", "label", "reviewer"])
