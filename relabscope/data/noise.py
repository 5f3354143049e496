"""Label noise: injected at random (symmetric or by a class-to-class matrix), or read from a
published noise file.

:func:`inject_noise` follows the protocol of SCN / RUL (seed paper Table 3): each training
label independently, with probability ``rate``, becomes a uniformly random *different*
class. One uniform draw per sample decides the flip, so for a fixed seed the samples
flipped at a lower rate are a subset of those flipped at a higher one.

:func:`inject_noise_matrix` draws class-dependent noise, the kind real annotators make
(fear taken for surprise, disgust for anger, sadness for neutral): a sample given class i
keeps or changes its label by row i of a K x K row-stochastic matrix ``T``,
``T[i, j] = P(noisy label j | label i)``. :func:`read_noise_matrix` reads ``T`` from a
CSV file (K rows of K numbers, optionally headed by the class names) or a ``.npy`` array
and checks it; :func:`flip_matrix` measures the matrix a set of labels realised.

:func:`read_noise_file` reads the two published formats:

* SCN's ``0.1noise_train.txt``: ``<path> <label>`` lines, labels 0-based;
* RAF-DB's ``noise01.txt``: ``train_00001.jpg 5`` lines, labels 1-based, training rows only.

A line's path matches a sample key exactly, or else by its normalised stem (file name
without folders, extension and a trailing ``_aligned``) when exactly one key has that
stem. The file must cover every key it is given (pass the training split's keys) and may
name nothing else.
"""

from __future__ import annotations

import csv
import fnmatch
import hashlib
from pathlib import Path
from typing import Sequence

import numpy as np

from relabscope.errors import DataError, bad_line, missing


def inject_noise(labels: np.ndarray, rate: float, num_classes: int, seed: int) -> np.ndarray:
    """``labels`` with each one, with probability ``rate``, moved to another class.

    The new class is uniform over the ``num_classes - 1`` others. Deterministic for a
    given ``seed``; ``rate`` must lie in [0, 1).
    """
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"noise rate must be in [0, 1), not {rate}")
    labels = flippable(labels, num_classes, "noise")
    rng = np.random.default_rng(seed)
    flip = rng.random(labels.shape) < rate
    shift = rng.integers(1, num_classes, size=labels.shape)
    return np.where(flip, (labels + shift) % num_classes, labels)


def flippable(labels: np.ndarray, num_classes: int, what: str) -> np.ndarray:
    """``labels`` as int64, checked to be class ids that another class can replace.

    Raises:
        ValueError: fewer than 2 classes (``what`` names the caller), or a label out of range.
    """
    labels = np.asarray(labels, dtype=np.int64)
    if num_classes < 2:
        raise ValueError(f"{what} needs at least 2 classes, not {num_classes}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must lie in 0..{num_classes - 1}")
    return labels


# ---------------------------------------------------------------------- class-dependent noise
#: how far a row of a noise matrix may sum from 1
ROW_SUM_TOLERANCE = 1e-6


def inject_noise_matrix(labels: np.ndarray, matrix: np.ndarray, seed: int) -> np.ndarray:
    """``labels`` with each label ``i`` replaced by a draw from row ``i`` of ``matrix``.

    One uniform draw per sample picks the new label by inverse CDF of its row, so an entry
    of 0 is never drawn, a row with 1 on the diagonal keeps every label, and the result is
    deterministic for a given ``seed``. ``matrix`` must be a checked noise matrix
    (:func:`check_noise_matrix`).
    """
    labels = np.asarray(labels, dtype=np.int64)
    matrix = np.asarray(matrix, dtype=np.float64)
    k = len(matrix)
    if labels.size and (labels.min() < 0 or labels.max() >= k):
        raise ValueError(f"labels must lie in 0..{k - 1}")
    u = np.random.default_rng(seed).random(labels.shape)
    cdf = np.cumsum(matrix, axis=1)
    drawn = np.count_nonzero(u[..., None] >= cdf[labels], axis=-1)
    # rounding can leave a row's CDF a hair below 1: such a draw goes to the row's last
    # class with a positive entry, never to a class the row gives 0
    last_positive = k - 1 - np.argmax(matrix[:, ::-1] > 0, axis=1)
    return np.minimum(drawn, last_positive[labels]).astype(np.int64)


