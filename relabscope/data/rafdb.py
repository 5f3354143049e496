"""RAF-DB basic from its published layout.

``EmoLabel/list_patition_label.txt`` (sic) lists one image per line, ``train_00001.jpg 5``
or ``test_0001.jpg 3``, labels 1..7 = Surprise, Fear, Disgust, Happiness, Sadness, Anger,
Neutral (stored here as 0..6, in that order). The split comes from the name's prefix. The
aligned 100x100 faces are ``Image/aligned/<stem>_aligned.jpg``; sample keys are those
paths relative to the data folder. Published sizes: 12,271 train / 3,068 test.

Images are not opened here (the trainer decodes them, and skips unreadable ones).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from relabscope.data.base import DataSplits, FERDataset, FileSource
from relabscope.errors import DataError, bad_line, missing

NAME = "rafdb"
LABEL_FILE = Path("EmoLabel") / "list_patition_label.txt"
IMAGE_DIR = Path("Image") / "aligned"
CLASS_NAMES = ("Surprise", "Fear", "Disgust", "Happiness", "Sadness", "Anger", "Neutral")
NATIVE_SIZE = 100


def image_key(name: str) -> str:
    """``train_00001.jpg`` -> ``Image/aligned/train_00001_aligned.jpg``."""
    stem = name.rsplit(".", 1)[0] if "." in name else name
    return f"{IMAGE_DIR.as_posix()}/{stem}_aligned.jpg"


def read_label_file(path: Path) -> tuple[list[str], list[str], list[int]]:
    """``(names, splits, labels)`` of the label file, labels 0-based."""
    names: list[str] = []
    splits: list[str] = []
    labels: list[int] = []
    first_line: dict[str, int] = {}
    with open(path, encoding="utf-8-sig") as f:
        for line_no, line in enumerate(f, start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 2:
                found = line.strip()
                raise bad_line(path, line_no, f"expected '<image name> <label>', found {found!r}")
            name, raw = fields
            try:
                label = int(raw)
            except ValueError:
                raise bad_line(path, line_no, f"label {raw!r} is not an integer") from None
            if not 1 <= label <= len(CLASS_NAMES):
                problem = f"label {label} is out of range 1..{len(CLASS_NAMES)}"
                raise bad_line(path, line_no, problem)
            if name.startswith("train_"):
                split = "train"
            elif name.startswith("test_"):
                split = "test"
            else:
                problem = f"image name {name!r} starts with neither train_ nor test_"
                raise bad_line(path, line_no, problem)
            if name in first_line:
                problem = f"{name} is listed twice (also line {first_line[name]})"
                raise bad_line(path, line_no, problem)
            first_line[name] = line_no
            names.append(name)
            splits.append(split)
            labels.append(label - 1)
    return names, splits, labels


def load(root: Path) -> DataSplits:
    """RAF-DB basic's train and test splits, in label-file order."""
    root = Path(root)
    if not root.is_dir():
        raise missing(root, "data folder")
    path = root / LABEL_FILE
    if not path.is_file():
        raise DataError(f"{missing(path, 'file')} ({NAME} layout)")
    if not (root / IMAGE_DIR).is_dir():
        raise DataError(f"{missing(root / IMAGE_DIR, 'folder')} ({NAME} layout)")
    names, splits, labels = read_label_file(path)
    if not names:
        raise DataError(f"{path}: no labelled images")
    split_of = np.asarray(splits)
    label_of = np.asarray(labels, dtype=np.int64)
    keys = [image_key(n) for n in names]

    def split(name: str) -> FERDataset:
        idx = np.flatnonzero(split_of == name)
        relpaths = [keys[i] for i in idx]
        return FERDataset(
            name=NAME,
            class_names=CLASS_NAMES,
            split=name,
            keys=relpaths,
            labels=label_of[idx],
            source=FileSource(root, relpaths),
            channels=3,
            native_size=NATIVE_SIZE,
        )

    return DataSplits(train=split("train"), test=split("test"))
