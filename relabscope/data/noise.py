"""Label noise: injected at random, or read from a published noise file.

:func:`inject_noise` follows the protocol of SCN / RUL (seed paper Table 3): each training
label independently, with probability ``rate``, becomes a uniformly random *different*
class. One uniform draw per sample decides the flip, so for a fixed seed the samples
flipped at a lower rate are a subset of those flipped at a higher one.

:func:`read_noise_file` reads the two published formats:

* SCN's ``0.1noise_train.txt``: ``<path> <label>`` lines, labels 0-based;
* RAF-DB's ``noise01.txt``: ``train_00001.jpg 5`` lines, labels 1-based, training rows only.

A line's path matches a sample key exactly, or else by its normalised stem (file name
without folders, extension and a trailing ``_aligned``) when exactly one key has that
stem. The file must cover every key it is given (pass the training split's keys) and may
name nothing else.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path

import numpy as np

from relabscope.errors import DataError, bad_line, missing


def inject_noise(labels: np.ndarray, rate: float, num_classes: int, seed: int) -> np.ndarray:
    """``labels`` with each one, with probability ``rate``, moved to another class.

    The new class is uniform over the ``num_classes - 1`` others. Deterministic for a
    given ``seed``; ``rate`` must lie in [0, 1).
    """
    labels = np.asarray(labels, dtype=np.int64)
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"noise rate must be in [0, 1), not {rate}")
    if num_classes < 2:
        raise ValueError(f"noise needs at least 2 classes, not {num_classes}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must lie in 0..{num_classes - 1}")
    rng = np.random.default_rng(seed)
    flip = rng.random(labels.shape) < rate
    shift = rng.integers(1, num_classes, size=labels.shape)
    return np.where(flip, (labels + shift) % num_classes, labels)


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
