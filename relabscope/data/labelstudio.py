"""Label Studio round trip: suspect samples out as import tasks, decisions back in.

Export writes Label Studio's task-import JSON: one task per sample whose ``data`` holds the
image (a PNG data URI, so the file works without giving Label Studio access to the data
set's folder), the sample's key and id, its given label and relabscope's suggestion, and
whose ``predictions`` pre-annotate the suggested label, ranked by the suspicion score.
:func:`labeling_config` is the matching labeling interface: one choice per class plus
"ambiguous" and "drop", so every decision relabscope knows can be made there.

Import reads Label Studio's exports as Label Studio writes them (``tests/data/labelstudio``
holds each format as its converter writes it, with the sources): the full JSON (one object per
task with its ``annotations``), JSON-MIN and CSV (one row per annotation, skipped ones left
out, no ground-truth mark). Each task's annotations are settled into one answer
(:func:`settle`): a ground-truth annotation wins, annotators who agree decide, annotators who
disagree are refused or settled by a documented rule; every task left undecided is counted
(skipped, unannotated, conflicting).
"""

from __future__ import annotations

import base64
import csv
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence
from xml.sax.saxutils import quoteattr

import numpy as np
from PIL import Image

from relabscope.errors import DataError

FROM_NAME, TO_NAME = "label", "image"
AMBIGUOUS, DROP = "ambiguous", "drop"
MODEL_VERSION = "relabscope-suspects"


@dataclass(frozen=True)
class Task:
    """One sample to review: what the export needs to know about it."""

    sample_id: int
    key: str
    given: str
    suggested: str
    score: float
    image: np.ndarray | None = None


def labeling_config(class_names: Sequence[str]) -> str:
    """The labeling interface XML: the image and one single choice among the classes,
    "ambiguous" and "drop"."""
    choices = "\n".join(f"    <Choice value={quoteattr(name)}/>" for name in [*class_names, AMBIGUOUS, DROP])
    return (f'<View>\n  <Image name="{TO_NAME}" value="$image"/>\n  <Text name="info" value="$info"/>\n'
            f'  <Choices name="{FROM_NAME}" toName="{TO_NAME}" choice="single" showInline="true">\n'
            f"{choices}\n  </Choices>\n</View>\n")


def export_tasks(tasks: Iterable[Task]) -> list[dict[str, Any]]:
    """Label Studio import tasks, the suggestion as a pre-annotation (a prediction)."""
    out = []
    for t in tasks:
        data: dict[str, Any] = {"sample_id": int(t.sample_id), "key": t.key, "given": t.given,
                                "suggested": t.suggested, "score": round(float(t.score), 6),
                                "info": f"given: {t.given} · suggested: {t.suggested} · suspicion {t.score:.3f}"}
        if t.image is not None:
            data["image"] = png_data_uri(t.image)
        out.append({"data": data, "predictions": [{
            "model_version": MODEL_VERSION, "score": float(t.score),
            "result": [{"from_name": FROM_NAME, "to_name": TO_NAME, "type": "choices",
                        "value": {"choices": [t.suggested]}}]}]})
    return out


