"""From a config to batches on the device: the data half of a training run.

``prepare`` loads the data set, applies label noise and ``--limit``, drops images that
cannot be decoded (counting them and naming the first few) and builds the sample table the
run log records. ``ImageBatches`` then serves uint8 batches for any sample order:

- When a split's decoded pixels fit in ``cache_gb``, every image is decoded ONCE (by
  several DataLoader workers), resized to the storage size and kept in one uint8 tensor;
  batches are gathered from it in a background thread into pinned memory, so the GPU never
  waits for JPEG decoding after the first pass.
- Otherwise batches stream from a DataLoader with persistent workers and pinned memory; an
  image that fails to decode mid-run is replaced by zeros and counted per epoch.

Images are stored at ``min(native size, training size)``: upsampling (RAF-DB's 100 px to
224) happens on the device, so the cache holds the small originals.
"""

from __future__ import annotations

import hashlib
import os
import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from relabscope.data import load_dataset
from relabscope.data.base import FERDataset, UnreadableImage
from relabscope.data.canaries import CANARY_COLUMN, plant_canaries
from relabscope.data.corrections import Applied, apply_corrections, read_corrections
from relabscope.data.journal import decision_keys
from relabscope.data.noise import (inject_noise, inject_noise_matrix, matrix_digest, read_noise_file,
                                   read_noise_matrix)
from relabscope.errors import DataError
from relabscope.runlog.schema import SPLIT_CODES, SampleTable

if TYPE_CHECKING:
    from relabscope.config import TrainConfig

MAX_NAMED_FAILURES = 3


@dataclass
class PreparedData:
    """The splits a run trains and tests on, and what the run log records about them."""

    train: FERDataset
    test: FERDataset
    skipped: list[str] = field(default_factory=list)  # "key: reason" of dropped images
    fingerprint: str = ""
    noise_matrix_sha256: str | None = None  # of the --noise-matrix the training labels were drawn with
    corrections: Applied | None = None  # the --corrections applied to the training split

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.train.class_names

    @property
    def num_train(self) -> int:
        return len(self.train)

    def samples_fingerprint(self) -> str:
        """A hash of the samples a run covers (keys and given labels, train then test):
        changes when an image becomes unreadable or a noise setting differs."""
        h = hashlib.sha256("\n".join(self.train.keys + self.test.keys).encode())
        h.update(np.concatenate([self.train.labels, self.test.labels]).astype("<i8").tobytes())
        return h.hexdigest()[:16]

    def sample_table(self) -> SampleTable:
        """Train rows then test rows: the sample id of a test image is ``num_train + i``."""
        train, test = self.train, self.test
        clean = None
        if train.clean_labels is not None or test.clean_labels is not None:
            clean = np.concatenate([_or_unknown(train.clean_labels, len(train)),
                                    _or_unknown(test.clean_labels, len(test))])
        extras = {}
        for name in sorted(set(train.extras) & set(test.extras)):
            extras[name] = np.concatenate([train.extras[name], test.extras[name]])
        return SampleTable(
            key=train.keys + test.keys,
            split=np.r_[np.full(len(train), SPLIT_CODES["train"]), np.full(len(test), SPLIT_CODES["test"])],
            given_label=np.concatenate([train.labels, test.labels]),
            clean_label=clean,
            extras=extras,
        )


def _or_unknown(labels: np.ndarray | None, n: int) -> np.ndarray:
    return np.full(n, -1, np.int64) if labels is None else labels


def storage_size(ds: FERDataset, image_size: int) -> int | None:
    """Side length images are decoded to: the training size, or the native size if smaller."""
    if ds.native_size is not None and ds.native_size <= image_size:
        return None  # keep native; the device upsamples
    return image_size


def prepare(cfg: TrainConfig) -> PreparedData:
    """Load, add noise, limit and size the splits ``cfg`` names. Raises DataError."""
    splits = load_dataset(cfg.dataset, cfg.data, **cfg.dataset_options)
    where = cfg.data or cfg.dataset
    train, test = splits.train, splits.test
    train.check_labels(where)
    test.check_labels(where)
    fingerprint = splits.fingerprint()
    noise_matrix = None
    if cfg.noise_file:
        train = train.with_labels(read_noise_file(cfg.noise_file, train.keys, train.num_classes))
    elif cfg.noise_matrix:
        noise_matrix = read_noise_matrix(cfg.noise_matrix, train.class_names)
        train = train.with_labels(inject_noise_matrix(train.labels, noise_matrix, cfg.effective_noise_seed))
    elif cfg.noise > 0:
        train = train.with_labels(
            inject_noise(train.labels, cfg.noise, train.num_classes, cfg.effective_noise_seed)
        )
    if cfg.limit is not None and cfg.limit < len(train):
        train = train.subset(np.arange(cfg.limit))
    corrections = None
    if cfg.corrections:
        corrections = apply_corrections(decision_keys(train.keys), train.labels, train.class_names,
                                        read_corrections(cfg.corrections), mismatch=cfg.corrections_mismatch)
        # the labels as reviewed, not with_labels: the shipped labels stay what they were
        # (the clean reference, when known), they are not promoted to clean ones
        train = replace(train, labels=corrections.labels).subset(np.flatnonzero(corrections.keep))
    if cfg.canaries > 0:
        like = read_noise_matrix(cfg.canary_matrix, train.class_names) if cfg.canary_matrix else None
        train, test = _with_canaries(train, test, cfg.canaries, cfg.seed, like)
    for ds in (train, test):
        ds.size = storage_size(ds, cfg.image_size)
    return PreparedData(train, test, fingerprint=fingerprint,
                        noise_matrix_sha256=None if noise_matrix is None else matrix_digest(noise_matrix),
                        corrections=corrections)


