"""Grad-CAM for a model relabscope did not build: a module or factory, a weights file, a layer."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import relabscope as rs
from relabscope.data.augment import normalize, to_model_input
from relabscope.errors import RelabscopeError

SIZE, N = 16, 8


class TinyNet(nn.Module):
    def __init__(self, hf_style: bool = False):
        super().__init__()
        self.hf_style = hf_style
        self.features = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(inplace=True),
                                      nn.Conv2d(6, 8, 3, padding=1, stride=2), nn.ReLU(inplace=True))
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        logits = self.head(F.adaptive_avg_pool2d(self.features(x), 1).flatten(1))
        return SimpleNamespace(logits=logits) if self.hf_style else (logits, None)


@pytest.fixture()
def user_run(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(N, SIZE, SIZE, 3), dtype=np.uint8)
    np.save(tmp_path / "images.npy", images)
    samples = rs.SampleTable(key=[f"s{i}" for i in range(N)], split=[0] * 6 + [1, 1], given_label=rng.integers(0, 3, N))
    with rs.RunLogWriter.create(tmp_path / "run", samples, ["a", "b", "c"], embed_dim=4,
                                images=tmp_path / "images.npy") as log:
        log.log_batch(np.arange(6), samples.given_label[:6], rng.normal(size=(6, 3)), rng.normal(size=(6, 4)))
        log.log_batch(np.arange(6, 8), samples.given_label[6:], rng.normal(size=(2, 3)), rng.normal(size=(2, 4)),
                      phase="test")
        log.end_epoch()
    torch.manual_seed(0)
    net = TinyNet()
    torch.save(net.state_dict(), tmp_path / "weights.pt")
    return tmp_path / "run", net, images, tmp_path / "weights.pt"


def _manual(net: TinyNet, image: np.ndarray, target: int, layer: nn.Module) -> np.ndarray:
    x = normalize(to_model_input(torch.from_numpy(image).permute(2, 0, 1)[None], SIZE))
    kept = {}
    handle = layer.register_forward_hook(lambda m, i, o: kept.update(a=o) or o.retain_grad())
    try:
        net(x)[0][0, target].backward()
    finally:
        handle.remove()
    a, g = kept["a"].detach(), kept["a"].grad
    cam = F.relu((g.mean(dim=(2, 3), keepdim=True) * a).sum(dim=1, keepdim=True))
    cam = F.interpolate(cam, size=(SIZE, SIZE), mode="bilinear", align_corners=False)[0, 0]
    return (cam / cam.max() if cam.max() > 0 else cam).numpy()


def test_a_factory_and_weights_file_give_the_hand_made_map(user_run):
    path, net, images, weights = user_run
    with rs.open_run(path) as run:
        res = run.gradcam([0, 7], label=2, model=TinyNet, weights=weights, layer="features.2", image_size=SIZE)
    assert res.heatmaps.shape == (2, SIZE, SIZE) and res.images.shape == (2, SIZE, SIZE, 3)
    np.testing.assert_array_equal(res.images, images[[0, 7]])  # the array source's pixels, unchanged at 16 px
    reference = TinyNet()
    reference.load_state_dict(torch.load(weights))
    for module in reference.modules():  # an in-place ReLU would overwrite the activation the hook keeps
        if isinstance(module, nn.ReLU):
            module.inplace = False
    for i, sid in enumerate([0, 7]):
        expected = _manual(reference, images[sid], 2, reference.features[2])
        assert expected.std() > 0
        np.testing.assert_allclose(res.heatmaps[i], expected, atol=1e-5)
    x = normalize(to_model_input(torch.from_numpy(images[[0, 7]]).permute(0, 3, 1, 2), SIZE))
    np.testing.assert_allclose(res.probabilities, reference(x)[0].softmax(1).detach().numpy(), atol=1e-5)


def test_a_module_with_hugging_face_outputs(user_run):
    path, net, images, _ = user_run
    hf = TinyNet(hf_style=True)
    hf.load_state_dict(net.state_dict())
    with rs.open_run(path) as run:
        plain = run.gradcam([1, 2], model=net, layer="features.2", image_size=SIZE)
        other = run.gradcam([1, 2], model=hf, layer="features.2", image_size=SIZE)
    np.testing.assert_allclose(plain.heatmaps, other.heatmaps, atol=1e-6)


@pytest.mark.filterwarnings("ignore:`torch.jit.trace:FutureWarning")
def test_unusable_models_are_one_line(user_run, tmp_path):
    path, net, _, weights = user_run
    torch.save({"head.weight": torch.zeros(2, 2)}, tmp_path / "wrong.pt")
    scripted = torch.jit.trace(nn.Sequential(nn.Conv2d(3, 2, 1)), torch.zeros(1, 3, 4, 4))
    cases = [(dict(model=net, layer="features.9"), "no such module"),
             (dict(model=net, layer=None), "name the layer"),
             (dict(model=TinyNet, weights=tmp_path / "wrong.pt", layer="features.2"), "wrong.pt: does not fit"),
             (dict(model=TinyNet, weights=tmp_path / "missing.pt", layer="features.2"), "weights file not found"),
             (dict(model=scripted, layer="0"), "TorchScript"),
             (dict(model=str(weights), layer="0"), "TorchScript file cannot be explained"),
             (dict(model=lambda: 3, layer="0"), "returned int")]
    with rs.open_run(path) as run:
        for options, message in cases:
            with pytest.raises(RelabscopeError, match=message) as info:
                run.gradcam([0], image_size=SIZE, **options)
            assert "\n" not in str(info.value)


def test_the_module_given_is_left_as_it_was_and_still_trains(user_run):
    """Grad-CAM works on a copy: the user's module keeps its weights, training mode,
    requires_grad flags and in-place ReLUs, and a training step after it still updates it."""
    run_dir, net, _, _ = user_run
    net.train()
    net.features[0].weight.requires_grad_(False)  # a frozen layer of the user's own stays frozen, the rest trains
    before = {k: v.clone() for k, v in net.state_dict().items()}
    flags = [p.requires_grad for p in net.parameters()]
    with rs.open_run(run_dir) as run:
        run.gradcam([0, 1], model=net, layer="features.2", image_size=SIZE)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert net.training and all(m.training for m in net.modules())
    assert [p.requires_grad for p in net.parameters()] == flags
    assert all(m.inplace for m in net.modules() if isinstance(m, nn.ReLU))
    opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.1)
    net(torch.randn(4, 3, SIZE, SIZE))[0].sum().backward()
    opt.step()
    assert not torch.equal(before["head.weight"], net.state_dict()["head.weight"])
    assert torch.equal(before["features.0.weight"], net.state_dict()["features.0.weight"])


def test_grad_cam_applies_the_normalisation_the_run_recorded(tmp_path, user_run):
    """A run logged with RunCapture(normalize=(mean, std)) is explained through that
    normalisation without a transform= (ImageNet's otherwise)."""
    _, net, images, _ = user_run
    mean, std = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]
    samples = rs.SampleTable(key=[f"s{i}" for i in range(N)], split=[0] * 6 + [1, 1], given_label=[0, 1, 2] * 2 + [0, 1])
    with rs.RunLogWriter.create(tmp_path / "normed", samples, ["a", "b", "c"], embed_dim=4,
                                images=tmp_path / "images.npy", config={"normalize": {"mean": mean, "std": std}}) as log:
        log.log_batch(np.arange(6), samples.given_label[:6], np.zeros((6, 3)), np.zeros((6, 4)))
        log.end_epoch()

    def by_hand(pixels: torch.Tensor) -> torch.Tensor:
        return (pixels / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)

    with rs.open_run(tmp_path / "normed") as run:
        stored = run.gradcam([0, 1], model=net, layer="features.2", image_size=SIZE)
        explicit = run.gradcam([0, 1], model=net, layer="features.2", image_size=SIZE, transform=by_hand)
        imagenet = run.gradcam([0, 1], model=net, layer="features.2", image_size=SIZE, transform=normalize)
    np.testing.assert_allclose(stored.heatmaps, explicit.heatmaps, atol=1e-5)
    np.testing.assert_allclose(stored.probabilities, explicit.probabilities, atol=1e-5)
    assert not np.allclose(stored.probabilities, imagenet.probabilities, atol=1e-4)