def check_noise_matrix(matrix: np.ndarray, class_names: Sequence[str], where: str | Path) -> np.ndarray:
    """``matrix`` as float64 when it is a noise matrix for ``class_names``: K x K, finite,
    non-negative, each row summing to 1 within :data:`ROW_SUM_TOLERANCE`; else a one-line
    DataError naming ``where`` (the file) and the first problem."""
    names = list(class_names)
    k = len(names)
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape != (k, k):
        shape = " x ".join(map(str, m.shape)) or "a scalar"
        raise DataError(f"{where}: noise matrix is {shape}, but the data set has {k} classes ({', '.join(names)})")
    bad = np.argwhere(~np.isfinite(m) | (m < 0))
    if len(bad):
        i, j = (int(v) for v in bad[0])
        raise DataError(f"{where}: noise matrix entry [{names[i]}, {names[j]}] is {float(m[i, j])!r}; "
                        "entries must be finite and non-negative")
    sums = m.sum(axis=1)
    off = np.flatnonzero(np.abs(sums - 1.0) > ROW_SUM_TOLERANCE)
    if len(off):
        i = int(off[0])
        raise DataError(f"{where}: noise matrix row {names[i]!r} sums to {sums[i]:.9g}, not 1 "
                        f"(within {ROW_SUM_TOLERANCE:g})")
    return m


def read_noise_matrix(path: Path | str, class_names: Sequence[str]) -> np.ndarray:
    """The checked noise matrix (:func:`check_noise_matrix`) a file holds, rows and columns
    in the order of ``class_names``.

    A ``.npy`` file holds the K x K array in class-id order. Any other file is CSV: K rows
    of K numbers in class-id order, or a header row of class names (its first cell free: empty
    or text, not a number) and K rows each led by a class name, in any order (names match case-insensitively). Blank
    lines and lines starting with ``#`` are skipped. Raises a one-line DataError naming the
    file (and line) when it is missing, malformed or not a noise matrix.
    """
    path = Path(path)
    if not path.is_file():
        raise missing(path, "noise matrix")
    if path.suffix.lower() == ".npy":
        try:
            matrix = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise DataError(f"{path}: not a readable .npy array ({exc})") from None
        if not np.issubdtype(matrix.dtype, np.number):
            raise DataError(f"{path}: noise matrix holds {matrix.dtype}, not numbers")
        return check_noise_matrix(matrix, class_names, path)
    with open(path, encoding="utf-8-sig", newline="") as f:
        rows = [(line_no, [cell.strip() for cell in cells])
                for line_no, cells in enumerate(csv.reader(f), start=1)
                if cells and any(cells) and not cells[0].lstrip().startswith("#")]
    if not rows:
        raise DataError(f"{path}: noise matrix file is empty")
    header = not _is_number(rows[0][1][0])  # a named matrix leads with a free cell, a plain one with a number
    return check_noise_matrix(_named(path, rows, class_names) if header else _numbers(path, rows), class_names, path)


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _numbers(path: Path, rows: list[tuple[int, list[str]]]) -> np.ndarray:
    width = len(rows[0][1])
    values = []
    for line_no, cells in rows:
        if len(cells) != width:
            raise bad_line(path, line_no, f"expected {width} values like the first row, found {len(cells)}")
        values.append([_number(path, line_no, cell) for cell in cells])
    return np.array(values, dtype=np.float64)


def _number(path: Path, line_no: int, cell: str) -> float:
    try:
        return float(cell)
    except ValueError:
        raise bad_line(path, line_no, f"{cell!r} is not a number") from None


def _named(path: Path, rows: list[tuple[int, list[str]]], class_names: Sequence[str]) -> np.ndarray:
    """A CSV matrix headed by class names, reordered to ``class_names``."""
    index = {name.lower(): i for i, name in enumerate(class_names)}
    k = len(class_names)

    def lookup(name: str, line_no: int) -> int:
        found = index.get(name.lower())
        if found is None:
            raise bad_line(path, line_no, f"unknown class {name!r}; the data set's classes: {', '.join(class_names)}")
        return found

    head_line, head = rows[0]
    columns = [lookup(name, head_line) for name in head[1:]]
    if sorted(columns) != list(range(k)):
        raise bad_line(path, head_line, f"the header must name each of the {k} classes once: {', '.join(class_names)}")
    matrix = np.full((k, k), np.nan)
    for line_no, cells in rows[1:]:
        if len(cells) != k + 1:
            raise bad_line(path, line_no, f"expected a class name and {k} values, found {len(cells)} cells")
        i = lookup(cells[0], line_no)
        if not np.isnan(matrix[i]).all():
            raise bad_line(path, line_no, f"row {cells[0]!r} is given twice")
        matrix[i, columns] = [_number(path, line_no, cell) for cell in cells[1:]]
    absent = [class_names[i] for i in range(k) if np.isnan(matrix[i]).all()]
    if absent:
        raise DataError(f"{path}: noise matrix has no row for {absent[0]!r} ({len(absent)} of {k} rows missing)")
    return matrix


def matrix_digest(matrix: np.ndarray) -> str:
    """SHA-256 of a noise matrix's float64 values (little-endian, row-major): what a run
    records, so two runs can tell whether they drew from the same matrix."""
    return hashlib.sha256(np.ascontiguousarray(matrix, dtype="<f8").tobytes()).hexdigest()


