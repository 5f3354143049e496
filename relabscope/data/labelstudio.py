"""Label Studio round trip: suspect samples out as import tasks, decisions back in.

Export writes Label Studio's task-import JSON: one task per sample whose ``data`` holds the
image (a PNG data URI, so the file works without giving Label Studio access to the data
set's folder), the sample's key and id, its given label and relabscope's suggestion, and
whose ``predictions`` pre-annotate the suggested label, ranked by the suspicion score.
:func:`labeling_config` is the matching labeling interface: one choice per class plus
"ambiguous" and "drop", so every decision relabscope knows can be made there.

Import reads Label Studio's JSON export (a list of tasks with ``annotations``): the latest
non-cancelled annotation of each task becomes a decision (the given class: ``keep``, another
class: ``relabel``, "ambiguous", "drop"), with the annotator as reviewer.
"""

from __future__ import annotations

import base64
import io
import json
import os
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Imported:
    """One decision read from a Label Studio export."""

    key: str
    sample_id: int
    decision: str
    label: str | None
    reviewer: str


def read_export(path: str | os.PathLike, class_names: Sequence[str]) -> list[Imported]:
    """Decisions from a Label Studio JSON export (tasks without a usable annotation are
    skipped: nobody decided them).

    Raises:
        DataError: not a Label Studio JSON export, a task without relabscope's ``key``,
            or a choice that is neither a class nor "ambiguous"/"drop".
    """
    path = Path(path)
    try:
        tasks = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DataError(f"{path}: cannot read the Label Studio export ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise DataError(f"{path}: not JSON ({exc})") from None
    if not isinstance(tasks, list):
        raise DataError(f"{path}: not a Label Studio JSON export (expected a list of tasks)")
    out = []
    for i, task in enumerate(tasks):
        data = task.get("data") if isinstance(task, dict) else None
        if not isinstance(data, dict) or "key" not in data:
            raise DataError(f"{path}: task {i} has no data.key (was it exported by relabscope?)")
        annotation = _latest_annotation(task.get("annotations") or [])
        if annotation is None:
            continue
        choice = _choice(annotation)
        if choice is None:
            continue
        if choice not in (*class_names, AMBIGUOUS, DROP):
            raise DataError(f"{path}: task {i} ({data['key']}): choice {choice!r} is not a class, "
                            f"{AMBIGUOUS!r} or {DROP!r}")
        if choice in (AMBIGUOUS, DROP):
            decision, label = choice, None
        else:
            decision, label = ("keep" if choice == data.get("given") else "relabel"), choice
        who = annotation.get("completed_by")
        reviewer = str(who.get("email", "")) if isinstance(who, dict) else str(who or "")
        out.append(Imported(str(data["key"]), int(data.get("sample_id", -1)), decision, label, reviewer))
    return out


def _latest_annotation(annotations: list[Any]) -> dict[str, Any] | None:
    done = [a for a in annotations if isinstance(a, dict) and not a.get("was_cancelled")]
    if not done:
        return None
    latest: dict[str, Any] = max(done, key=lambda a: (str(a.get("updated_at") or a.get("created_at") or ""),
                                                      int(a.get("id") or 0)))
    return latest


def _choice(annotation: dict[str, Any]) -> str | None:
    for result in annotation.get("result") or []:
        if result.get("from_name") == FROM_NAME and result.get("type") == "choices":
            choices = (result.get("value") or {}).get("choices") or []
            if choices:
                return str(choices[0])
    return None
