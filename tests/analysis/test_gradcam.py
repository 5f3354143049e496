"""Grad-CAM of a run's final model: shapes, targets, images as trained, and the maps
themselves against a Grad-CAM computed here by hand (no captum)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from relabscope.analysis import gradcam
from relabscope.analysis.gradcam import run_gradcam
from relabscope.errors import RunDirError
from relabscope.rundir import checkpoint_path


@pytest.fixture(scope="module")
def scn(tiny_runs: dict[str, Path]):
    from relabscope.analysis.run import Run

    run = Run(tiny_runs["scn"])
    yield run
    run.close()


@pytest.fixture(scope="module")
def ids(scn) -> list[int]:
    """Two training samples (one relabelled, if any) and two test samples."""
    relabelled = [int(s) for s in scn.log.relabels()["sample"]]
    train = [relabelled[0] if relabelled else 0, 1]
    return [*train, int(scn.log.meta["num_train"]), int(scn.log.meta["num_samples"]) - 1]


@pytest.fixture(scope="module")
def spied(scn, ids):
    """run_gradcam's result, with the model it built kept for inspection."""
    built = []
    real = gradcam.load_model

    def spy(run):
        method, cfg = real(run)
        built.append(method)
        return method, cfg

    gradcam.load_model = spy
    try:
        result = run_gradcam(scn, ids, label="given", batch_size=3)  # two batches
    finally:
        gradcam.load_model = real
    return result, built[0]


def test_shapes_ranges_and_targets(scn, ids, spied):
    res, _ = spied
    n, size, k = len(ids), scn.config["image_size"], scn.num_classes
    assert np.array_equal(res.sample_ids, ids)
    assert res.images.shape == (n, size, size, 3) and res.images.dtype == np.uint8
    assert res.overlays.shape == (n, size, size, 3) and res.overlays.dtype == np.uint8
    assert res.heatmaps.shape == (n, size, size) and res.heatmaps.dtype == np.float32
    assert res.heatmaps.min() >= 0.0 and res.heatmaps.max() <= 1.0
    for m in res.heatmaps:  # each map is normalised to peak 1, or all zero
        assert m.max() == pytest.approx(1.0) or not m.any()
    assert res.probabilities.shape == (n, k)
    assert np.allclose(res.probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert np.array_equal(res.labels, scn.given_labels[ids])


def test_images_are_the_ones_the_model_was_tested_on(scn, ids, spied):
    """The test split's probabilities match those the last epoch logged: same pixels, same
    resizing, same weights."""
    res, _ = spied
    test = [i for i, s in enumerate(ids) if s >= scn.log.meta["num_train"]]
    logged = scn.log.epoch_array("prob", -1)[np.asarray(ids)[test]].astype(np.float32)
    assert np.allclose(res.probabilities[test], logged, atol=2e-3)


def test_no_gradients_or_hooks_left_behind(spied):
    _, method = spied
    assert all(p.grad is None for p in method.parameters())
    assert not any(m._forward_hooks or m._backward_hooks or m._forward_pre_hooks for m in method.modules())
    assert not any(m.inplace for m in method.modules() if isinstance(m, torch.nn.ReLU))


def test_effect_and_fixed_targets(tiny_runs, ids):
    from relabscope.analysis.run import Run
    from relabscope.training import checkpoint

    with Run(tiny_runs["scn-c"]) as run:
        effect = run_gradcam(run, ids, label="effect")
        fixed = run_gradcam(run, ids[:1], label=2)
        # the checkpoint's own labels in effect (training samples) agree with the log's
        current = checkpoint.load(checkpoint_path(run.run_dir))["labels"]["current"].numpy()
        train = [i for i, s in enumerate(ids) if s < len(current)]
        assert np.array_equal(effect.labels[train], current[np.asarray(ids)[train]])
        test = [i for i, s in enumerate(ids) if s >= len(current)]
        assert np.array_equal(effect.labels[test], run.given_labels[np.asarray(ids)[test]])
        assert fixed.labels.tolist() == [2] and fixed.label_kind == "class"
        with pytest.raises(ValueError, match="out of range"):
            run_gradcam(run, [len(run.given_labels)])
        with pytest.raises(ValueError, match="out of range"):
            run_gradcam(run, [0], label=run.num_classes)


def _manual_gradcam(method, x: torch.Tensor, target: int) -> np.ndarray:
    """Grad-CAM by the paper's recipe: keep layer4's activations A, backpropagate the
    target logit, weight each channel by its gradient's spatial mean, ReLU the weighted
    sum, upsample bilinearly, divide by the maximum."""
    kept = {}

    def keep(module, inputs, output):
        output.retain_grad()
        kept["a"] = output

    x = x.clone().requires_grad_(True)  # parameters are frozen; the graph needs a leaf
    handle = method.cam_layer().register_forward_hook(keep)
    try:
        logits, _ = method.predict(x)
        logits[0, target].backward()
    finally:
        handle.remove()
    a, g = kept["a"].detach(), kept["a"].grad
    weights = g.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * a).sum(dim=1, keepdim=True))
    cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
    return (cam / cam.max() if cam.max() > 0 else cam).numpy()


def test_maps_match_a_hand_made_gradcam(scn, ids):
    """At 48 px the 16-px model's layer4 map is 3 x 3, so the map has structure to compare
    (at the run's own 16 px it is 1 x 1: a constant)."""
    from relabscope.data.augment import eval_transform

    target = 4
    res = run_gradcam(scn, ids[:2], label=target, image_size=48)
    method, cfg = gradcam.load_model(scn)
    uint8 = gradcam.load_images(scn, np.asarray(ids[:2]), image_size=cfg["image_size"])
    for i in range(2):
        expected = _manual_gradcam(method, eval_transform(uint8[i:i + 1], 48), target)
        assert expected.shape == res.heatmaps[i].shape == (48, 48)
        assert expected.std() > 0  # a real map, not a constant
        np.testing.assert_allclose(res.heatmaps[i], expected, atol=1e-4)


def test_missing_checkpoint_and_data(tiny_runs, tmp_path):
    from relabscope.analysis.run import Run

    for name in ("run.h5", "config.toml"):
        shutil.copy(tiny_runs["baseline"] / name, tmp_path / name)
    with Run(tmp_path) as run:
        with pytest.raises(RunDirError, match="last.pt"):
            run_gradcam(run, [0])
    with Run(tiny_runs["baseline"]) as run:
        run.log.__dict__["config"] = {**run.config, "dataset": "rafdb", "data": str(tmp_path / "gone")}
        with pytest.raises(RunDirError, match="gone"):
            run_gradcam(run, [0])