def _with_canaries(train: FERDataset, test: FERDataset, fraction: float, seed: int,
                   like: np.ndarray | None) -> tuple[FERDataset, FERDataset]:
    """The splits with canaries planted in the training labels (``data/canaries.py``; where
    they go: ``like``, or uniformly): the labels from before each flip go into the extra
    column both splits then carry. Not ``with_labels``: the labels before the canaries are
    not promoted to clean ones."""
    planted, original = plant_canaries(train.labels, fraction, train.num_classes, seed, like)
    train = replace(train, labels=planted, extras={**train.extras, CANARY_COLUMN: original})
    test = replace(test, extras={**test.extras, CANARY_COLUMN: np.full(len(test), -1, np.int64)})
    return train, test


def split_batches(order: torch.Tensor, batch_size: int, min_last: int = 2) -> list[torch.Tensor]:
    """Consecutive batches of ``order``; a final batch of fewer than ``min_last`` samples
    joins the one before it (batch normalisation cannot train on a single sample; under
    torchrun ``min_last`` is twice the world size, so that every rank's share of the last
    batch holds two). Every sample of ``order`` is in exactly one batch.

    >>> [len(b) for b in split_batches(torch.arange(259), 64, min_last=4)]
    [64, 64, 64, 67]
    >>> [len(b) for b in split_batches(torch.arange(259), 64)]
    [64, 64, 64, 64, 3]
    """
    batches = list(torch.split(order, batch_size))
    if len(batches) > 1 and len(batches[-1]) < min_last:
        last = batches.pop()
        batches[-1] = torch.cat([batches[-1], last])
    return batches


# ---------------------------------------------------------------------- decoding
class _Decoded(Dataset):
    """Wraps a split so that a bad image yields zeros and a note instead of an exception."""

    def __init__(self, ds: FERDataset):
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, str]:
        try:
            image, _ = self.ds[index]
            return image, index, ""
        except UnreadableImage as exc:
            return torch.zeros(self._shape(), dtype=torch.uint8), index, str(exc)

    def _shape(self) -> tuple[int, int, int]:
        side = self.ds.size or self.ds.native_size or 1
        return (self.ds.channels, side, side)


def _collate(items: list) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    images, ids, errors = zip(*items)
    return torch.stack(images), torch.tensor(ids), list(errors)


def default_workers() -> int:
    return max(0, min(8, (os.cpu_count() or 1) - 1))


def decode_all(ds: FERDataset, workers: int) -> tuple[torch.Tensor, list[tuple[int, str]]]:
    """Every image of ``ds`` as one uint8 ``N x C x S x S`` tensor, and the failures."""
    array = ds.source.array()
    if array is not None:  # already in memory: resize in bulk
        images = torch.from_numpy(np.ascontiguousarray(array.transpose(0, 3, 1, 2)))
        if ds.size is not None and images.shape[-1] != ds.size:
            images = _resize_uint8(images, ds.size)
        return images, []
    loader = DataLoader(_Decoded(ds), batch_size=64, num_workers=workers, collate_fn=_collate)
    out: torch.Tensor | None = None
    failures: list[tuple[int, str]] = []
    for images, ids, errors in loader:
        if out is None:
            out = torch.empty((len(ds), *images.shape[1:]), dtype=torch.uint8)
        out[ids] = images
        failures += [(int(i), e) for i, e in zip(ids, errors) if e]
    assert out is not None
    return out, failures


def _resize_uint8(images: torch.Tensor, size: int, chunk: int = 1024) -> torch.Tensor:
    out = torch.empty((images.shape[0], images.shape[1], size, size), dtype=torch.uint8)
    for s in range(0, images.shape[0], chunk):
        x = images[s:s + chunk].float()
        shrink = x.shape[-1] > size
        y = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=shrink)
        out[s:s + chunk] = y.round().clamp(0, 255).to(torch.uint8)
    return out


def check_headers(ds: FERDataset, threads: int = 16) -> list[tuple[int, str]]:
    """Open every image's header (fast, no decoding) to find missing or broken files."""
    if ds.source.array() is not None:
        return []
    def probe(i: int) -> str:
        try:
            with Image.open(ds.source.describe(i)) as im:
                im.size  # noqa: B018 - reading the header is the check
            return ""
        except (OSError, ValueError, SyntaxError) as exc:
            return f"{ds.source.describe(i)}: {exc.__class__.__name__}: {exc}"

    with ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(probe, range(len(ds))))
    return [(i, e) for i, e in enumerate(results) if e]


