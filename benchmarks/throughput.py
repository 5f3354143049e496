"""Training speed, arm by arm: the SCN reference pipeline, ``relabscope train`` and the
model-only limit, in one process, on data the benchmark writes.

Arms (each one entry of the JSON's ``arms``, named ``<shape>.<kind>.<precision>.b<batch>``)
-------------------------------------------------------------------------------------------
- **reference** (``rafdb.reference.fp32.b64``, ...): the SCN reference's data path and
  step, re-created from its published description (docs/methods.md): a Dataset that
  decodes one JPEG per item in DataLoader workers, flip or Gaussian noise with probability
  0.5, torchvision Resize to the training size, ToTensor, Normalize, RandomErasing; SCN's
  network (ResNet-18, importance weight, scaled logits), cross-entropy plus rank
  regularisation, Adam, batch 64, the relabel decision each step, no log. Its loss is
  relabscope's SCN's on the same batch (tested). ``fp32`` as published; ``bf16`` is the
  same code with forward and loss under bf16 autocast: the same data path, so the pair
  separates precision from the data path. Torch's defaults, as the reference runs
  (cudnn.benchmark off, float32 matmuls in full precision; cuDNN may use TF32 in
  convolutions, torch's default).
- **relabscope** (``rafdb.relabscope.bf16.b64``, ...): ``relabscope.training.runner.train``,
  the function ``relabscope train`` calls, on the written folder (``--dataset rafdb`` or
  ``--dataset affectnet --data DIR``), SCN-C, ``amp`` on for bf16: the runner's device
  settings (cudnn.benchmark, TF32 matmuls on CUDA), its decode cache (RAF-DB shape) or its
  streaming DataLoader (AffectNet shape, cache 0 GB), device augmentation, relabelling
  from epoch 1, the run log (embeddings every epoch, its heaviest setting) and a
  checkpoint each epoch. Each such arm records what its run log says (status, epochs,
  the log's own per-epoch ``seconds``) as evidence that it is the real path.
- **limit** (``limit.eager.bf16.b64``, ``limit.compiled...``, ``limit.graph...``): SCN-C's
  forward, loss, backward, Adam step and center update on batches already on the device
  (four random batches in turn, never zeros), no loader, no augmentation, no log, at its
  best settings: bf16 autocast (float32 on a CPU), channels_last, cudnn.benchmark, TF32,
  fused Adam; ``compiled`` is the step under ``torch.compile``; ``graph`` is the eager step
  (capturable fused Adam) captured once in a CUDA graph and replayed. A ratio's limit is
  the fastest variant that ran at that batch size (so the limit is the fastest the model
  step goes on this device, not one fixed setting).
- **decode_cpu / decode_gpu** (``affectnet.decode_cpu.bf16.b64``, ...): the AffectNet-shaped
  data streamed into the eager limit's step (plus relabscope's device augmentation),
  epoch after epoch in a shuffled order: ``decode_cpu`` through relabscope's own streaming
  source (``load_images`` with no cache: PIL decode, face crop and resize in DataLoader
  workers, pinned uint8 batches); ``decode_gpu`` reads only the file bytes in the workers
  and decodes each batch with ``torchvision.io.decode_jpeg(device="cuda")`` (nvJPEG),
  crops the face box and resizes on the GPU. Their ratio says whether GPU decoding wins.

Ratios (the JSON's ``ratios``: name, numerator, denominator arm names, value = numerator's
images/s over denominator's): relabscope / reference at the same precision and batch 64
(goal >= 5), relabscope / limit at the limit's precision and each batch size (goal >= 80 %,
on the RAF-DB shape and streamed on the AffectNet shape), and decode_gpu / decode_cpu. A
ratio whose arms did not both run is listed under ``ratios_unavailable`` with the reason.

What is timed
-------------
- reference, limit, decode arms: ``warmup`` steps untimed (worker start-up, cuDNN
  autotuning; compilation and graph capture happen before them), then ``steps`` timed
  steps, about one epoch of the shape's training images, on the host clock with a device
  sync at both ends. images/s = the images those steps trained / seconds; ``epochs_timed``
  = those images over the training set (the limit's: over the RAF-DB shape's).
- relabscope: a hook's host clock per epoch. Epoch e's training time runs from the
  ``on_epoch_end`` of epoch e-1 to the ``on_progress`` event that closes epoch e's training
  pass (that event follows a host sync), so it holds every training batch (cache gather or
  loader, device augmentation, step, relabelling, run-log records) and the work between
  epochs (checkpoint snapshot, waiting for the previous epoch's log commit and checkpoint
  write); it leaves out the test pass. Epoch 0 is warm-up and not timed (cuDNN autotuning,
  allocator, loader workers starting); decoding the RAF-DB shape into the cache happens
  before epoch 0 (``setup_s``) and is not timed either. images/s = timed epochs x training
  images / their seconds (``epochs_timed`` = epochs - 1). The run log's own
  ``epochs/seconds`` (training and test pass) is recorded beside it.

Data sizes, and why each figure is steady state
-----------------------------------------------
GPU (the default): RAF-DB-shaped 12,271 training / 3,068 test JPEGs of 100 x 100 (the
published sizes, so per-epoch costs weigh as on RAF-DB), AffectNet-shaped 8,000 / 500
JPEGs of 300-500 px with face boxes (enough for 125 steps an epoch at batch 64; the
streamed path is in steady state once its workers' prefetch queue is full, a few steps),
both trained at 224 px. The JPEGs are smooth random images with mild noise so they compress
and decode roughly like photos (RAF-DB-shaped about 4 kB, AffectNet-shaped about 40 kB;
``sizes`` in the JSON gives the means). relabscope trains 3 epochs (2 timed, each 192 steps
at batch 64); reference, limit and decode arms run 20 warm-up steps and then one epoch's
worth of steps. ``--quick`` (CPU, what the test suite runs): 128 / 32 images per shape at
32 px, 1 warm-up step and two epochs' worth (4 steps) timed, 2 relabscope epochs (1 timed):
a check that every arm and ratio is computed, not a speed.

On a CPU (``--quick``, the dry run) the bf16 arms are recorded as skipped, not run:
relabscope's ``--amp`` applies only on CUDA (the runner trains float32 on a CPU), so a
"bf16" relabscope arm would be float32, and its reference twin would have no partner. The
CPU's limit is float32 eager (CUDA graphs need CUDA; torch.compile only with
``--compile``), and decode_gpu is skipped (needs CUDA). The ratios there are float32.

GPU JPEG decoding in relabscope, if decode_gpu wins
--------------------------------------------------
relabscope does not decode on the GPU yet (this arm measures whether it should). To adopt
it, ``ImageBatches._from_loader`` (relabscope/data/pipeline.py) would, on CUDA and for
JPEG file sources, have its workers return each item's file bytes and face box (plain
bytes, as :class:`JpegBytes` does: a ``torchvision.io.read_file`` tensor cannot be sent from
a worker) instead of decoded pixels, and the main thread would call
``decode_jpeg(list, device=...)`` per batch, crop, resize to the storage size on the device
(as :func:`gpu_decode_batch` does; tested against the loader's pixels) and hand the uint8
batch to the same augmentation; a batch that fails to decode would fall back to the CPU
path so unreadable images still become zeros and are counted. The decode cache would be
filled the same way. torchvision 0.29 deprecates its image decoders in favour of TorchCodec;
the GPU machines' image had torchvision 0.26 (docs/results.md), where decode_jpeg is current.

    python benchmarks/throughput.py --device cuda     # the GPU figures (about 4 minutes on an H200, estimated)
    python benchmarks/throughput.py --quick           # CPU, small images: what the suite runs

Prints each arm as it finishes and a table at the end; rewrites the JSON (default
benchmarks/results/throughput.json; temp file + rename) after every arm, so a run cut off
keeps every arm that finished (on SIGTERM, as ``timeout`` sends, the arm in flight is marked
``stopped`` and the process exits 143; killed outright it stays ``running``; the arms after
it stay ``pending``).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import fnmatch
import gc
import json
import math
import os
import platform
import shutil
import signal
import tempfile
import time
import traceback
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterator

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision import models, transforms

from relabscope.atomic import atomic_write
from relabscope.config import resolve
from relabscope.data.augment import train_transform
from relabscope.data.pipeline import default_workers, load_images, prepare
from relabscope.errors import StoppedError
from relabscope.methods import build_method
from relabscope.methods.base import Method
from relabscope.runlog.reader import RunLogReader
from relabscope.training.hooks import EpochSummary, Hook, RunInfo
from relabscope.training.runner import pick_device, train

RAFDB_CLASSES = 7
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
REFERENCE_BATCH = 64
METHOD = "scn-c"
EPOCH = 20  # the epoch a limit / decode step claims to be in: past every ramp
GOALS = {"relabscope_over_reference": 5.0, "relabscope_over_limit": 0.8}


@dataclass(frozen=True)
class Sizes:
    """How big a benchmark is: data set sizes, the image size trained at, what is timed."""

    rafdb: tuple[int, int] = (12271, 3068)
    affectnet: tuple[int, int] = (8000, 500)
    affectnet_side: tuple[int, int] = (300, 500)
    image_size: int = 224
    epochs: int = 3  # relabscope arms: the first is warm-up
    warmup: int = 20  # steps, reference / limit / decode arms
    timed_epochs: float = 1.0  # steps timed, in epochs of the shape's training set
    min_steps: int = 30


QUICK = Sizes(rafdb=(128, 32), affectnet=(128, 32), affectnet_side=(120, 160), image_size=32, epochs=2,
              warmup=1, timed_epochs=2.0, min_steps=4)


class Terminated(BaseException):
    """SIGTERM (``timeout``): stop after recording the arm in flight."""


_TERMINATED: list[str] = []  # set by the handler, so an error it causes elsewhere still stops the run


def _terminate(signum: int, frame: Any) -> None:
    _TERMINATED.append(signal.Signals(signum).name)
    raise Terminated(signal.Signals(signum).name)


# ---------------------------------------------------------------------- the data sets
def _face(seed: tuple[int, int], side: int) -> Image.Image:
    """A random smooth image with mild noise: compresses and decodes roughly like a face
    crop (white noise would not compress; a smooth image alone would decode too fast)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    smooth = np.asarray(Image.fromarray(coarse).resize((side, side), Image.Resampling.BICUBIC), dtype=np.int16)
    noisy = smooth + rng.normal(0.0, 6.0, smooth.shape).astype(np.int16)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def _write_one(job: tuple[str, tuple[int, int], int]) -> int:
    path, seed, side = job
    _face(seed, side).save(path, quality=90)
    return os.path.getsize(path)


