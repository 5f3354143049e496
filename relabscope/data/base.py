"""The one shape every data set takes: a split of images with given labels.

A :class:`FERDataset` is a split (train or test) of a facial-expression data set. It knows
its samples' stable keys, their *given* labels (possibly noisy), their clean labels when a
data set knows them (the synthetic one does), and any extra per-sample columns worth
keeping in the run log (ambiguity, annotator votes). Items are ``(image, sample_index)``
with the image as a ``uint8`` tensor ``C x H x W``: decoding and resizing happen here, in
DataLoader workers; augmentation and normalisation happen later, batched, on the device.

The label a model trains on at a given moment (the label *in effect*, after relabelling)
is deliberately NOT stored here. DataLoader workers hold copies of the data set, so a label
written into it during training is seen late or never (the reference SCN code's bug); the
trainer keeps the labels in effect in one tensor indexed by sample.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from relabscope.errors import DataError

SPLITS = ("train", "test")


class UnreadableImage(Exception):
    """An image file that is missing, truncated or not an image."""


class ImageSource:
    """Where a split's pixels come from; ``load`` returns ``H x W x C`` uint8 at native size."""

    def __len__(self) -> int:
        raise NotImplementedError

    def load(self, index: int) -> np.ndarray:
        raise NotImplementedError

    def take(self, indices: np.ndarray) -> "ImageSource":
        raise NotImplementedError

    def array(self) -> np.ndarray | None:
        """All images as one ``N x H x W x C`` uint8 array when they already sit in memory."""
        return None

    def describe(self, index: int) -> str:
        """Where sample ``index`` lives, for error messages."""
        return f"sample {index}"


class ArraySource(ImageSource):
    """Images already decoded into one uint8 array (FER2013's CSV, the synthetic set)."""

    def __init__(self, images: np.ndarray):
        if images.ndim == 3:
            images = images[..., None]
        if images.dtype != np.uint8 or images.ndim != 4:
            raise ValueError("ArraySource wants uint8 images shaped N x H x W [x C]")
        self._images = images

    def __len__(self) -> int:
        return len(self._images)

    def load(self, index: int) -> np.ndarray:
        return self._images[index]

    def take(self, indices: np.ndarray) -> "ArraySource":
        return ArraySource(self._images[indices])

    def array(self) -> np.ndarray:
        return self._images


class FileSource(ImageSource):
    """Images as files under a root, optionally cropped to a box (AffectNet's face boxes)."""

    def __init__(
        self,
        root: Path,
        relpaths: Sequence[str],
        boxes: np.ndarray | None = None,
        grayscale: bool = False,
    ):
        self.root = Path(root)
        self.relpaths = list(relpaths)
        self.boxes = boxes  # N x 4 (x, y, w, h) or None
        self.grayscale = grayscale

    def __len__(self) -> int:
        return len(self.relpaths)

    def load(self, index: int) -> np.ndarray:
        path = self.root / self.relpaths[index]
        try:
            with Image.open(path) as opened:
                im = opened.convert("L" if self.grayscale else "RGB")
                if self.boxes is not None:
                    x, y, w, h = (int(v) for v in self.boxes[index])
                    if w > 0 and h > 0:
                        im = im.crop((x, y, x + w, y + h))
                arr = np.array(im, dtype=np.uint8)
        except (OSError, ValueError, SyntaxError) as exc:  # PIL raises these for bad files
            raise UnreadableImage(f"{path}: {exc.__class__.__name__}: {exc}") from None
        return arr[..., None] if arr.ndim == 2 else arr

    def take(self, indices: np.ndarray) -> "FileSource":
        boxes = None if self.boxes is None else self.boxes[indices]
        return FileSource(self.root, [self.relpaths[i] for i in indices], boxes, self.grayscale)

    def describe(self, index: int) -> str:
        return str(self.root / self.relpaths[index])


def resize_square(image: np.ndarray, size: int) -> np.ndarray:
    """Resize ``H x W x C`` uint8 to ``size x size`` (antialiased when shrinking)."""
    if image.shape[0] == size and image.shape[1] == size:
        return image
    channels = image.shape[2]
    im = Image.fromarray(image[..., 0] if channels == 1 else image)
    out = np.array(im.resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)
    return out[..., None] if out.ndim == 2 else out


@dataclass
class FERDataset(Dataset):
    """One split of a FER data set. Items are ``(uint8 C x H x W tensor, sample index)``.

    ``size`` is the side length items are resized to (None keeps the native size, which
    then must be the same for every image). ``labels`` are the data set's own class ids.
    """

    name: str
    class_names: tuple[str, ...]
    split: str
    keys: list[str]
    labels: np.ndarray
    source: ImageSource
    clean_labels: np.ndarray | None = None
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    channels: int = 3
    native_size: int | None = None
    size: int | None = None

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64)
        n = len(self.keys)
        if len(self.labels) != n or len(self.source) != n:
            raise ValueError("keys, labels and images must have the same length")
        if self.clean_labels is not None:
            self.clean_labels = np.asarray(self.clean_labels, dtype=np.int64)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.keys)

    def load(self, index: int) -> np.ndarray:
        """The image ``H x W x C`` uint8, resized to ``size``; raises UnreadableImage."""
        image = self.source.load(index)
        return image if self.size is None else resize_square(image, self.size)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = self.load(index)
        return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))), index

    def subset(self, indices: Sequence[int] | np.ndarray) -> "FERDataset":
        """The samples at ``indices``, in that order (for ``--limit`` and skipped images)."""
        idx = np.asarray(indices, dtype=np.int64)
        return replace(
            self,
            keys=[self.keys[i] for i in idx],
            labels=self.labels[idx],
            source=self.source.take(idx),
            clean_labels=None if self.clean_labels is None else self.clean_labels[idx],
            extras={k: v[idx] for k, v in self.extras.items()},
        )

    def with_labels(self, labels: np.ndarray) -> "FERDataset":
        """A copy whose given labels are ``labels`` (after injecting or reading noise).

        When the data set did not know clean labels, the labels it shipped with become
        the clean reference, so the log can tell injected noise from the original labels.
        """
        clean = self.labels if self.clean_labels is None else self.clean_labels
        return replace(self, labels=np.asarray(labels, dtype=np.int64), clean_labels=clean)

    def check_labels(self, where: str) -> None:
        """Raise a one-line DataError if the split is empty or a label is out of range."""
        if len(self) == 0:
            raise DataError(f"{where}: the {self.split} split of {self.name} is empty")
        bad = np.flatnonzero((self.labels < 0) | (self.labels >= self.num_classes))
        if len(bad):
            i = int(bad[0])
            raise DataError(
                f"{where}: label {int(self.labels[i])} of {self.keys[i]} is out of range "
                f"0..{self.num_classes - 1} ({len(bad)} such samples)"
            )

    def fingerprint(self) -> str:
        """A short hash of the split's keys and given labels: same data, same fingerprint."""
        h = hashlib.sha256()
        h.update(f"{self.name}|{self.split}|{','.join(self.class_names)}|".encode())
        h.update("\n".join(self.keys).encode())
        h.update(self.labels.astype("<i8").tobytes())
        return h.hexdigest()[:16]


@dataclass
class DataSplits:
    """A data set's train and test splits, as a loader returns them."""

    train: FERDataset
    test: FERDataset

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.train.class_names

    def fingerprint(self) -> str:
        return hashlib.sha256(
            (self.train.fingerprint() + self.test.fingerprint()).encode()
        ).hexdigest()[:16]