def nbytes(ds: FERDataset) -> int:
    side = ds.size or ds.native_size or 224
    return len(ds) * ds.channels * side * side


# ---------------------------------------------------------------------- batches
class ImageBatches:
    """Serves ``(uint8 images, sample indices)`` batches of one split on ``device``."""

    def __init__(self, ds: FERDataset, device: torch.device, workers: int, cache: torch.Tensor | None):
        self.ds = ds
        self.device = device
        self.workers = workers
        self.cache = cache
        self.unreadable = 0  # images replaced by zeros in the current epoch (streaming only)
        self._loader_ds = _Decoded(ds)
        self._loader: DataLoader | None = None
        self._plan = _BatchPlan()
        self._pin = device.type == "cuda"

    def __len__(self) -> int:
        return len(self.ds)

    def batches(self, order: torch.Tensor, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches in ``order`` (sample indices within this split), on the device."""
        return self.batches_of(split_batches(order, batch_size))

    def batches_of(self, groups: list[torch.Tensor]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One batch per group of sample indices (a rank's shares of the global batches),
        on the device."""
        self.unreadable = 0
        source = self._from_cache(groups) if self.cache is not None else self._from_loader(groups)
        for images, ids in source:
            yield (images.to(self.device, non_blocking=True), ids.to(self.device, non_blocking=True))

    def _from_cache(self, groups: list[torch.Tensor]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        cache = self.cache
        assert cache is not None

        def gather(idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            images = cache.index_select(0, idx)
            return (images.pin_memory(), idx.pin_memory()) if self._pin else (images, idx)

        if not self._pin:  # CPU training: gathering is cheap next to the model; no thread
            yield from (gather(g) for g in groups)
            return
        yield from _prefetch((gather(g) for g in groups), depth=3)

    def _from_loader(self, groups: list[torch.Tensor]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self._loader is None:  # built once: its workers persist across epochs
            self._loader = DataLoader(
                self._loader_ds,
                batch_sampler=self._plan,
                num_workers=self.workers,
                collate_fn=_collate,
                pin_memory=self._pin,
                persistent_workers=self.workers > 0,
                prefetch_factor=4 if self.workers else None,
            )
        self._plan.groups = [g.tolist() for g in groups]
        for images, ids, errors in self._loader:
            self.unreadable += sum(1 for e in errors if e)
            yield images, ids


class _BatchPlan:
    """A batch sampler whose batches change every epoch. DataLoader iterates its sampler
    in the main process, so workers can persist while the order changes."""

    def __init__(self) -> None:
        self.groups: list[list[int]] = []

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.groups)

    def __len__(self) -> int:
        return len(self.groups)


def _prefetch(items: Iterator, depth: int) -> Iterator:
    """Run ``items`` in a background thread, ``depth`` ahead of the consumer."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()

    def work() -> None:
        try:
            for item in items:
                q.put(item)
        except BaseException as exc:  # surfaced in the consumer
            q.put(exc)
        q.put(done)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    while True:
        item = q.get()
        if item is done:
            break
        if isinstance(item, BaseException):
            raise item
        yield item
    thread.join()


def load_images(
    data: PreparedData, device: torch.device, workers: int, cache_gb: float, log=print
) -> tuple[PreparedData, ImageBatches, ImageBatches]:
    """Decode (or header-check) both splits, drop unreadable images, and build batch sources.

    Returns the data with unreadable samples removed and the train and test batch sources.
    ``log`` receives one line per notable event (cache decisions, skipped images).
    """
    budget = cache_gb * (1 << 30)
    splits = {}
    skipped: list[str] = []
    for name, ds in (("train", data.train), ("test", data.test)):
        cached = nbytes(ds) <= budget
        budget -= nbytes(ds) if cached else 0
        if cached:
            images, failures = decode_all(ds, workers)
        else:
            images, failures = None, check_headers(ds)
            log(f"{name} split ({nbytes(ds) / 2**30:.1f} GiB decoded) exceeds the cache budget; streaming from disk")
        if failures:
            keep = np.setdiff1d(np.arange(len(ds)), [i for i, _ in failures])
            skipped += [msg for _, msg in failures]
            ds = ds.subset(keep)
            if images is not None:
                images = images[torch.from_numpy(keep)]
            ds.check_labels(data.train.name)
        splits[name] = (ds, images)
    if skipped:
        named = "; ".join(skipped[:MAX_NAMED_FAILURES])
        more = f" (and {len(skipped) - MAX_NAMED_FAILURES} more)" if len(skipped) > MAX_NAMED_FAILURES else ""
        log(f"warning: skipped {len(skipped)} unreadable images: {named}{more}")
    (train, train_images), (test, test_images) = splits["train"], splits["test"]
    if len(train) < 2:
        raise DataError(f"{data.train.name}: fewer than 2 readable training images")
    prepared = PreparedData(train, test, skipped=skipped, fingerprint=data.fingerprint,
                            noise_matrix_sha256=data.noise_matrix_sha256, corrections=data.corrections)
    return (
        prepared,
        ImageBatches(train, device, workers, train_images),
        ImageBatches(test, device, workers, test_images),
    )