def _write_all(jobs: list[tuple[str, tuple[int, int], int]]) -> list[int]:
    """Write the JPEGs, in several processes when there are many."""
    procs = min(16, os.cpu_count() or 1)
    if len(jobs) < 2000 or procs < 2:
        return [_write_one(j) for j in jobs]
    with ProcessPoolExecutor(procs) as pool:
        return list(pool.map(_write_one, jobs, chunksize=256))


def write_rafdb_like(root: Path, n_train: int, n_test: int, seed: int = 0) -> dict[str, Any]:
    """RAF-DB's layout: ``EmoLabel/list_patition_label.txt`` and 100 x 100 aligned JPEGs."""
    rng = np.random.default_rng(seed)
    (root / "Image" / "aligned").mkdir(parents=True, exist_ok=True)
    (root / "EmoLabel").mkdir(exist_ok=True)
    lines: list[str] = []
    jobs: list[tuple[str, tuple[int, int], int]] = []
    for split, n in (("train", n_train), ("test", n_test)):
        for i in range(1, n + 1):
            name = f"{split}_{i:05d}" if split == "train" else f"{split}_{i:04d}"
            jobs.append((str(root / "Image" / "aligned" / f"{name}_aligned.jpg"), (seed, len(jobs)), 100))
            lines.append(f"{name}.jpg {int(rng.integers(1, RAFDB_CLASSES + 1))}")
    sizes = _write_all(jobs)
    (root / "EmoLabel" / "list_patition_label.txt").write_text("\n".join(lines) + "\n")
    return {"root": str(root), "train": n_train, "test": n_test, "side": 100, "mean_jpeg_bytes": float(np.mean(sizes))}


