"""FERPlus: FER2013's faces relabelled by 10 annotators each (``fer2013new.csv``).

Layout: ``fer2013new.csv`` (columns ``Usage, Image name, neutral, happiness, surprise,
sadness, anger, disgust, fear, contempt, unknown, NF``) next to ``fer2013.csv``, which
holds the pixels; the two list the same rows in the same order. Rows with an empty
``Image name`` are skipped (173 in the published file).

Labels follow the data set authors' majority rule: vote counts <= 1 become 0; the label is
the arg-max only if the max is more than half the sum of all 10 columns (after that
zeroing), else the face is dropped; faces whose winner is ``unknown`` or ``NF`` are dropped.
Published counts kept: 25,060 train / 3,199 PublicTest / 3,153 PrivateTest. The 8 classes,
in FERPlus's own order: Neutral, Happiness, Surprise, Sadness, Anger, Disgust, Fear,
Contempt.

The raw 10 vote counts (before the zeroing) are kept as ``extras["votes"]`` (N x 10
int16): the annotator distribution, worth comparing with a model's probabilities. Keys are
FER2013's (``fer2013.csv#<row>``) so runs on both data sets line up sample by sample.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from relabscope.data.base import ArraySource, DataSplits, FERDataset
from relabscope.data.fer2013 import (
    CSV_NAME,
    SIDE,
    USAGES,
    read_fer2013_csv,
    require_file,
    usage_of_test_split,
)
from relabscope.errors import DataError, bad_line, missing

NAME = "ferplus"
VOTES_NAME = "fer2013new.csv"
VOTE_COLUMNS = (
    "neutral",
    "happiness",
    "surprise",
    "sadness",
    "anger",
    "disgust",
    "fear",
    "contempt",
    "unknown",
    "nf",
)
CLASS_NAMES = (
    "Neutral",
    "Happiness",
    "Surprise",
    "Sadness",
    "Anger",
    "Disgust",
    "Fear",
    "Contempt",
)


def majority_labels(votes: np.ndarray) -> np.ndarray:
    """The FERPlus majority label of each row of ``votes`` (N x 10), or -1 where dropped.

    Counts <= 1 are zeroed; the arg-max wins only with more than half of the (zeroed)
    total; a winner among the last two columns (unknown, NF) is dropped too.
    """
    v = np.where(votes <= 1, 0, votes).astype(np.int64)
    total = v.sum(axis=1)
    top = v.max(axis=1)
    winner = v.argmax(axis=1)
    keep = (2 * top > total) & (winner < len(CLASS_NAMES))
    return np.where(keep, winner, -1)


def read_votes(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(usage, has_name, votes, line_numbers)`` for every data row of ``fer2013new.csv``."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            raise DataError(f"{path}: empty file (expected a header line)")
        columns = [c.strip().lower() for c in header]
        wanted = ("usage", "image name", *VOTE_COLUMNS)
        for want in wanted:
            if want not in columns:
                found = ",".join(header)
                raise bad_line(path, 1, f"header has no {want!r} column (found {found!r})")
        col = [columns.index(w) for w in wanted]
        usage, has_name, votes, lines = [], [], [], []
        for fields in reader:
            line_no = reader.line_num
            if not fields or not "".join(fields).strip():
                continue
            if len(fields) != len(columns):
                raise bad_line(
                    path, line_no, f"expected {len(columns)} fields, found {len(fields)}"
                )
            use = fields[col[0]].strip()
            if use not in USAGES:
                raise bad_line(path, line_no, f"Usage {use!r} is not one of {', '.join(USAGES)}")
            try:
                row = [int(fields[c]) for c in col[2:]]
            except ValueError:
                raise bad_line(path, line_no, "vote counts must be integers") from None
            if min(row) < 0:
                raise bad_line(path, line_no, "vote counts must not be negative")
            usage.append(use)
            has_name.append(bool(fields[col[1]].strip()))
            votes.append(row)
            lines.append(line_no)
    return (
        np.asarray(usage, dtype=str),
        np.asarray(has_name, dtype=bool),
        np.asarray(votes, dtype=np.int16).reshape(-1, len(VOTE_COLUMNS)),
        np.asarray(lines, dtype=np.int64),
    )


def load(root: Path, test_split: str = "private") -> DataSplits:
    """FERPlus's train (Training) and test (PrivateTest, or PublicTest) splits."""
    root = Path(root)
    if not root.is_dir():
        raise missing(root, "data folder")
    votes_path = require_file(root / VOTES_NAME, NAME)
    pixels_path = require_file(root / CSV_NAME, NAME)
    usage_for_test = usage_of_test_split(test_split, votes_path)
    usage, has_name, votes, lines = read_votes(votes_path)
    if len(usage) == 0:
        raise DataError(f"{votes_path}: no data rows")
    pixels = read_fer2013_csv(pixels_path)
    if len(pixels) != len(usage):
        raise DataError(
            f"{votes_path}: {len(usage)} data rows but {pixels_path} has {len(pixels)}; "
            "they must list the same faces in the same order"
        )
    differ = np.flatnonzero(usage != pixels.usage)
    if len(differ):
        i = int(differ[0])
        raise bad_line(
            votes_path,
            int(lines[i]),
            f"Usage {usage[i]} but row {i} of {pixels_path} is {pixels.usage[i]}; "
            "the two files must list the same faces in the same order",
        )
    labels = majority_labels(votes)
    kept = has_name & (labels >= 0)

    def split(name: str, use: str) -> FERDataset:
        idx = np.flatnonzero(kept & (usage == use))
        return FERDataset(
            name=NAME,
            class_names=CLASS_NAMES,
            split=name,
            keys=[f"{CSV_NAME}#{i}" for i in idx],
            labels=labels[idx],
            source=ArraySource(pixels.pixels[idx]),
            extras={"votes": votes[idx]},
            channels=1,
            native_size=SIDE,
        )

    return DataSplits(train=split("train", "Training"), test=split("test", usage_for_test))