def flip_matrix(labels: np.ndarray, noisy: np.ndarray, num_classes: int) -> np.ndarray:
    """The realised noise matrix ``(K, K)``: row i the fractions of the samples labelled i
    in ``labels`` that ``noisy`` gives each class (a row of NaN for a class absent from
    ``labels``)."""
    labels = np.asarray(labels, dtype=np.int64)
    noisy = np.asarray(noisy, dtype=np.int64)
    k = num_classes
    counts = np.bincount(labels * k + noisy, minlength=k * k).reshape(k, k).astype(np.float64)
    totals = counts.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, counts / np.maximum(totals, 1.0), np.nan)


def normalised_stem(path: str) -> str:
    """``Image/aligned/train_00001_aligned.jpg`` and ``train_00001.jpg`` -> ``train_00001``."""
    name = path.replace("\\", "/").rsplit("/", 1)[-1]
    if "." in name:
        name = name.rsplit(".", 1)[0]
    if name.endswith("_aligned"):
        name = name[: -len("_aligned")]
    return name


def base_from_name(path: Path) -> int | None:
    """0 for SCN-style ``*noise_train*`` names, 1 for RAF-DB-style ``noise01.txt``."""
    name = path.name.lower()
    if fnmatch.fnmatch(name, "*noise_train*"):
        return 0
    if fnmatch.fnmatch(name, "noise0*.txt"):
        return 1
    return None


def read_noise_file(
    path: Path | str, keys: list[str], num_classes: int, base: int | None = None
) -> np.ndarray:
    """The label (0-based, int64) the noise file gives each of ``keys``, in their order.

    ``base`` is the file's first label (0 or 1); None detects it from the file name
    (``*noise_train*`` -> 0, ``noise0*.txt`` -> 1) or else from the labels (a 0 means
    0-based, a ``num_classes`` means 1-based). Raises a one-line DataError naming the
    file (and line) when the file is missing, malformed, names an unknown sample or
    leaves a key without a label.
    """
    path = Path(path)
    if base not in (None, 0, 1):
        raise ValueError(f"base must be None, 0 or 1, not {base!r}")
    if not path.is_file():
        raise missing(path, "noise file")

    entries: list[tuple[int, str, int]] = []  # (line, path, raw label)
    with open(path, encoding="utf-8-sig") as f:
        for line_no, line in enumerate(f, start=1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            parts = text.rsplit(None, 1)
            if len(parts) != 2:
                raise bad_line(path, line_no, f"expected '<path> <label>', found {text!r}")
            try:
                raw = int(parts[1])
            except ValueError:
                raise bad_line(path, line_no, f"label {parts[1]!r} is not an integer") from None
            entries.append((line_no, parts[0], raw))

    if base is None:
        base = base_from_name(path)
    if base is None:
        raw_labels = {raw for _, _, raw in entries}
        zero, top = 0 in raw_labels, num_classes in raw_labels
        if zero and not top:
            base = 0
        elif top and not zero:
            base = 1
        else:
            why = "labels run from 0 to num_classes" if zero else "no label is 0 or num_classes"
            raise DataError(
                f"{path}: cannot tell whether labels are 0- or 1-based ({why}); "
                "give the base explicitly"
            )

    exact = {key: i for i, key in enumerate(keys)}
    by_stem: dict[str, int] = {}
    ambiguous: set[str] = set()
    for i, key in enumerate(keys):
        stem = normalised_stem(key)
        if stem in by_stem:
            ambiguous.add(stem)
        by_stem[stem] = i

    labels = np.full(len(keys), -1, dtype=np.int64)
    line_of = np.zeros(len(keys), dtype=np.int64)
    for line_no, name, raw in entries:
        label = raw - base
        if not 0 <= label < num_classes:
            raise bad_line(
                path, line_no, f"label {raw} is out of range {base}..{num_classes - 1 + base}"
            )
        found = exact.get(name)
        if found is None:
            stem = normalised_stem(name)
            if stem in ambiguous:
                problem = f"{name} matches several samples by its stem {stem!r}"
                raise bad_line(path, line_no, problem)
            found = by_stem.get(stem)
        if found is None:
            raise bad_line(path, line_no, f"{name} is not a sample of this split")
        if line_of[found]:
            problem = f"{keys[found]} is given a label twice (also line {line_of[found]})"
            raise bad_line(path, line_no, problem)
        labels[found] = label
        line_of[found] = line_no

    uncovered = np.flatnonzero(line_of == 0)
    if len(uncovered):
        raise DataError(
            f"{path}: no label for {keys[int(uncovered[0])]} "
            f"({len(uncovered)} of {len(keys)} samples missing)"
        )
    return labels
