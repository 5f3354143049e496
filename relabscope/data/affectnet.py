"""AffectNet (manually annotated part) from its published layout.

``training.csv`` and ``validation.csv`` (in the data folder or in its
``Manually_Annotated_file_lists``) have the columns ``subDirectory_filePath, face_x,
face_y, face_width, face_height, facial_landmarks, expression, valence, arousal``.
expression 0..10 = Neutral, Happiness, Sadness, Surprise, Fear, Disgust, Anger, Contempt,
None, Uncertain, No-Face. ``num_classes=7`` keeps expressions 0..6, ``num_classes=8``
keeps 0..7; other rows are dropped. validation.csv is the test split.

Images are ``Manually_Annotated_Images/<subDirectory_filePath>`` when that folder exists,
else ``<subDirectory_filePath>`` under the data folder; each is cropped to its face box
``(face_x, face_y, face_width, face_height)`` when loaded. Keys are the
``subDirectory_filePath`` values. valence and arousal are kept as float32 extras.

Caveat: training.csv is ~300 MB (the landmarks column is most of it) and has ~300-400k
rows; the csv module would take seconds, so plain lines are split on commas directly and
only lines with a quote go through the csv module. Images are not opened here.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from relabscope.data.base import DataSplits, FERDataset, FileSource
from relabscope.errors import DataError, bad_line, missing

NAME = "affectnet"
LIST_DIR = "Manually_Annotated_file_lists"
IMAGE_DIR = "Manually_Annotated_Images"
ALL_CLASS_NAMES = (
    "Neutral",
    "Happiness",
    "Sadness",
    "Surprise",
    "Fear",
    "Disgust",
    "Anger",
    "Contempt",
)
PATH_COLUMN = "subDirectory_filePath"
BOX_COLUMNS = ("face_x", "face_y", "face_width", "face_height")
WANTED = (PATH_COLUMN, *BOX_COLUMNS, "expression", "valence", "arousal")


def find_list(root: Path, name: str) -> Path:
    """``root/name`` or ``root/Manually_Annotated_file_lists/name``."""
    for candidate in (root / name, root / LIST_DIR / name):
        if candidate.is_file():
            return candidate
    raise DataError(
        f"{root / LIST_DIR / name}: file not found (nor {root / name}) ({NAME} layout)"
    )


def _finite_number(raw: bytes) -> bool:
    try:
        return bool(np.isfinite(float(raw)))
    except ValueError:
        return False


def read_list(path: Path) -> dict[str, np.ndarray]:
    """The columns relabscope uses from one AffectNet list, every row kept.

    Returns ``path`` (object array of str), ``box`` (N x 4 int32), ``expression``
    (int64), ``valence`` and ``arousal`` (float32) and ``line`` (1-based line numbers).
    """
    with open(path, "rb") as f:
        header_bytes = f.readline()
        header = header_bytes.decode("utf-8-sig").strip()
        columns = [c.strip().strip('"').strip() for c in header.split(",")]
        lower = [c.lower() for c in columns]
        col = []
        for want in WANTED:
            if want.lower() not in lower:
                raise bad_line(path, 1, f"header has no {want!r} column (found {header!r})")
            col.append(lower.index(want.lower()))
        ncols = len(columns)
        published = ncols == 9 and col == [0, 1, 2, 3, 4, 6, 7, 8]
        rows: list[tuple[bytes, ...]] = []
        lines: list[int] = []
        add_row, add_line = rows.append, lines.append
        for line_no, line in enumerate(f, start=2):
            if published and b'"' not in line:
                try:  # the common case, kept lean: ~300k lines of ~1 kB each
                    p, x, y, w, h, _, e, v, a = line.split(b",")
                except ValueError:
                    pass
                else:
                    add_row((p, x, y, w, h, e, v, a))
                    add_line(line_no)
                    continue
            if not line.strip():
                continue
            fields = next(csv.reader([line.decode("utf-8", "replace")]))
            if len(fields) != ncols:
                raise bad_line(path, line_no, f"expected {ncols} fields, found {len(fields)}")
            add_row(tuple(fields[c].encode() for c in col))
            add_line(line_no)
    line_numbers = np.asarray(lines, dtype=np.int64)
    if not rows:
        return {
            "path": np.empty(0, dtype=object),
            "box": np.zeros((0, 4), dtype=np.int32),
            "expression": np.zeros(0, dtype=np.int64),
            "valence": np.zeros(0, dtype=np.float32),
            "arousal": np.zeros(0, dtype=np.float32),
            "line": line_numbers,
        }
    columns_bytes = list(zip(*rows))
    del rows

    def numbers(j: int, what: str) -> np.ndarray:
        """Column ``j`` as float64; the first value that is not a finite number fails, with its line."""
        column = columns_bytes[j]
        try:  # float() takes bytes and ignores surrounding whitespace
            values = np.fromiter(map(float, column), np.float64, len(column))
            if np.isfinite(values).all():
                return values
        except ValueError:
            pass
        i = next(i for i, raw in enumerate(column) if not _finite_number(raw))
        text = column[i].strip().decode("utf-8", "replace")
        raise bad_line(path, int(line_numbers[i]), f"{what} {text!r} is not a number")

    paths = np.asarray([p.strip().decode("utf-8") for p in columns_bytes[0]], dtype=object)
    box = np.stack([numbers(1 + k, name) for k, name in enumerate(BOX_COLUMNS)], axis=1)
    expression = numbers(5, "expression")
    whole = expression == np.round(expression)
    if not whole.all():
        i = int(np.flatnonzero(~whole)[0])
        raise bad_line(path, int(line_numbers[i]), f"expression {expression[i]} is not an integer")
    return {
        "path": paths,
        "box": np.floor(box).astype(np.int32),
        "expression": expression.astype(np.int64),
        "valence": numbers(6, "valence").astype(np.float32),
        "arousal": numbers(7, "arousal").astype(np.float32),
        "line": line_numbers,
    }


def load(root: Path, num_classes: int = 7) -> DataSplits:
    """AffectNet's train (training.csv) and test (validation.csv) splits."""
    root = Path(root)
    if not root.is_dir():
        raise missing(root, "data folder")
    if num_classes not in (7, 8):
        raise DataError(f"{root}: AffectNet num_classes must be 7 or 8, not {num_classes!r}")
    class_names = ALL_CLASS_NAMES[:num_classes]
    image_root = root / IMAGE_DIR if (root / IMAGE_DIR).is_dir() else root

    def split(name: str, file_name: str) -> FERDataset:
        path = find_list(root, file_name)
        table = read_list(path)
        if len(table["path"]) == 0:
            raise DataError(f"{path}: no data rows")
        idx = np.flatnonzero((table["expression"] >= 0) & (table["expression"] < num_classes))
        keys = list(table["path"][idx])
        seen: dict[str, int] = {}
        for i, key in zip(idx, keys):
            if key in seen:
                problem = f"{key} is listed twice (also line {seen[key]})"
                raise bad_line(path, int(table["line"][i]), problem)
            seen[key] = int(table["line"][i])
        return FERDataset(
            name=NAME if num_classes == 7 else f"{NAME}{num_classes}",
            class_names=class_names,
            split=name,
            keys=keys,
            labels=table["expression"][idx],
            source=FileSource(image_root, keys, boxes=table["box"][idx]),
            extras={"valence": table["valence"][idx], "arousal": table["arousal"][idx]},
            channels=3,
            native_size=None,
        )

    return DataSplits(train=split("train", "training.csv"), test=split("test", "validation.csv"))
