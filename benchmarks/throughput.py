"""Training speed against two anchors, in one process on the same data:

- **reference**: the SCN reference's training step and data path, re-created from its
  published description (docs/methods.md): a Dataset that decodes one JPEG per item in
  DataLoader workers, flips or adds noise with probability 0.5, resizes to 224 with
  torchvision, normalises, erases a random rectangle; SCN's network (ResNet-18, importance
  weight, scaled logits), cross-entropy plus rank regularisation, Adam, float32, batch 64,
  no run log. Its loss equals relabscope's SCN's on the same batch (tested).
- **relabscope**: ``relabscope train``'s own path (SCN-C with the full run log and bf16
  autocast on CUDA) through the Trainer, at batch 64 and at the best batch of
  ``--batch-sizes``; the first epoch (which decodes every image into the cache) separately.
- **limit**: the same network's forward, backward and optimiser step on batches already
  on the device (bf16, channels-last on CUDA), no loader and no log; with ``--compile``,
  also under ``torch.compile``.

Two data sets are written by the benchmark: a RAF-DB-shaped folder (12,271 train / 3,068
test JPEGs of 100 x 100, trained at 224) and an AffectNet-shaped one (JPEGs of several
hundred pixels, more than ``--cache-gb`` holds decoded, so relabscope streams them through
its DataLoader workers). Each method's images/s is put against its own limit.

    python benchmarks/throughput.py --device cuda             # the GPU figures (minutes)
    python benchmarks/throughput.py --quick                   # CPU, small images: what the suite runs

Prints a table of images/s and ratios and writes JSON (benchmarks/results/throughput.json).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision import models, transforms

from relabscope.config import TrainConfig, resolve
from relabscope.data.pipeline import default_workers, load_images, prepare
from relabscope.methods import build_method
from relabscope.methods.base import Method
from relabscope.training.hooks import BatchRecord, EpochSummary, Hook, RunInfo
from relabscope.training.log_hook import RunLogHook
from relabscope.training.loop import Trainer
from relabscope.training.runner import pick_device, run_metadata

RAFDB_CLASSES = 7
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Sizes:
    """How big a benchmark is: data set sizes, the image size trained at, timed steps."""

    rafdb: tuple[int, int] = (12271, 3068)
    affectnet: tuple[int, int] = (20000, 2000)
    affectnet_side: tuple[int, int] = (300, 500)
    image_size: int = 224
    steps: int = 60
    warmup: int = 10


QUICK = Sizes(rafdb=(128, 32), affectnet=(128, 32), affectnet_side=(120, 160), image_size=32, steps=4, warmup=1)


# ---------------------------------------------------------------------- the data sets
def _face(rng: np.random.Generator, side: int) -> Image.Image:
    """A random smooth image (JPEG-compressible like a face crop, unlike white noise)."""
    coarse = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    return Image.fromarray(coarse).resize((side, side), Image.Resampling.BICUBIC)


def write_rafdb_like(root: Path, n_train: int, n_test: int, seed: int = 0) -> Path:
    """RAF-DB's layout: ``EmoLabel/list_patition_label.txt`` and 100 x 100 aligned JPEGs."""
    rng = np.random.default_rng(seed)
    (root / "Image" / "aligned").mkdir(parents=True, exist_ok=True)
    (root / "EmoLabel").mkdir(exist_ok=True)
    lines = []
    for split, n in (("train", n_train), ("test", n_test)):
        for i in range(1, n + 1):
            name = f"{split}_{i:05d}" if split == "train" else f"{split}_{i:04d}"
            _face(rng, 100).save(root / "Image" / "aligned" / f"{name}_aligned.jpg", quality=90)
            lines.append(f"{name}.jpg {int(rng.integers(1, RAFDB_CLASSES + 1))}")
    (root / "EmoLabel" / "list_patition_label.txt").write_text("\n".join(lines) + "\n")
    return root