def write_affectnet_like(root: Path, n_train: int, n_test: int, sides: tuple[int, int], seed: int = 0) -> dict[str, Any]:
    """AffectNet's layout: ``training.csv``, ``validation.csv`` and large JPEGs with face boxes."""
    rng = np.random.default_rng(seed)
    header = "subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,arousal"
    jobs: list[tuple[str, tuple[int, int], int]] = []
    for csv_name, n in (("training.csv", n_train), ("validation.csv", n_test)):
        rows = [header]
        for i in range(n):
            side = int(rng.integers(*sides))
            rel = f"{i % 100}/{csv_name[0]}{i:06d}.jpg"
            path = root / "Manually_Annotated_Images" / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            jobs.append((str(path), (seed + 1, len(jobs)), side))
            box = side // 8
            rows.append(f"{rel},{box},{box},{side - 2 * box},{side - 2 * box},\"1;2\",{int(rng.integers(0, 7))},0.1,0.2")
        (root / csv_name).write_text("\n".join(rows) + "\n")
    sizes = _write_all(jobs)
    return {"root": str(root), "train": n_train, "test": n_test, "sides": list(sides),
            "mean_jpeg_bytes": float(np.mean(sizes))}


# ---------------------------------------------------------------------- the reference
class ReferenceDataset(Dataset):
    """The SCN reference's Dataset: one JPEG decoded per item (in a DataLoader worker),
    flip or Gaussian noise with probability 0.5 on the uint8 image, then torchvision's
    ToPILImage, Resize, ToTensor, Normalize and RandomErasing."""

    def __init__(self, paths: list[Path], labels: np.ndarray, size: int, boxes: list[tuple[int, ...]] | None = None):
        self.paths, self.labels, self.boxes = paths, labels, boxes
        self.tf = transforms.Compose([
            transforms.ToPILImage(), transforms.Resize((size, size)), transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD), transforms.RandomErasing(scale=(0.02, 0.25))])

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, int]:
        with Image.open(self.paths[i]) as im:
            im = im.convert("RGB")
            if self.boxes is not None:
                x, y, w, h = self.boxes[i]
                im = im.crop((x, y, x + w, y + h))
            image = np.asarray(im)
        if np.random.rand() < 0.5:  # the reference: flip or add_g, equally likely
            if np.random.rand() < 0.5:
                image = image[:, ::-1].copy()
            else:
                image = np.clip(image + np.random.normal(0, 30 ** 0.5, image.shape), 0, 255).astype(np.uint8)
        return self.tf(image), int(self.labels[i]), i


