"""FER2013 from its published layout: ``fer2013.csv`` (columns ``emotion,pixels,Usage``).

Each data row holds one 48x48 grey face as 2304 space-separated values 0..255, its emotion
0..6 (Angry, Disgust, Fear, Happy, Sad, Surprise, Neutral) and its Usage: ``Training``
(28,709 rows), ``PublicTest`` (3,589) or ``PrivateTest`` (3,589). The train split is
Training; the test split is PrivateTest unless ``test_split="public"``.

Sample keys are ``fer2013.csv#<row>`` with ``row`` the 0-based data row of the CSV (header
and blank lines not counted), so the same face has the same key here and in FERPlus
(:mod:`relabscope.data.ferplus`), whose ``fer2013new.csv`` lists the same rows in the same
order. :func:`read_fer2013_csv` is the shared reader.

Caveat: the published file is ~290 MB of text. Splitting it into Python strings per value
takes tens of seconds, so the pixel columns are decoded with numpy, a few hundred rows at a
time, straight from the bytes; only when a chunk looks malformed do we fall back to a slow
per-row check, to name the offending line.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from relabscope.data.base import ArraySource, DataSplits, FERDataset
from relabscope.errors import DataError, bad_line, missing

NAME = "fer2013"
CSV_NAME = "fer2013.csv"
CLASS_NAMES = ("Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral")
SIDE = 48
NUM_PIXELS = SIDE * SIDE
USAGES = ("Training", "PublicTest", "PrivateTest")
TEST_SPLITS = {"private": "PrivateTest", "public": "PublicTest"}

_CHUNK_ROWS = 512  # rows decoded per numpy pass: a few MB, cache friendly


@dataclass
class Fer2013Csv:
    """The rows of a ``fer2013.csv``, in file order."""

    path: Path
    emotion: np.ndarray  # (N,) int64, 0..6
    usage: np.ndarray  # (N,) str, one of USAGES
    pixels: np.ndarray  # (N, 48, 48) uint8
    line_numbers: np.ndarray  # (N,) int64, the 1-based line of each row in the file

    def __len__(self) -> int:
        return len(self.emotion)


def require_file(path: Path, layout: str) -> Path:
    """``path`` if it is a file, else the standard one-line 'not found' error."""
    if not path.is_file():
        raise DataError(f"{missing(path, 'file')} ({layout} layout)")
    return path


def usage_of_test_split(test_split: str, path: Path) -> str:
    """The Usage value the test split is made of, for the ``test_split`` option."""
    if test_split not in TEST_SPLITS:
        raise DataError(
            f"{path}: test_split must be one of {', '.join(TEST_SPLITS)}, not {test_split!r}"
        )
    return TEST_SPLITS[test_split]


def read_fer2013_csv(path: Path | str) -> Fer2013Csv:
    """Read and validate a ``fer2013.csv``; raises a one-line DataError naming the line."""
    path = Path(path)
    data = path.read_bytes()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]

    end = data.find(b"\n")
    header_end = len(data) if end < 0 else end
    header = data[:header_end].decode("utf-8", "replace").rstrip("\r")
    columns = [c.strip().strip('"').strip().lower() for c in header.split(",")]
    index = {}
    for want in ("emotion", "pixels", "usage"):
        if want not in columns:
            raise bad_line(path, 1, f"header has no {want!r} column (found {header!r})")
        index[want] = columns.index(want)
    ncols = len(columns)

    emotions: list[bytes] = []
    usages: list[bytes] = []
    starts: list[int] = []
    ends: list[int] = []
    lines: list[int] = []
    n = len(data)
    pos = header_end + 1
    line_no = 1
    while pos < n:
        line_no += 1
        stop = data.find(b"\n", pos)
        if stop < 0:
            stop = n
        line_end = stop
        if line_end > pos and data[line_end - 1] == 13:  # \r
            line_end -= 1
        if line_end - pos < 16 and not data[pos:line_end].strip():  # a blank line
            pos = stop + 1
            continue
        commas = data.count(b",", pos, line_end)
        if commas != ncols - 1:
            raise bad_line(
                path, line_no, f"expected {ncols} comma-separated fields, found {commas + 1}"
            )
        field_start = pos
        bounds = []
        for _ in range(ncols):
            comma = data.find(b",", field_start, line_end)
            field_end = line_end if comma < 0 else comma
            bounds.append((field_start, field_end))
            field_start = field_end + 1
        a, b = bounds[index["pixels"]]
        while a < b and data[a] in b' "':
            a += 1
        while b > a and data[b - 1] in b' "':
            b -= 1
        starts.append(a)
        ends.append(b)
        ea, eb = bounds[index["emotion"]]
        ua, ub = bounds[index["usage"]]
        emotions.append(data[ea:eb])
        usages.append(data[ua:ub])
        lines.append(line_no)
        pos = stop + 1

    line_numbers = np.asarray(lines, dtype=np.int64)
    emotion = np.empty(len(lines), dtype=np.int64)
    for i, raw in enumerate(emotions):
        text = raw.strip().strip(b'"').strip()
        try:
            value = int(text)
        except ValueError:
            shown = text.decode(errors="replace")
            raise bad_line(path, lines[i], f"emotion {shown!r} is not an integer") from None
        if not 0 <= value < len(CLASS_NAMES):
            problem = f"emotion {value} is out of range 0..{len(CLASS_NAMES) - 1}"
            raise bad_line(path, lines[i], problem)
        emotion[i] = value
    usage = np.empty(len(lines), dtype=object)
    for i, raw in enumerate(usages):
        name = raw.strip().strip(b'"').strip().decode("utf-8", "replace")
        if name not in USAGES:
            raise bad_line(path, lines[i], f"Usage {name!r} is not one of {', '.join(USAGES)}")
        usage[i] = name
    pixels = _decode_pixels(data, starts, ends, lines, path)
    return Fer2013Csv(path, emotion, usage.astype(str), pixels, line_numbers)


def _decode_pixels(
    data: bytes, starts: list[int], ends: list[int], lines: list[int], path: Path
) -> np.ndarray:
    """The pixel fields ``data[starts[i]:ends[i]]`` as an ``N x 48 x 48`` uint8 array."""
    n = len(starts)
    out = np.empty((n, NUM_PIXELS), dtype=np.uint8)
    view = memoryview(data)

    def decode(r0: int) -> None:
        r1 = min(n, r0 + _CHUNK_ROWS)
        # three leading spaces: every number then has three bytes in front of it to look at
        chunk = b"   " + b" ".join([view[starts[i] : ends[i]] for i in range(r0, r1)])
        s = np.frombuffer(chunk, dtype=np.uint8)
        digit = (s - np.uint8(48)) < 10  # uint8 wraps: anything below '0' becomes large
        if not np.all(digit | (s == 32)):
            _raise_row_problem(data, starts, ends, lines, path, r0, r1)
        if np.any(digit[3:] & digit[2:-1] & digit[1:-2] & digit[:-3]):  # 4+ digits
            _raise_row_problem(data, starts, ends, lines, path, r0, r1)
        last = np.empty(len(s), dtype=bool)  # the last digit of a number
        np.greater(digit[:-1], digit[1:], out=last[:-1])
        last[-1] = digit[-1]
        at = np.flatnonzero(last)
        if len(at) != (r1 - r0) * NUM_PIXELS:
            _raise_row_problem(data, starts, ends, lines, path, r0, r1)
        # only digits and spaces are left, so "> 32" means "is a digit"
        tens, hundreds = s[at - 1], s[at - 2]
        has_tens = tens > 32
        has_hundreds = has_tens & (hundreds > 32)
        value = s[at].astype(np.int16) - 48
        value += (tens.astype(np.int16) - 48) * 10 * has_tens
        value += (hundreds.astype(np.int16) - 48) * 100 * has_hundreds
        if value.max() > 255:
            _raise_row_problem(data, starts, ends, lines, path, r0, r1)
        out[r0:r1] = value.reshape(r1 - r0, NUM_PIXELS)

    chunks = range(0, n, _CHUNK_ROWS)
    workers = min(8, os.cpu_count() or 1, len(chunks))
    if workers > 1:  # numpy releases the GIL in these loops; chunks write disjoint rows
        with ThreadPoolExecutor(workers) as pool:
            for _ in pool.map(decode, chunks):  # re-raises the first chunk's error
                pass
    else:
        for r0 in chunks:
            decode(r0)
    return out.reshape(n, SIDE, SIDE)


def _raise_row_problem(
    data: bytes, starts: list[int], ends: list[int], lines: list[int], path: Path, r0: int, r1: int
) -> None:
    """Find the first malformed pixel field among rows ``r0:r1`` and raise its error."""
    for i in range(r0, r1):
        tokens = data[starts[i] : ends[i]].split(b" ")
        tokens = [t for t in tokens if t]
        for t in tokens:
            if not t.isdigit():
                shown = t[:20].decode(errors="replace")
                raise bad_line(path, lines[i], f"pixel value {shown!r} is not an integer")
            if len(t) > 3 or int(t) > 255:
                shown = t[:20].decode()
                raise bad_line(path, lines[i], f"pixel value {shown} is out of range 0..255")
        if len(tokens) != NUM_PIXELS:
            problem = f"expected {NUM_PIXELS} pixel values, found {len(tokens)}"
            raise bad_line(path, lines[i], problem)
    raise bad_line(path, lines[r0], "malformed pixels field")  # not reached for sane input


def load(root: Path, test_split: str = "private") -> DataSplits:
    """FER2013's train (Training) and test (PrivateTest, or PublicTest) splits."""
    root = Path(root)
    if not root.is_dir():
        raise missing(root, "data folder")
    path = require_file(root / CSV_NAME, NAME)
    usage_for_test = usage_of_test_split(test_split, path)
    table = read_fer2013_csv(path)
    if len(table) == 0:
        raise DataError(f"{path}: no data rows")
    keys = np.array([f"{CSV_NAME}#{i}" for i in range(len(table))], dtype=object)

    def split(name: str, usage: str) -> FERDataset:
        idx = np.flatnonzero(table.usage == usage)
        return FERDataset(
            name=NAME,
            class_names=CLASS_NAMES,
            split=name,
            keys=list(keys[idx]),
            labels=table.emotion[idx],
            source=ArraySource(table.pixels[idx]),
            channels=1,
            native_size=SIDE,
        )

    return DataSplits(train=split("train", "Training"), test=split("test", usage_for_test))
