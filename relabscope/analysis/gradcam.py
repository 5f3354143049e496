"""Grad-CAM heat maps of a run's final model (the seed paper's Fig. 6).

The figure asks where the network looks when it scores a face for a class: for a
relabelled sample, does the evidence for its given label and for its new label sit on
different parts of the face? ``run_gradcam`` answers it for any samples of a run: it
reloads the model from ``checkpoints/last.pt``, re-opens the images from the data set the
run's config names (the log keeps keys, not pixels), and runs captum's ``LayerGradCam`` on
the method's ``cam_layer()`` (ResNet-18's ``layer4``), targeting each sample's given label,
its label in effect after training, its clean label, or one fixed class.

Caveats:

- The attributed output is what ``Method.predict`` returns as logits. For SCN that is the
  importance-scaled logit ``alpha * W x``; the scale is positive and shared by all classes
  of a sample, so it changes the map's magnitude, not its shape (maps are normalised).
- Maps have ``layer4``'s resolution (image size / 32 with the 224 px stem, / 16 with the
  small stem below 100 px) upsampled bilinearly; a 16 px model gives a 1 x 1 map, i.e. a
  constant heat map. ``image_size`` can feed larger images to such a model to get finer
  maps, at the price of showing it inputs of a size it was not trained on.
- The checkpoint is the state after the last complete epoch; "effect" labels come from the
  run log. The two agree unless the run was killed between committing the log and
  replacing the checkpoint (then the log is one epoch ahead).
- Images are decoded exactly as training decoded them (same storage size, same resizing
  code); augmentation is not applied (evaluation mode, as in the paper's figure).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torch import nn

from relabscope.analysis.user_model import (USER_IMAGE_SIZE, ModelArg, Transform, load_user_model, ready_for_gradcam,
                                            stored_normalization)
from relabscope.config import from_stored
from relabscope.data import load_dataset
from relabscope.data.augment import normalize, to_model_input
from relabscope.data.pipeline import decode_all, storage_size
from relabscope.errors import RelabscopeError, RunDirError
from relabscope.methods import build_method
from relabscope.rundir import checkpoint_path
from relabscope.runlog.schema import SPLIT_CODES
from relabscope.training import checkpoint

if TYPE_CHECKING:
    from relabscope.analysis.run import Run
    from relabscope.methods.base import Method

TargetKind = Literal["given", "effect", "clean"]
OVERLAY_ALPHA = 0.4


@dataclass
class GradCamResult:
    """Grad-CAM for ``len(sample_ids)`` samples, in the order asked for.

    ``labels`` are the classes each map explains; ``images`` (n, H, W, 3) uint8 are the
    pixels the network saw before normalisation; ``heatmaps`` (n, H, W) float32 lie in
    [0, 1] (1 at each map's maximum; all zero where no location speaks for the class);
    ``overlays`` (n, H, W, 3) uint8 blend a jet colour map over the images;
    ``probabilities`` (n, K) are the model's softmax for each image. ``label_kind`` says
    how ``labels`` were chosen ("given", "effect", "clean" or "class" for a fixed class);
    ``class_names`` name the class ids.
    """

    sample_ids: np.ndarray
    labels: np.ndarray
    label_kind: str
    images: np.ndarray
    heatmaps: np.ndarray
    overlays: np.ndarray
    probabilities: np.ndarray
    class_names: list[str] = dataclasses.field(default_factory=list)

    def __len__(self) -> int:
        return len(self.sample_ids)

    @property
    def predictions(self) -> np.ndarray:
        """The model's predicted class per image."""
        return self.probabilities.argmax(axis=1)


class _Logits(nn.Module):
    """The method with logits as its only output, the forward function captum wants."""

    def __init__(self, method: Method):
        super().__init__()
        self.method = method

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.method.predict(images)[0].float()


# ---------------------------------------------------------------------- entry point
def run_gradcam(
    run: Run,
    sample_ids: list[int],
    *,
    label: TargetKind | int = "given",
    device: str | torch.device = "cpu",
    batch_size: int = 32,
    image_size: int | None = None,
    model: ModelArg | None = None,
    weights: str | Path | None = None,
    layer: str | None = None,
    transform: Transform | None = None,
) -> GradCamResult:
    """Grad-CAM of ``run``'s final checkpoint for ``sample_ids`` (see the module docstring),
    or of a model of your own (a run logged by a callback or your own loop).

    ``label``: "given" (the data set's label, noise included), "effect" (the label in
    effect after the last committed epoch, relabels applied), "clean" (when the data set
    knows it) or a class id for every sample. ``image_size`` overrides the run's training
    size (None keeps it; 224 for a model of your own when the run's config has none).

    A model of your own: ``model`` (an ``nn.Module``, or a factory called with no argument
    that builds one), ``weights`` (a state-dict file loaded into it, strictly; optional
    when the module is already trained) and ``layer`` (the dotted name of the layer to
    explain, e.g. "backbone.layer4" or "features.7"). Its forward may return the logits,
    a tuple whose first item they are, or an object with ``.logits`` (Hugging Face).
    ``transform`` turns the float images (B x 3 x S x S, 0..255) into the model's input
    (default: the normalisation the run recorded, ``RunCapture(normalize=...)``, else
    ImageNet's, as relabscope trains).

    Raises RunDirError when the checkpoint or the images cannot be found, RelabscopeError
    for a model, weights file or layer that cannot be used, ValueError for sample ids or
    classes out of range.
    """
    ids = np.asarray(list(sample_ids), dtype=np.int64).reshape(-1)
    n_samples = len(run.keys)
    bad = ids[(ids < 0) | (ids >= n_samples)]
    if len(bad):
        raise ValueError(f"sample id {int(bad[0])} out of range: the run has {n_samples} samples (0..{n_samples - 1})")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    targets = target_labels(run, ids, label)
    kind = label if isinstance(label, str) else "class"

    if model is None:
        method, cfg = load_model(run)
        forward: nn.Module = _Logits(method)
        target_layer = method.cam_layer()
        size = int(image_size or cfg.get("image_size") or run.config["image_size"])
        stored = int(cfg.get("image_size") or size)
    else:
        forward, target_layer = load_user_model(model, weights, layer)
        size = stored = int(image_size or run.config.get("image_size") or USER_IMAGE_SIZE)
        transform = transform or stored_normalization(run.config)
    dev = torch.device(device)
    forward.to(dev)
    uint8 = load_images(run, ids, image_size=stored)

    heat, shown, probs = [], [], []
    for start in range(0, len(ids), batch_size):
        batch = uint8[start:start + batch_size].to(dev)
        h, img, p = _gradcam_batch(forward, target_layer, batch,
                                   torch.as_tensor(targets[start:start + batch_size], device=dev), size,
                                   transform or normalize)
        heat.append(h)
        shown.append(img)
        probs.append(p)
    k = len(run.class_names)
    heatmaps = np.concatenate(heat) if heat else np.zeros((0, size, size), np.float32)
    images = np.concatenate(shown) if shown else np.zeros((0, size, size, 3), np.uint8)
    return GradCamResult(
        sample_ids=ids,
        labels=targets,
        label_kind=kind,
        images=images,
        heatmaps=heatmaps,
        overlays=overlay(images, heatmaps),
        probabilities=np.concatenate(probs) if probs else np.zeros((0, k), np.float32),
        class_names=list(run.class_names),
    )


def _gradcam_batch(
    forward: nn.Module, layer: nn.Module, images: torch.Tensor, targets: torch.Tensor, size: int,
    transform: Transform,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Heat maps, displayed images and probabilities of one batch of uint8 images
    (``forward``: images -> logits; ``layer``: the layer explained)."""
    from captum.attr import LayerAttribution, LayerGradCam  # optional heavy library: loaded for Grad-CAM only

    pixels = to_model_input(images, size)  # 3 x size x size, 0..255, before normalisation
    x = transform(pixels)
    with torch.no_grad():
        probs = forward(x).softmax(dim=1)
    cam = LayerGradCam(forward, layer)
    attr = cam.attribute(x, target=targets, relu_attributions=True)
    attr = LayerAttribution.interpolate(attr.detach(), (size, size), interpolate_mode="bilinear")
    heat = normalise_maps(attr[:, 0])
    shown = pixels.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
    return (heat.cpu().numpy().astype(np.float32), shown.cpu().numpy(),
            probs.cpu().numpy().astype(np.float32))


def normalise_maps(maps: torch.Tensor) -> torch.Tensor:
    """Per map: negative values to 0, then divided by the maximum, so each map spans
    [0, 1]; a map with no positive evidence stays all zero (rather than dividing by 0)."""
    maps = maps.float().clamp(min=0)
    peak = maps.flatten(1).amax(dim=1).view(-1, *([1] * (maps.dim() - 1)))
    return torch.where(peak > 0, maps / peak.clamp(min=torch.finfo(torch.float32).tiny), torch.zeros_like(maps))


# ---------------------------------------------------------------------- targets
def target_labels(run: Run, ids: np.ndarray, label: TargetKind | int) -> np.ndarray:
    """The class each sample's map explains, for ``label`` as ``run_gradcam`` takes it."""
    k = len(run.class_names)
    if isinstance(label, (int, np.integer)) and not isinstance(label, bool):
        if not 0 <= int(label) < k:
            raise ValueError(f"class {int(label)} out of range: the run has {k} classes (0..{k - 1})")
        return np.full(len(ids), int(label), dtype=np.int64)
    if label == "given":
        out = run.given_labels[ids]
    elif label == "effect":
        out = run.final_labels()[ids]
    elif label == "clean":
        clean = run.clean_labels
        out = np.full(len(ids), -1, np.int64) if clean is None else clean[ids]
        if (out < 0).any():
            raise ValueError(f"{run.path}: the run's data set has no clean label for sample "
                             f"{int(ids[np.argmax(out < 0)])}")
    else:
        raise ValueError(f"label must be given, effect, clean or a class id, not {label!r}")
    if (out < 0).any():
        raise ValueError(f"{run.path}: sample {int(ids[np.argmax(out < 0)])} has no label in effect "
                         "(it was not seen in training)")
    return out


# ---------------------------------------------------------------------- model
def load_model(run: Run) -> tuple[Method, dict[str, Any]]:
    """The run's final model and its config, made ready for Grad-CAM by
    :func:`~relabscope.analysis.user_model.ready_for_gradcam` (evaluation mode, in-place
    ReLUs off: torchvision's ResNet overwrites activations in place; parameters frozen)."""
    path = checkpoint_path(run.run_dir)
    if not path.is_file():
        raise RunDirError(f"{path}: checkpoint not found (Grad-CAM needs the run's final model; for a model of "
                          "your own: run.gradcam(ids, model=..., weights=..., layer=...))")
    try:
        state = checkpoint.load(path)
    except Exception as exc:  # torch raises several types for truncated or foreign files
        raise RunDirError(f"{path}: not a readable relabscope checkpoint ({exc.__class__.__name__})") from None
    if not isinstance(state, dict) or "model" not in state:
        raise RunDirError(f"{path}: not a relabscope checkpoint (no model state)")
    cfg = dict(state.get("config") or run.config)
    tc = from_stored(cfg)
    method = build_method(tc.method, len(run.class_names), tc)
    method.load_state_dict(state["model"])
    ready_for_gradcam(method)
    return method, cfg


# ---------------------------------------------------------------------- images
@dataclass
class DatasetIndex:
    """A run's data set, re-opened once: its splits and, per split, sample key -> row.

    ``Run`` keeps one (``Run._image_source``), so Grad-CAM calls and the dashboard's
    thumbnails do not re-parse a data set's label files (AffectNet: a 290k-row CSV) and
    re-index its keys on every request.
    """

    splits: Any
    rows: dict[str, dict[str, int]]


def open_image_source(run: Run) -> DatasetIndex:
    """Re-open the data set ``run``'s config names; RunDirError when it cannot be found."""
    cfg = run.config
    try:
        splits = load_dataset(cfg["dataset"], cfg.get("data"), **(cfg.get("dataset_options") or {}))
    except RelabscopeError as exc:
        raise RunDirError(f"{run.run_dir}: cannot re-open the run's images: {exc}") from None
    rows = {name: {key: i for i, key in enumerate(getattr(splits, name).keys)} for name in SPLIT_CODES}
    return DatasetIndex(splits, rows)


def load_images(run: Run, ids: np.ndarray, *, image_size: int) -> torch.Tensor:
    """uint8 ``n x C x S x S`` images of samples ``ids`` as training stored them.

    Finds each sample by its key in its split of the run's data set (``run._image_source``);
    ``image_size`` (the run's training size) picks the storage size exactly as training did
    (native size when smaller, else resized by the same code). A run whose images come
    from elsewhere (a folder, an array, a function: ``Run.images``) gives them letterboxed
    to ``image_size``.
    """
    if getattr(run, "_own_source", None) is not None:
        return torch.from_numpy(run.images(ids, size=image_size)).permute(0, 3, 1, 2).contiguous()
    where = run.config.get("data") or run.config.get("dataset")
    source = run._image_source
    samples = run.log.samples
    codes = {v: k for k, v in SPLIT_CODES.items()}
    out: torch.Tensor | None = None
    for code, name in codes.items():
        rows = np.flatnonzero(samples["split"][ids] == code)
        if not len(rows):
            continue
        index = source.rows[name]
        keys = [samples["key"][ids[r]] for r in rows]
        missing = [key for key in keys if key not in index]
        if missing:
            raise RunDirError(f"{where}: {name} sample {missing[0]!r} of {run.run_dir} is no longer in the data set")
        sub = getattr(source.splits, name).subset([index[key] for key in keys])
        sub.size = storage_size(sub, image_size)
        images, failures = decode_all(sub, workers=0)
        if failures:
            raise RunDirError(f"{failures[0][1]} (needed for the images of {run.run_dir})")
        if out is None:
            out = torch.empty((len(ids), *images.shape[1:]), dtype=torch.uint8)
        if images.shape[1:] != out.shape[1:]:  # e.g. grey train and colour test: make both 3-channel
            images, out = _as_rgb(images), _as_rgb(out)
        out[torch.from_numpy(rows)] = images
    if out is None:
        return torch.empty((0, 3, image_size, image_size), dtype=torch.uint8)
    return out


def _as_rgb(images: torch.Tensor) -> torch.Tensor:
    return images.expand(-1, 3, -1, -1).clone() if images.shape[1] == 1 else images


# ---------------------------------------------------------------------- overlays
# Jet's anchor colours: dark blue, blue, cyan, yellow, red, dark red.
_JET = np.array([
    [0.0, 0.0, 0.5], [0.0, 0.0, 1.0], [0.0, 1.0, 1.0], [1.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.5, 0.0, 0.0],
], dtype=np.float32)
_JET_AT = np.array([0.0, 0.11, 0.36, 0.64, 0.89, 1.0], dtype=np.float32)


def colormap(values: np.ndarray) -> np.ndarray:
    """A jet-like colour for each value in [0, 1]: ``(..., 3)`` float32 in [0, 1] (low
    values blue, high values red; no matplotlib needed)."""
    v = np.clip(np.asarray(values, dtype=np.float32), 0.0, 1.0)
    return np.stack([np.interp(v, _JET_AT, _JET[:, c]).astype(np.float32) for c in range(3)], axis=-1)


def overlay(images: np.ndarray, heatmaps: np.ndarray, *, alpha: float = OVERLAY_ALPHA) -> np.ndarray:
    """``images`` (n, H, W, 3) uint8 with ``colormap(heatmaps)`` blended in at ``alpha``."""
    colour = colormap(heatmaps) * 255.0
    blended = (1.0 - alpha) * images.astype(np.float32) + alpha * colour
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)