class ReferenceSCN(nn.Module):
    """SCN's reference network: ResNet-18 without its classifier, an importance weight
    ``sigmoid(Linear(512, 1))`` and logits ``alpha * fc(x)``."""

    def __init__(self, num_classes: int, small_stem: bool = False):
        super().__init__()
        resnet = models.resnet18(weights=None)
        if small_stem:  # relabscope's stem below 100 px, so the two networks hold the same weights
            resnet.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        self.features = nn.Sequential(*list(resnet.children())[:-2])
        self.fc = nn.Linear(512, num_classes)
        self.alpha = nn.Sequential(nn.Linear(512, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1)
        weight = self.alpha(x)
        return weight * self.fc(x), weight.squeeze(1)

    @classmethod
    def like(cls, scn: Method) -> ReferenceSCN:
        """A reference network holding the weights of relabscope's SCN ``scn``."""
        ref = cls(scn.fc.out_features, small_stem=scn.backbone.small_stem)
        trunk = scn.backbone
        for mine, theirs in zip(ref.features, (trunk.conv1, trunk.bn1, trunk.relu, trunk.maxpool, trunk.layer1,
                                               trunk.layer2, trunk.layer3, trunk.layer4)):
            mine.load_state_dict(theirs.state_dict())
        ref.fc.load_state_dict(scn.fc.state_dict())
        ref.alpha[0].load_state_dict(scn.attention.state_dict())
        return ref


def reference_loss(logits: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, beta: float = 0.7,
                   margin: float = 0.15) -> torch.Tensor:
    """The reference's loss: cross-entropy of the scaled logits plus rank regularisation."""
    k = int(beta * weight.shape[0])
    top, _ = torch.sort(weight, descending=True)
    rr = F.relu(margin - (top[:k].mean() - top[k:].mean()))
    return F.cross_entropy(logits, labels) + rr


def rafdb_reference_data(root: Path, size: int) -> ReferenceDataset:
    lines = (root / "EmoLabel" / "list_patition_label.txt").read_text().split()
    names, labels = lines[0::2], lines[1::2]
    train_rows = [(n, int(lab) - 1) for n, lab in zip(names, labels) if n.startswith("train")]
    paths = [root / "Image" / "aligned" / f"{n.rsplit('.', 1)[0]}_aligned.jpg" for n, _ in train_rows]
    return ReferenceDataset(paths, np.array([lab for _, lab in train_rows]), size)


def affectnet_reference_data(root: Path, size: int) -> ReferenceDataset:
    rows = [r.split(",") for r in (root / "training.csv").read_text().splitlines()[1:]]
    paths = [root / "Manually_Annotated_Images" / r[0] for r in rows]
    boxes = [tuple(int(v) for v in r[1:5]) for r in rows]
    return ReferenceDataset(paths, np.array([int(r[6]) for r in rows]), size, boxes)


# ---------------------------------------------------------------------- GPU decoding
class JpegBytes(Dataset):
    """Items are a JPEG file's bytes, its face box and its index: all a worker does is read.
    (Plain bytes: a tensor from ``torchvision.io.read_file`` is file-backed, and sending it
    from a worker fails.)"""

    def __init__(self, paths: list[Path], boxes: np.ndarray | None):
        self.paths, self.boxes = paths, boxes

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[bytes, tuple[int, ...], int]:
        box = (0, 0, 0, 0) if self.boxes is None else tuple(int(v) for v in self.boxes[i])
        return self.paths[i].read_bytes(), box, i


def _bytes_collate(items: list) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
    datas, boxes, ids = zip(*items)
    return [torch.frombuffer(bytearray(d), dtype=torch.uint8) for d in datas], torch.tensor(boxes), torch.tensor(ids)


def gpu_decode_batch(datas: list[torch.Tensor], boxes: torch.Tensor, size: int, device: torch.device) -> torch.Tensor:
    """Decode a batch of JPEG byte tensors on ``device`` (nvJPEG on CUDA), crop each to its
    face box (x, y, w, h; zeros: no crop) and resize it to ``size`` (bilinear, antialiased,
    as PIL's resize in relabscope's loader): uint8 ``B x 3 x size x size``."""
    images = torchvision.io.decode_jpeg(datas, mode=torchvision.io.ImageReadMode.RGB, device=device)
    out = torch.empty((len(images), 3, size, size), dtype=torch.uint8, device=device)
    for k, (image, (x, y, w, h)) in enumerate(zip(images, boxes.tolist())):
        if w > 0 and h > 0:
            image = image[:, y:y + h, x:x + w]
        if image.shape[-2:] != (size, size):
            resized = F.interpolate(image[None].float(), size=(size, size), mode="bilinear", align_corners=False,
                                    antialias=True)
            image = resized[0].round_().clamp_(0, 255).to(torch.uint8)
        out[k] = image
    return out


# ---------------------------------------------------------------------- device settings
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def set_flags(device: torch.device, tuned: bool) -> dict[str, Any]:
    """Tuned: what the runner sets on CUDA (cudnn.benchmark, TF32 matmuls); untuned: torch's
    defaults, as the reference runs. Returns the settings for the arm's record."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = tuned
        torch.set_float32_matmul_precision("high" if tuned else "highest")
    return {"cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
            "cudnn_allow_tf32": bool(torch.backends.cudnn.allow_tf32)}


def autocast(device: torch.device, precision: str, cache: bool = True) -> ContextManager[Any]:
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=cache)
    return nullcontext()


def _steps(sizes: Sizes, n_train: int, batch: int) -> int:
    return max(sizes.min_steps, math.ceil(sizes.timed_epochs * n_train / batch))


def _timed(run_step: Callable[[int], int], device: torch.device, warmup: int, steps: int) -> tuple[float, int]:
    """Seconds and images of ``steps`` calls of ``run_step(i)`` (which returns its batch's
    image count) after ``warmup`` untimed ones."""
    for i in range(warmup):
        run_step(i)
    _sync(device)
    started = time.perf_counter()
    images = sum(run_step(i) for i in range(warmup, warmup + steps))
    _sync(device)
    return time.perf_counter() - started, images


# ---------------------------------------------------------------------- the arms
def time_reference(ds: ReferenceDataset, device: torch.device, precision: str, batch: int, sizes: Sizes,
                   workers: int) -> dict[str, Any]:
    """The reference loop: its DataLoader (workers persist over epochs), its step."""
    settings = set_flags(device, tuned=False)
    torch.manual_seed(0)
    model = ReferenceSCN(RAFDB_CLASSES, small_stem=sizes.image_size < 100).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)
    loader = DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers, pin_memory=device.type == "cuda",
                        drop_last=True, persistent_workers=workers > 0)

    def batches() -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        while True:
            yield from loader

    source = batches()

    def step(_: int) -> int:
        images, labels, _ids = next(source)
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        with autocast(device, precision):
            logits, weight = model(images)
            loss = reference_loss(logits, weight, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        probs = logits.detach().float().softmax(dim=1)  # the reference's relabel decision, each step
        torch.where(probs.max(1).values - probs.gather(1, labels[:, None]).squeeze(1) > 0.2, probs.argmax(1), labels)
        return images.shape[0]

    steps = _steps(sizes, len(ds), batch)
    seconds, images = _timed(step, device, sizes.warmup, steps)
    return {"images_timed": images, "seconds_timed": seconds, "epochs_timed": images / len(ds),
            "steps_timed": steps, "warmup_steps": sizes.warmup, "settings": {**settings, "workers": workers,
                                                                             "data_path": "per-image decode"}}


class TrainClock(Hook):
    """Host times of a run's events: run start, each training pass's closing progress
    report (after a host sync) and each epoch's end."""

    def __init__(self) -> None:
        self.run_start = 0.0
        self.num_train = 0
        self.steps_per_epoch = 0
        self.metadata: dict[str, Any] = {}
        self.pass_end: dict[int, float] = {}
        self.epoch_end: dict[int, float] = {}

    def on_run_start(self, run: RunInfo) -> None:
        self.run_start = time.perf_counter()
        self.num_train = int(run.metadata["num_train"])
        self.steps_per_epoch = run.steps_per_epoch
        self.metadata = dict(run.metadata)

    def on_progress(self, epoch: int, done: int, total: int, stats: dict[str, float]) -> None:
        if done == total:  # the training pass's last report; the last one wins
            self.pass_end[epoch] = time.perf_counter()

    def on_epoch_end(self, summary: EpochSummary) -> None:
        self.epoch_end[summary.epoch] = time.perf_counter()

    def train_seconds(self) -> list[float]:
        """Per epoch, the training pass plus the work since the epoch before ended."""
        starts = [self.run_start] + [self.epoch_end[e] for e in sorted(self.epoch_end)]
        return [self.pass_end[e] - starts[e] for e in sorted(self.pass_end)]


def time_relabscope(options: dict[str, Any], device: torch.device, sizes: Sizes, tmp: Path) -> dict[str, Any]:
    """``relabscope train`` (the runner's ``train``) for ``sizes.epochs`` epochs; the first is warm-up."""
    clock = TrainClock()
    lines: list[str] = []
    config = {**options, "method": METHOD, "device": device.type, "epochs": sizes.epochs, "relabel_epoch": 1,
              "embed_every": 1, "probe_every": 0, "seed": 0, "out": str(tmp / "run")}
    called = time.perf_counter()
    result = train(config, progress=False, hooks=[clock], log=lines.append)
    if result.status != "finished":
        raise RuntimeError(f"run ended {result.status} after {result.epochs_done} epochs")
    settings = {"cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
                "float32_matmul_precision": torch.get_float32_matmul_precision(),
                "workers": options["workers"], "cache_gb": options["cache_gb"]}
    with RunLogReader(result.run_dir) as log:
        run_log = {"status": log.status, "epochs": log.num_epochs,
                   "seconds": [float(s) for s in log.epoch_array("seconds")],
                   "bytes": (Path(result.run_dir) / "run.h5").stat().st_size}
    per_epoch = clock.train_seconds()
    timed = per_epoch[1:]
    if not timed:
        raise RuntimeError("no epoch after the warm-up one was timed (epochs must be >= 2)")
    settings["data_path"] = "streaming DataLoader" if any("streaming" in line for line in lines) else "decode cache"
    return {"images_timed": clock.num_train * len(timed), "seconds_timed": sum(timed), "epochs_timed": len(timed),
            "train_seconds": per_epoch, "setup_s": clock.run_start - called, "num_train": clock.num_train,
            "steps_per_epoch": clock.steps_per_epoch, "run_log": run_log, "messages": lines,
            "settings": settings}


class BareStep:
    """SCN-C's training step on device tensors: forward and loss (under autocast), backward,
    Adam step, center update. ``compiled``: the forward and loss under torch.compile."""

    def __init__(self, device: torch.device, precision: str, image_size: int, variant: str = "eager"):
        cfg = resolve({"dataset": "rafdb", "method": METHOD, "image_size": image_size})
        torch.manual_seed(0)
        self.device, self.precision = device, precision
        self.method = build_method(METHOD, RAFDB_CLASSES, cfg).to(device).to(memory_format=torch.channels_last)
        cuda = device.type == "cuda"
        self.opt = torch.optim.Adam(self.method.param_groups(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                                    fused=True if cuda else None, capturable=variant == "graph")
        self.forward: Callable[..., Any] = self.method.training_step
        if variant == "compiled":
            torch._dynamo.reset()  # a fresh compilation for this batch size, not a dynamic-shape one
            self.forward = torch.compile(self.method.training_step)
        self.graph_cache = variant != "graph"  # autocast's weight cache must be off inside a CUDA graph

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        with autocast(self.device, self.precision, cache=self.graph_cache):
            out = self.forward(x, y, EPOCH)
        self.opt.zero_grad(set_to_none=True)
        out.loss.backward()
        self.opt.step()
        self.method.after_step(out, y)


def time_limit(variant: str, device: torch.device, precision: str, batch: int, sizes: Sizes) -> dict[str, Any]:
    """The bare step on device-resident random batches, at its best settings."""
    settings = set_flags(device, tuned=True)
    step = BareStep(device, precision, sizes.image_size, variant)
    s = sizes.image_size
    xs = [torch.randn(batch, 3, s, s, device=device).contiguous(memory_format=torch.channels_last) for _ in range(4)]
    ys = [torch.randint(0, RAFDB_CLASSES, (batch,), device=device) for _ in range(4)]
    prepared = time.perf_counter()
    if variant == "graph":
        if device.type != "cuda":
            raise RuntimeError("CUDA graphs need CUDA")
        static_x, static_y = xs[0].clone(), ys[0].clone()
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(3):  # warm up on a side stream: cuDNN autotuning, optimiser state
                step(static_x, static_y)
        torch.cuda.current_stream(device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        step.opt.zero_grad(set_to_none=True)
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):  # other threads may use CUDA
            step(static_x, static_y)

        def run(i: int) -> int:
            static_x.copy_(xs[i % 4], non_blocking=True)
            static_y.copy_(ys[i % 4], non_blocking=True)
            graph.replay()
            return batch
    else:
        def run(i: int) -> int:
            step(xs[i % 4], ys[i % 4])
            return batch

    if variant == "compiled":  # compile outside the timing (and outside the warm-up count)
        run(0)
        _sync(device)
    setup = time.perf_counter() - prepared
    steps = _steps(sizes, sizes.rafdb[0], batch)
    seconds, images = _timed(run, device, sizes.warmup, steps)
    return {"images_timed": images, "seconds_timed": seconds, "epochs_timed": images / sizes.rafdb[0],
            "steps_timed": steps, "warmup_steps": sizes.warmup, "setup_s": setup,
            "settings": {**settings, "channels_last": True, "fused_adam": device.type == "cuda",
                         "compile": variant == "compiled", "cuda_graph": variant == "graph"}}


def time_decode(kind: str, root: Path, device: torch.device, precision: str, batch: int, sizes: Sizes,
                workers: int) -> dict[str, Any]:
    """The AffectNet shape streamed into the eager bare step: decoded by relabscope's own
    streaming source (decode_cpu) or as file bytes decoded on the GPU (decode_gpu)."""
    settings = set_flags(device, tuned=True)
    cfg = resolve({"dataset": "affectnet", "data": str(root), "method": METHOD, "image_size": sizes.image_size,
                   "batch_size": batch, "device": device.type, "workers": workers, "cache_gb": 0.0})
    data, train_b, _ = load_images(prepare(cfg), device, workers, 0.0, lambda line: None)
    labels = torch.as_tensor(data.train.labels, device=device)
    n = len(data.train)
    step = BareStep(device, precision, sizes.image_size)
    gen = torch.Generator(device=device).manual_seed(0)
    order_gen = torch.Generator().manual_seed(0)
    if kind == "decode_cpu":
        def batches() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
            while True:
                yield from train_b.batches(torch.randperm(n, generator=order_gen), batch)
    else:
        source = data.train.source
        paths = [Path(source.describe(i)) for i in range(n)]
        loader = DataLoader(JpegBytes(paths, getattr(source, "boxes", None)), batch_size=batch, shuffle=True,
                            num_workers=workers, collate_fn=_bytes_collate, persistent_workers=workers > 0,
                            prefetch_factor=4 if workers else None, generator=order_gen)

        def batches() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
            while True:
                for datas, boxes, ids in loader:
                    yield gpu_decode_batch(datas, boxes, sizes.image_size, device), ids.to(device, non_blocking=True)

    stream = batches()

    def run(_: int) -> int:
        images, ids = next(stream)
        step(train_transform(images, sizes.image_size, gen), labels[ids])
        return images.shape[0]

    steps = _steps(sizes, n, batch)
    seconds, images = _timed(run, device, sizes.warmup, steps)
    return {"images_timed": images, "seconds_timed": seconds, "epochs_timed": images / n,
            "steps_timed": steps, "warmup_steps": sizes.warmup,
            "settings": {**settings, "workers": workers, "channels_last": True,
                         "data_path": "relabscope streaming DataLoader (PIL decode in workers)" if kind == "decode_cpu"
                         else "file bytes in workers, torchvision.io.decode_jpeg on the device"}}


# ---------------------------------------------------------------------- plan, ratios, JSON
@dataclass(frozen=True)
class ArmSpec:
    name: str
    shape: str | None
    kind: str
    precision: str
    batch_size: int
    variant: str | None = None
    skip: str | None = None


def arm_name(shape: str | None, kind: str, precision: str, batch: int, variant: str | None = None) -> str:
    return f"{shape or 'limit'}.{variant or kind}.{precision}.b{batch}"


def plan(device: torch.device, batch_sizes: list[int], compile_limit: bool, affectnet: bool) -> list[ArmSpec]:
    """Every arm, in order of value for the time it takes (a step cut off by its time limit
    loses the last ones): the RAF-DB shape at the first batch size (reference and relabscope
    in fp32 and bf16, the eager limit), the AffectNet shape streamed (reference, relabscope,
    CPU and GPU decoding), the CUDA-graph and compiled limits (compiling takes the longest;
    a failed graph capture is the likeliest to upset the device), then the larger batch
    sizes, the AffectNet shape in fp32, and the compiled limits at the larger batch sizes."""
    cuda = device.type == "cuda"
    fast = "bf16" if cuda else "fp32"
    first, more = batch_sizes[0], batch_sizes[1:]
    arms: list[ArmSpec] = []

    def add(shape: str | None, kind: str, precision: str, batch: int, variant: str | None = None) -> None:
        skip = None
        if precision == "bf16" and not cuda:
            skip = "CPU: relabscope's --amp applies only on CUDA (the runner trains float32 here), so bf16 arms are not run"
        elif variant == "graph" and not cuda:
            skip = "CUDA graphs need CUDA"
        elif variant == "compiled" and not compile_limit:
            skip = "torch.compile off (--compile turns it on; default on CUDA only)"
        elif kind == "decode_gpu" and not cuda:
            skip = "torchvision.io.decode_jpeg on the device needs CUDA"
        arms.append(ArmSpec(arm_name(shape, kind, precision, batch, variant), shape, kind, precision, batch, variant,
                            skip))

    for precision in ("fp32", "bf16"):
        add("rafdb", "reference", precision, REFERENCE_BATCH)
        add("rafdb", "relabscope", precision, first)
    add(None, "limit", fast, first, "eager")
    if affectnet:
        add("affectnet", "reference", fast, REFERENCE_BATCH)
        add("affectnet", "relabscope", fast, first)
        add("affectnet", "decode_cpu", fast, first)
        add("affectnet", "decode_gpu", fast, first)
    add(None, "limit", fast, first, "graph")
    add(None, "limit", fast, first, "compiled")
    for b in more:
        add("rafdb", "relabscope", fast, b)
        add(None, "limit", fast, b, "eager")
        add(None, "limit", fast, b, "graph")
    if affectnet and cuda:
        add("affectnet", "reference", "fp32", REFERENCE_BATCH)
        add("affectnet", "relabscope", "fp32", first)
    for b in more:
        add(None, "limit", fast, b, "compiled")
    return arms


def _done(arm: dict[str, Any] | None) -> bool:
    return arm is not None and arm.get("status") == "done" and bool(arm.get("images_per_s"))


def best_limit(arms: list[dict[str, Any]], precision: str, batch: int) -> dict[str, Any] | None:
    """The fastest limit variant that ran at this precision and batch size."""
    done = [a for a in arms if a["kind"] == "limit" and a["precision"] == precision and a["batch_size"] == batch
            and _done(a)]
    return max(done, key=lambda a: a["images_per_s"]) if done else None


def ratios(arms: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The ratios the arms allow (value = numerator's images/s over the denominator's), and
    the ones they do not yet (with why)."""
    by_name = {a["name"]: a for a in arms}
    wanted: list[tuple[str, str, str | None, float | None]] = []  # name, numerator, denominator, goal
    for a in arms:
        if a["kind"] != "relabscope":
            continue
        shape, p, b = a["shape"], a["precision"], a["batch_size"]
        if b == REFERENCE_BATCH:
            wanted.append((f"{shape}.relabscope_over_reference.{p}.b{b}", a["name"],
                           arm_name(shape, "reference", p, b), GOALS["relabscope_over_reference"]))
        if any(x["kind"] == "limit" and x["precision"] == p and x["batch_size"] == b for x in arms):
            limit = best_limit(arms, p, b)
            wanted.append((f"{shape}.relabscope_over_limit.{p}.b{b}", a["name"], limit["name"] if limit else None,
                           GOALS["relabscope_over_limit"]))
    for a in arms:
        if a["kind"] == "decode_gpu":
            wanted.append((f"affectnet.decode_gpu_over_cpu.{a['precision']}.b{a['batch_size']}", a["name"],
                           arm_name("affectnet", "decode_cpu", a["precision"], a["batch_size"]), None))
    have, missing = [], []
    for name, num, den, goal in wanted:
        top, bottom = by_name.get(num), by_name.get(den) if den else None
        if _done(top) and _done(bottom):
            assert top is not None and bottom is not None
            have.append({"name": name, "numerator": num, "denominator": den,
                         "value": top["images_per_s"] / bottom["images_per_s"], "goal_at_least": goal})
        else:
            why = [f"{n}: {(by_name.get(n) or {}).get('status', 'no such arm')}" for n in (num, den)
                   if n and not _done(by_name.get(n))] or ["no limit variant ran"]
            missing.append({"name": name, "numerator": num, "denominator": den, "why": "; ".join(why)})
    return have, missing


def write_json(path: Path, result: dict[str, Any]) -> None:
    """Write atomically: a temp file in the same folder, then rename over the old one."""
    result["ratios"], result["ratios_unavailable"] = ratios(result["arms"])
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as fh:
        fh.write(json.dumps(result, indent=2).encode())


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".strip().rstrip(":")


# ---------------------------------------------------------------------- the benchmark
def run_arm(spec: ArmSpec, roots: dict[str, Path], device: torch.device, sizes: Sizes, workers: int,
            cache_gb: float, tmp: Path) -> dict[str, Any]:
    if spec.kind == "reference":
        assert spec.shape is not None
        read = rafdb_reference_data if spec.shape == "rafdb" else affectnet_reference_data
        return time_reference(read(roots[spec.shape], sizes.image_size), device, spec.precision, spec.batch_size,
                              sizes, workers)
    if spec.kind == "relabscope":
        assert spec.shape is not None
        options = {"dataset": spec.shape, "data": str(roots[spec.shape]), "image_size": sizes.image_size,
                   "batch_size": spec.batch_size, "amp": spec.precision == "bf16", "workers": workers,
                   "cache_gb": cache_gb if spec.shape == "rafdb" else 0.0}  # AffectNet: streamed
        return time_relabscope(options, device, sizes, tmp)
    if spec.kind == "limit":
        assert spec.variant is not None
        return time_limit(spec.variant, device, spec.precision, spec.batch_size, sizes)
    return time_decode(spec.kind, roots["affectnet"], device, spec.precision, spec.batch_size, sizes, workers)


def run(args: argparse.Namespace) -> dict[str, Any]:
    sizes = QUICK if args.quick else Sizes()
    device = pick_device(args.device)
    workers = args.workers if args.workers is not None else default_workers()
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    compile_limit = device.type == "cuda" if args.compile is None else args.compile
    specs = plan(device, batch_sizes, compile_limit, affectnet=not args.skip_affectnet)
    selected = [p.strip() for p in args.only.split(",")] if args.only else None
    result: dict[str, Any] = {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__, "torchvision": torchvision.__version__, "cuda": torch.version.cuda,
        "platform": platform.platform(), "started": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "quick": args.quick, "image_size": sizes.image_size, "method": METHOD, "workers": workers,
        "sizes": {"relabscope_epochs": sizes.epochs, "warmup_steps": sizes.warmup,
                  "timed_epochs": sizes.timed_epochs},
        "complete": False, "arms": [],
    }
    for s in specs:
        entry: dict[str, Any] = {"name": s.name, "shape": s.shape, "kind": s.kind, "variant": s.variant,
                                 "precision": s.precision, "batch_size": s.batch_size, "images_per_s": None,
                                 "epochs_timed": 0, "status": "pending"}
        if s.skip is None and selected is not None and not any(fnmatch.fnmatch(s.name, p) for p in selected):
            entry.update(status="skipped", reason="not selected by --only")
        elif s.skip is not None:
            entry.update(status="skipped", reason=s.skip)
        result["arms"].append(entry)
    out: Path = args.out
    write_json(out, result)
    signal.signal(signal.SIGTERM, _terminate)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="throughput-") as tmp_name:
        tmp = Path(tmp_name)
        todo = [(s, e) for s, e in zip(specs, result["arms"]) if e["status"] == "pending"]
        shapes = {s.shape for s, _ in todo if s.shape}
        roots: dict[str, Path] = {}
        t = time.perf_counter()
        if "rafdb" in shapes:
            result["sizes"]["rafdb"] = write_rafdb_like(tmp / "rafdb", *sizes.rafdb)
            roots["rafdb"] = tmp / "rafdb"
        if "affectnet" in shapes:
            result["sizes"]["affectnet"] = write_affectnet_like(tmp / "affectnet", *sizes.affectnet,
                                                               sides=sizes.affectnet_side)
            roots["affectnet"] = tmp / "affectnet"
        result["data_written_s"] = time.perf_counter() - t
        print(f"data written in {result['data_written_s']:.1f} s: {', '.join(shapes) or 'none needed'}", flush=True)
        write_json(out, result)
        for i, (spec, entry) in enumerate(todo):
            entry["status"] = "running"
            write_json(out, result)
            t = time.perf_counter()
            try:
                entry.update(run_arm(spec, roots, device, sizes, workers, args.cache_gb, tmp / f"arm{i}"))
                entry["images_per_s"] = entry["images_timed"] / entry["seconds_timed"]
                entry["status"] = "done"
            except BaseException as exc:  # noqa: BLE001 - every arm's end is recorded
                stop = bool(_TERMINATED) or isinstance(exc, (Terminated, StoppedError, KeyboardInterrupt))
                if not stop and not isinstance(exc, Exception):
                    raise
                # stopped: SIGTERM (the step's time limit); failed: out of memory, a failed compile
                # or capture, ...: recorded, and the next arm runs
                entry.update(status="stopped" if stop else "failed", reason=one_line(exc))
                if not stop:
                    entry["traceback"] = traceback.format_exc()[-3000:]
            entry["wall_s"] = time.perf_counter() - t
            shutil.rmtree(tmp / f"arm{i}", ignore_errors=True)  # the run's log and checkpoint
            _free(device)
            write_json(out, result)
            rate = f"{entry['images_per_s']:9.1f} images/s" if entry["status"] == "done" else entry["status"].upper()
            print(f"[{time.perf_counter() - started:6.1f} s] {spec.name:<32} {rate}  ({entry['wall_s']:.1f} s)"
                  f"{'  ' + entry['reason'] if entry.get('reason') else ''}", flush=True)
            if entry["status"] == "stopped":
                print("stopped: the arms after it were not run", flush=True)
                raise SystemExit(143)
    result["complete"] = True
    result["wall_s"] = time.perf_counter() - started
    write_json(out, result)
    return result


def _free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def print_table(result: dict[str, Any]) -> None:
    print(f"\ntraining images/s at {result['image_size']} px on {result['device']} ({result['device_name']}), "
          f"{result['method']}")
    print(f"  {'arm':<32}{'precision':>10}{'batch':>7}{'images/s':>11}{'epochs timed':>14}  status")
    for a in result["arms"]:
        rate = f"{a['images_per_s']:.1f}" if a["images_per_s"] else "-"
        epochs = f"{a['epochs_timed']:.2f}" if a["epochs_timed"] else "-"
        note = a["status"] + (f": {a['reason']}" if a.get("reason") and a["status"] != "done" else "")
        print(f"  {a['name']:<32}{a['precision']:>10}{a['batch_size']:>7}{rate:>11}{epochs:>14}  {note[:90]}")
    print("ratios (numerator / denominator images/s):")
    for r in result["ratios"]:
        goal = f"  (goal >= {r['goal_at_least']:g})" if r["goal_at_least"] is not None else ""
        print(f"  {r['name']:<44}{r['value']:>7.2f}  = {r['numerator']} / {r['denominator']}{goal}")
    for r in result["ratios_unavailable"]:
        print(f"  {r['name']:<44}{'-':>7}  ({r['why'][:90]})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--quick", action="store_true", help="CPU-sized: a few hundred small images at 32 px")
    ap.add_argument("--batch-sizes", default="64,256",
                    help="relabscope's and the limit's batch sizes; every arm runs at the first, the others "
                         "only relabscope and the limit on the RAF-DB shape (quick: 64)")
    ap.add_argument("--workers", type=int, help="DataLoader workers of every data path (default: from the CPUs)")
    ap.add_argument("--cache-gb", type=float, default=8.0, help="relabscope's decode cache for the RAF-DB shape")
    ap.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                    help="time the limit under torch.compile too (default: on CUDA only)")
    ap.add_argument("--skip-affectnet", action="store_true")
    ap.add_argument("--only", help="run only the arms matching these comma-separated patterns (fnmatch), "
                                   "e.g. 'limit.*,rafdb.relabscope.*'")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "throughput.json")
    args = ap.parse_args()
    if args.quick and args.batch_sizes == "64,256":
        args.batch_sizes = "64"
    result = run(args)
    print_table(result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