def write_affectnet_like(root: Path, n_train: int, n_test: int, sides: tuple[int, int], seed: int = 0) -> Path:
    """AffectNet's layout: ``training.csv``, ``validation.csv`` and large JPEGs with face boxes."""
    rng = np.random.default_rng(seed)
    header = "subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,arousal"
    for csv_name, n in (("training.csv", n_train), ("validation.csv", n_test)):
        rows = [header]
        for i in range(n):
            side = int(rng.integers(*sides))
            rel = f"{i % 100}/{csv_name[0]}{i:06d}.jpg"
            path = root / "Manually_Annotated_Images" / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            _face(rng, side).save(path, quality=90)
            box = side // 8
            rows.append(f"{rel},{box},{box},{side - 2 * box},{side - 2 * box},\"1;2\",{int(rng.integers(0, 7))},0.1,0.2")
        (root / csv_name).write_text("\n".join(rows) + "\n")
    return root


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


# ---------------------------------------------------------------------- timing
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_reference(ds: ReferenceDataset, num_classes: int, device: torch.device, sizes: Sizes, workers: int,
                   batch: int = 64) -> float:
    """Training images/s of the reference loop (float32, its DataLoader), after warm-up."""
    model = ReferenceSCN(num_classes, small_stem=sizes.image_size < 100).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)
    loader = DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers, pin_memory=device.type == "cuda",
                        drop_last=True, persistent_workers=workers > 0)
    seen, started, step = 0, 0.0, 0
    while step < sizes.warmup + sizes.steps:
        for images, labels, _ in loader:
            if step == sizes.warmup:
                _sync(device)
                started, seen = time.perf_counter(), 0
            images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
            logits, weight = model(images)
            loss = reference_loss(logits, weight, labels)
            opt.zero_grad()
            loss.backward()
            opt.step()
            probs = logits.detach().softmax(dim=1)  # the reference's relabel decision, each step
            _ = torch.where(probs.max(1).values - probs.gather(1, labels[:, None]).squeeze(1) > 0.2, probs.argmax(1),
                            labels)
            seen += images.shape[0]
            step += 1
            if step >= sizes.warmup + sizes.steps:
                break
    _sync(device)
    return seen / (time.perf_counter() - started)


class PassClock(Hook):
    """Per epoch, host time from the epoch's start (the run's start, or the end of the
    epoch before) to its first test batch: the training pass. The test pass, the commit and
    the checkpoint are not counted (the commit and checkpoint run in the background)."""

    def __init__(self) -> None:
        self.starts: list[float] = []
        self.ends: dict[int, float] = {}

    def on_run_start(self, run: RunInfo) -> None:
        self.starts.append(time.perf_counter())

    def on_batch_end(self, record: BatchRecord) -> None:
        if record.phase == "test" and record.epoch not in self.ends:
            _sync(record.logits.device)
            self.ends[record.epoch] = time.perf_counter()

    def on_epoch_end(self, summary: EpochSummary) -> None:
        self.starts.append(time.perf_counter())

    def seconds(self) -> list[float]:
        return [self.ends[e] - self.starts[i] for i, e in enumerate(sorted(self.ends))]


def time_relabscope(cfg: TrainConfig, epochs: int = 2, log: bool = True) -> list[float]:
    """Training images/s of ``relabscope train``'s path per epoch (the first decodes)."""
    device = pick_device(cfg.device)
    started = time.perf_counter()
    data = prepare(cfg)
    data, train_b, test_b = load_images(data, device, default_workers() if cfg.workers is None else cfg.workers,
                                        cfg.cache_gb, lambda line: None)
    decode = time.perf_counter() - started
    torch.manual_seed(cfg.seed)
    method = build_method(cfg.method, len(data.class_names), cfg)
    clock = PassClock()
    hooks: list[Hook] = [clock, *([RunLogHook()] if log else [])]
    meta = run_metadata(cfg, device, data.fingerprint, len(data.train), len(data.test))
    with tempfile.TemporaryDirectory() as tmp:
        Trainer(cfg, data, train_b, test_b, method, device, hooks, Path(tmp), meta).fit()
    rates = [len(data.train) / s for s in clock.seconds()]
    if train_b.cache is not None:  # decoding happened before the first epoch: charge it to that epoch
        rates[0] = len(data.train) / (len(data.train) / rates[0] + decode)
    return rates