def png_data_uri(pixels: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(np.asarray(pixels, dtype=np.uint8)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


# ---------------------------------------------------------------------- reading an export
#: the export formats read (Label Studio's names); which one a file is, its content says
FORMATS = ("JSON", "JSON-MIN", "CSV")
#: how annotators who disagree on a task are settled
RESOLVE = ("refuse", "latest", "majority")
#: the per-annotation fields JSON-MIN and CSV add to a task's data (tests/data/labelstudio)
_ANNOTATION_COLUMNS = ("annotator", "annotation_id", "created_at", "updated_at", "lead_time", "agreement", "history")


@dataclass(frozen=True)
class Answer:
    """One annotation of a task: the choice (None when cancelled, i.e. skipped), who made
    it, when, and whether Label Studio marks it as the ground truth."""

    choice: str | None
    annotator: str
    updated: str
    ground_truth: bool = False
    cancelled: bool = False


@dataclass(frozen=True)
class ExportTask:
    """One task of an export: the sample it is about, the given label it showed, and every
    annotation (none: nobody annotated it)."""

    where: str  # "task 101", or "row 7" of a CSV: how an error names it
    key: str
    sample_id: int | None
    given: str | None
    answers: tuple[Answer, ...]


def read_export(path: str | os.PathLike) -> tuple[str, list[ExportTask]]:
    """The tasks of a Label Studio export, as Label Studio writes each format (full JSON,
    JSON-MIN or CSV; which one, the content says): ``(format, tasks)``.

    JSON-MIN and CSV have one row per annotation and none for a skipped (cancelled) one;
    their rows are grouped back into tasks by task id. Neither says which annotation is the
    ground truth; the full JSON does.

    Raises:
        DataError: unreadable, not an export of relabscope's tasks, or a malformed field (one
            line naming the file, the task and the field).
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read the Label Studio export ({exc.strerror or exc})") from None
    text = raw.decode("utf-8-sig", errors="replace")
    try:
        records = json.loads(text)
    except ValueError:
        return "CSV", _from_rows(path, _csv_rows(path, text), "row")
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise DataError(f"{path}: not a Label Studio export (JSON, but not a list of tasks or annotations)")
    if records and all("annotations" in r and "data" in r for r in records):
        return "JSON", [_full_task(path, i, r) for i, r in enumerate(records)]
    return "JSON-MIN", _from_rows(path, records, "record")


def _csv_rows(path: Path, text: str) -> list[dict[str, Any]]:
    rows = list(csv.DictReader(io.StringIO(text)))
    if not rows or "key" not in rows[0]:
        raise DataError(f"{path}: not a Label Studio export (neither JSON nor a CSV with a key column; export "
                        "relabscope's tasks as JSON, JSON-MIN or CSV)")
    return [{k: v for k, v in row.items() if k is not None} for row in rows]


def _full_task(path: Path, i: int, task: dict[str, Any]) -> ExportTask:
    where = f"task {task.get('id', i)}"
    data = task.get("data")
    if not isinstance(data, dict):
        raise DataError(f"{path}: {where}: no data object (was it exported from relabscope's tasks?)")
    annotations = task.get("annotations")
    if not isinstance(annotations, list) or not all(isinstance(a, dict) for a in annotations):
        raise DataError(f"{path}: {where}: annotations is not a list of annotations")
    answers = []
    for a in annotations:
        cancelled = bool(a.get("was_cancelled"))
        choice = None if cancelled else _choice(path, where, a.get("result"))
        answers.append(Answer(choice, _annotator(a.get("completed_by")), str(a.get("updated_at") or
                                                                              a.get("created_at") or ""),
                              bool(a.get("ground_truth")), cancelled or choice is None))
    return _task(path, where, data, answers)


def _from_rows(path: Path, rows: list[dict[str, Any]], unit: str) -> list[ExportTask]:
    """JSON-MIN records or CSV rows (one per annotation) grouped into tasks by task id."""
    grouped: dict[str, tuple[str, dict[str, Any], list[Answer]]] = {}
    for n, row in enumerate(rows, start=2 if unit == "row" else 1):
        where = f"{unit} {n}"
        task_id = str(row.get("id", "")) or where
        data = {k: v for k, v in row.items() if k not in (*_ANNOTATION_COLUMNS, "id", FROM_NAME)}
        data.update({k[len("_data_"):]: v for k, v in row.items() if k.startswith("_data_")})
        _, _, answers = grouped.setdefault(task_id, (f"task {task_id} ({where})", data, []))
        label = row.get(FROM_NAME)
        if label in (None, "") and row.get("annotation_id") in (None, ""):
            continue  # the row of a task nobody annotated
        if not isinstance(label, str) or not label:
            raise DataError(f"{path}: {where}: {FROM_NAME} is {str(label)[:60]!r}, not one choice (relabscope's "
                            "tasks take a single choice)")
        answers.append(Answer(label, _annotator(row.get("annotator")), str(row.get("updated_at") or
                                                                            row.get("created_at") or "")))
    return [_task(path, where, data, answers) for where, data, answers in grouped.values()]


def _task(path: Path, where: str, data: dict[str, Any], answers: list[Answer]) -> ExportTask:
    key = data.get("key")
    if not isinstance(key, str) or not key:
        raise DataError(f"{path}: {where}: data.key is {str(key)[:60]!r}, not a sample key (was it exported from "
                        "relabscope's tasks?)")
    sample_id = data.get("sample_id")
    if sample_id in (None, ""):
        sample_id = None
    elif isinstance(sample_id, bool) or not str(sample_id).strip().lstrip("-").isdigit():
        raise DataError(f"{path}: {where}: data.sample_id is {str(sample_id)[:40]!r}, not a whole number")
    given = data.get("given")
    return ExportTask(where, key, None if sample_id is None else int(str(sample_id)),
                      str(given) if given not in (None, "") else None, tuple(answers))


def _choice(path: Path, where: str, result: Any) -> str | None:
    """The single choice of an annotation's ``result`` (None: it chose nothing)."""
    if not isinstance(result, list) or not all(isinstance(r, dict) for r in result):
        raise DataError(f"{path}: {where}: an annotation's result is {str(result)[:60]}, not Label Studio's list "
                        "of result objects")
    for r in result:
        if r.get("from_name") == FROM_NAME and r.get("type") == "choices":
            choices = (r.get("value") or {}).get("choices") if isinstance(r.get("value"), dict) else None
            if not isinstance(choices, list) or len(choices) > 1:
                raise DataError(f"{path}: {where}: the {FROM_NAME} result holds {str(choices)[:60]}, not one choice")
            return str(choices[0]) if choices else None
    return None


def _annotator(who: Any) -> str:
    """An annotator as Label Studio writes one: an email when the export has it, else the
    user id (default exports carry ids only), named so it is not taken for a person's name."""
    if isinstance(who, dict):
        who = who.get("email") or who.get("id")
    text = "" if who is None else str(who).strip()
    return f"label-studio user {text}" if text.isdigit() else text


@dataclass
class Settled:
    """What an export decides, task by task, after annotators who disagree were settled.

    Attributes:
        decided: (task, the answer that decides it, how: "one annotator", "agreed",
            "ground truth", "latest", "majority").
        counts: tasks, decided, skipped (every annotation cancelled: Skip in Label Studio),
            unannotated, conflicting (annotators who disagree), ground_truth (settled by a
            ground-truth annotation), cancelled_annotations (beside others).
        conflicts: (key, the choices) of every task whose annotators disagree.
    """

    decided: list[tuple[ExportTask, Answer, str]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    conflicts: list[tuple[str, list[str]]] = field(default_factory=list)


def settle(tasks: Sequence[ExportTask], resolve: str = "refuse") -> Settled:
    """One answer per task: a ground-truth annotation when there is one, else the one every
    annotator agrees on; annotators who disagree are settled by ``resolve``: "refuse" (the
    caller refuses the import: ``conflicts`` says which), "latest" (the last updated) or
    "majority" (the most common choice; a tie goes to the latest of the tied)."""
    if resolve not in RESOLVE:
        raise ValueError(f"resolve must be one of {', '.join(RESOLVE)}, not {resolve!r}")
    out = Settled(counts=dict.fromkeys(("tasks", "decided", "skipped", "unannotated", "conflicting", "ground_truth",
                                        "cancelled_annotations"), 0))
    for task in tasks:
        out.counts["tasks"] += 1
        live = [a for a in task.answers if not a.cancelled]
        out.counts["cancelled_annotations"] += len(task.answers) - len(live) if live else 0
        if not task.answers:
            out.counts["unannotated"] += 1
            continue
        if not live:
            out.counts["skipped"] += 1
            continue
        truth = [a for a in live if a.ground_truth]
        choices = sorted({a.choice or "" for a in live})
        if truth:
            answer, how = max(truth, key=lambda a: a.updated), "ground truth"
            out.counts["ground_truth"] += 1
        elif len(choices) == 1:
            answer, how = max(live, key=lambda a: a.updated), "one annotator" if len(live) == 1 else "agreed"
        else:
            out.counts["conflicting"] += 1
            out.conflicts.append((task.key, [a.choice or "" for a in live]))
            if resolve == "refuse":
                continue
            if resolve == "latest":
                answer, how = max(live, key=lambda a: a.updated), "latest"
            else:
                votes = {c: sum(a.choice == c for a in live) for c in choices}
                top = max(votes.values())
                answer = max((a for a in live if votes[a.choice or ""] == top), key=lambda a: a.updated)
                how = "majority"
        out.decided.append((task, answer, how))
        out.counts["decided"] += 1
    return out
