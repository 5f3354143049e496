"""The run log's layout: every dataset's name, dtype and shape, in one place.

``docs/run-log.md`` documents the same layout for readers that use plain h5py. A change
that a reader of an older version would misread bumps ``SCHEMA_VERSION``.

Shapes use N for samples (train then test, one id space: the row), K for classes, D for
the embedding size, E for committed epochs (0-based rows), R for relabel events, M for
epochs whose embeddings were kept and G for the relabel guards a run switched on. The
first axis of every per-epoch dataset grows as epochs commit; ``epochs/done`` grows LAST,
so its length is the number of complete epochs and rows beyond it are ignored.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

FORMAT = "relabscope-runlog"
#: 2: strings fixed-length UTF-8 (h5py reads them as bytes), fletcher32 on every chunked
#: dataset, ``meta`` attribute ``digests``; 1: variable-length strings, no checksums
SCHEMA_VERSION = 2
LOG_NAME = "run.h5"
PARTIAL_SUFFIX = ".partial"
#: a resume builds the continued log under this name, then renames it over the old one
RESUME_SUFFIX = ".resuming"

SPLIT_CODES = {"train": 0, "test": 1}
EMBED_SOURCES = {"train": 0, "probe": 1}
STATUS = {"running": 0, "finished": 1, "diverged": 2, "interrupted": 3}

RELABEL_DTYPE = np.dtype(
    [
        ("epoch", "<i4"),
        ("step", "<i8"),
        ("sample", "<i8"),
        ("old", "<i2"),
        ("new", "<i2"),
        ("p_old", "<f4"),
        ("p_new", "<f4"),
    ]
)


@dataclass
class SampleTable:
    """The samples a run log covers, in row order (the sample id is the row).

    ``split`` holds SPLIT_CODES values. ``clean_label`` is -1 where unknown. ``extras`` are
    per-sample columns a data set provides (ambiguity, annotator votes).
    """

    key: list[str]
    split: np.ndarray
    given_label: np.ndarray
    clean_label: np.ndarray | None = None
    extras: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.key)
        self.split = np.asarray(self.split, dtype=np.int8)
        self.given_label = np.asarray(self.given_label, dtype=np.int16)
        if self.clean_label is None:
            self.clean_label = np.full(n, -1, dtype=np.int16)
        self.clean_label = np.asarray(self.clean_label, dtype=np.int16)
        for name, col in [("split", self.split), ("given_label", self.given_label),
                          ("clean_label", self.clean_label)] + list(self.extras.items()):
            if len(col) != n:
                raise ValueError(f"sample column {name} has {len(col)} rows, keys have {n}")

    def __len__(self) -> int:
        return len(self.key)

    @property
    def train_mask(self) -> np.ndarray:
        return self.split == SPLIT_CODES["train"]


def text_digest(values: Iterable[str]) -> str:
    """SHA-256 of a list of strings, as the ``meta`` attribute ``digests`` holds one per
    string dataset: of the list written as a JSON array (compact, UTF-8, surrogates for
    bytes that were not UTF-8), one unambiguous text for any strings, made in one call."""
    text = json.dumps(list(values), ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


def text(value: object) -> str:
    """A string as h5py returns it (bytes for variable-length strings) as str; bytes that
    are not UTF-8 (a damaged file) decode to surrogates, which no digest matches."""
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else str(value)


def digest_mismatch(digests: str, name: str, values: Iterable[str]) -> bool:
    """Whether ``values`` differ from what the ``meta`` attribute ``digests`` (JSON) holds
    for the string dataset ``name`` (False when it holds nothing for it: older logs)."""
    expected = json.loads(digests or "{}").get(name)
    if expected is None:
        return False
    values = list(values)
    return text_digest(values) != expected and _length_prefixed_digest(values) != expected


def _length_prefixed_digest(values: Iterable[str]) -> str:
    """The digest the first schema-2 logs hold (each string's UTF-8 bytes preceded by their
    length, 8 bytes little-endian): those logs still check, and only a mismatch with both
    digests is damage."""
    sha = hashlib.sha256()
    for value in values:
        data = value.encode("utf-8", "surrogateescape")
        sha.update(len(data).to_bytes(8, "little"))
        sha.update(data)
    return sha.hexdigest()


def per_epoch_datasets(
    n: int, k: int, d: int, fields: dict[str, tuple[int, ...]], has_centers: bool, guards: int = 0
) -> dict[str, tuple[tuple[int, ...], str]]:
    """Per-epoch datasets: name -> (shape of one epoch's row, dtype). ``epochs/vetoed``
    exists only in logs of runs with relabel guards (``meta`` attr ``guards`` names them):
    a log without it recorded no vetoes, which is not the same as zero."""
    specs: dict[str, tuple[tuple[int, ...], str]] = {
        "epochs/label": ((n,), "<i2"),
        "epochs/pred": ((n,), "<i2"),
        "epochs/prob": ((n, k), "<f2"),
        "epochs/loss": ((n,), "<f4"),
        "epochs/distance": ((n, k), "<f4"),
        "epochs/class_mean": ((k, d), "<f4"),
        "epochs/class_count": ((k,), "<i4"),
        "epochs/embed_source": ((), "<i1"),
        "epochs/test_acc": ((), "<f4"),
        "epochs/class_acc": ((k,), "<f4"),
        "epochs/confusion": ((k, k), "<i4"),
        "epochs/train_loss": ((), "<f4"),
        "epochs/train_acc": ((), "<f4"),
        "epochs/lr": ((), "<f4"),
        "epochs/seconds": ((), "<f4"),
        "epochs/unreadable": ((), "<i4"),
        "epochs/relabel_end": ((), "<i8"),
    }
    for name, shape in fields.items():
        specs[f"epochs/field/{name}"] = ((n, *shape), "<f4")
    if has_centers:
        specs["epochs/center"] = ((k, d), "<f4")
    if guards:
        specs["epochs/vetoed"] = ((guards, k), "<i4")
    return specs


def chunk_shape(row_shape: tuple[int, ...], itemsize: int) -> tuple[int, ...]:
    """One epoch per chunk along axis 0, about 1 MiB per chunk along the sample axis."""
    if not row_shape:
        return (1024,)
    inner = int(np.prod(row_shape[1:])) if len(row_shape) > 1 else 1
    rows = max(1, min(row_shape[0], (1 << 20) // max(1, inner * itemsize)))
    return (1, rows, *row_shape[1:])