def time_limit(method: Method, device: torch.device, batch: int, sizes: Sizes, amp: bool,
               compiled: bool = False) -> float:
    """Training images/s of the bare network on a batch already on the device."""
    torch.manual_seed(0)
    method = method.to(device).to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(method.param_groups(), lr=1e-3, weight_decay=1e-4)
    x = torch.randn(batch, 3, sizes.image_size, sizes.image_size, device=device).contiguous(
        memory_format=torch.channels_last)
    y = torch.randint(0, RAFDB_CLASSES, (batch,), device=device)
    step: Callable[..., Any] = torch.compile(method.training_step) if compiled else method.training_step
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if amp and device.type == "cuda" else _Null()
    for i in range(sizes.warmup + sizes.steps):
        if i == sizes.warmup:
            _sync(device)
            started = time.perf_counter()
        with autocast:
            out = step(x, y, 20)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()
        method.after_step(out, y)
    _sync(device)
    return batch * sizes.steps / (time.perf_counter() - started)


class _Null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


# ---------------------------------------------------------------------- the benchmark
def rafdb_reference_data(root: Path, size: int) -> ReferenceDataset:
    lines = (root / "EmoLabel" / "list_patition_label.txt").read_text().split()
    names, labels = lines[0::2], lines[1::2]
    train = [(n, int(lab) - 1) for n, lab in zip(names, labels) if n.startswith("train")]
    paths = [root / "Image" / "aligned" / f"{n.rsplit('.', 1)[0]}_aligned.jpg" for n, _ in train]
    return ReferenceDataset(paths, np.array([lab for _, lab in train]), size)


def affectnet_reference_data(root: Path, size: int) -> ReferenceDataset:
    rows = [r.split(",") for r in (root / "training.csv").read_text().splitlines()[1:]]
    paths = [root / "Manually_Annotated_Images" / r[0] for r in rows]
    boxes = [tuple(int(v) for v in r[1:5]) for r in rows]
    return ReferenceDataset(paths, np.array([int(r[6]) for r in rows]), size, boxes)


def run(args: argparse.Namespace) -> dict[str, Any]:
    sizes = QUICK if args.quick else Sizes()
    device = pick_device(args.device)
    amp = device.type == "cuda"
    workers = args.workers if args.workers is not None else default_workers()
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    out: dict[str, Any] = {"device": str(device), "quick": args.quick, "image_size": sizes.image_size,
                           "torch": torch.__version__, "platform": platform.platform(), "shapes": {}}
    with tempfile.TemporaryDirectory() as tmp:
        shapes = {"rafdb": write_rafdb_like(Path(tmp) / "rafdb", *sizes.rafdb)}
        if not args.skip_affectnet:
            shapes["affectnet"] = write_affectnet_like(Path(tmp) / "affectnet", *sizes.affectnet,
                                                      sides=sizes.affectnet_side)
        for shape, root in shapes.items():
            dataset = "rafdb" if shape == "rafdb" else "affectnet"
            cache_gb = args.cache_gb if shape == "rafdb" else 0.0  # AffectNet: more than a cache holds
            base = {"dataset": dataset, "data": str(root), "image_size": sizes.image_size, "device": args.device,
                    "amp": amp, "workers": workers, "cache_gb": cache_gb, "embed_every": 1,
                    "epochs": 2 if args.quick else 3, "limit": None}
            ref_ds = (rafdb_reference_data if shape == "rafdb" else affectnet_reference_data)(root, sizes.image_size)
            result: dict[str, Any] = {"reference_64": time_reference(ref_ds, RAFDB_CLASSES, device, sizes, workers)}
            for b in batch_sizes:
                rates = time_relabscope(resolve({**base, "method": "scn-c", "batch_size": b}))
                result[f"relabscope_{b}"] = {"first_epoch": rates[0], "steady": statistics.median(rates[1:])}
            best = max(batch_sizes, key=lambda b: result[f"relabscope_{b}"]["steady"])
            result["best_batch"] = best
            result["per_method"] = {}
            for m in methods:
                cfg = resolve({**base, "method": m, "batch_size": best})
                limit = time_limit(build_method(m, RAFDB_CLASSES, cfg), device, best, sizes, amp)
                steady = statistics.median(time_relabscope(cfg)[1:]) if m != "scn-c" else \
                    result[f"relabscope_{best}"]["steady"]
                entry = {"limit": limit, "relabscope": steady, "of_limit": steady / limit}
                if args.compile:
                    entry["limit_compiled"] = time_limit(build_method(m, RAFDB_CLASSES, cfg), device, best, sizes,
                                                         amp, compiled=True)
                result["per_method"][m] = entry
            r64, limit = result["relabscope_64"]["steady"], result["per_method"]["scn-c"]["limit"]
            result["ratios"] = {"relabscope_64_over_reference": r64 / result["reference_64"],
                                "best_over_limit": result[f"relabscope_{best}"]["steady"] / limit,
                                "first_epoch_over_limit": result[f"relabscope_{best}"]["first_epoch"] / limit}
            out["shapes"][shape] = result
    return out


def print_table(result: dict[str, Any]) -> None:
    for shape, r in result["shapes"].items():
        print(f"\n{shape}-shaped data at {result['image_size']} px on {result['device']} (training images/s)")
        print(f"  reference SCN (batch 64, float32, per-image decode)   {r['reference_64']:>9.1f}")
        for key, value in r.items():
            if key.startswith("relabscope_"):
                print(f"  relabscope SCN-C, batch {key.split('_')[1]:<4} steady {value['steady']:>9.1f}   "
                      f"first epoch {value['first_epoch']:>9.1f}")
        print(f"  {'method':<10}{'limit':>10}{'relabscope':>12}{'of limit':>10}")
        for m, e in r["per_method"].items():
            extra = f"   compiled limit {e['limit_compiled']:.1f}" if "limit_compiled" in e else ""
            print(f"  {m:<10}{e['limit']:>10.1f}{e['relabscope']:>12.1f}{e['of_limit']:>10.0%}{extra}")
        ratios = r["ratios"]
        print(f"  relabscope at 64 / reference: {ratios['relabscope_64_over_reference']:.2f} (goal >= 5); "
              f"best batch {r['best_batch']} / limit: {ratios['best_over_limit']:.0%} (goal >= 80 %); "
              f"first epoch / limit: {ratios['first_epoch_over_limit']:.0%}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--quick", action="store_true", help="CPU-sized: a few hundred small images at 32 px")
    ap.add_argument("--methods", default="baseline,scn-c,rul-c,dmue-c", help="each against its own limit")
    ap.add_argument("--batch-sizes", default="64,128,256", help="relabscope's batch sizes; the best is reported")
    ap.add_argument("--workers", type=int, help="DataLoader workers of both data paths (default: from the CPUs)")
    ap.add_argument("--cache-gb", type=float, default=8.0, help="relabscope's decode cache for the RAF-DB shape")
    ap.add_argument("--compile", action="store_true", help="also time the limit under torch.compile")
    ap.add_argument("--skip-affectnet", action="store_true")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "throughput.json")
    args = ap.parse_args()
    if args.quick:  # what the suite runs: one method, one batch size, a few hundred small images
        args.batch_sizes = "64" if args.batch_sizes == "64,128,256" else args.batch_sizes
        args.methods = "scn-c" if args.methods == "baseline,scn-c,rul-c,dmue-c" else args.methods
    result = run(args)
    print_table(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
