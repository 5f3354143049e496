"""Loading pretrained ResNet-18 weights into the trunk: torchvision state dicts, the
MS-Celeb-1M checkpoints FER repositories distribute, and files that are neither."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import torchvision
from click.testing import CliRunner

from relabscope.cli import main
from relabscope.errors import RelabscopeError
from relabscope.models import ResNetTrunk, build_backbone, load_pretrained

SMALL, LARGE = 16, 112  # image sizes below / above the small-stem threshold (100 px)


def _torchvision_state(seed: int = 1) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return torchvision.models.resnet18(weights=None).state_dict()


def _trunk(image_size: int, seed: int = 2) -> ResNetTrunk:
    torch.manual_seed(seed)
    return build_backbone("resnet18", image_size)


def _trunk_keys(trunk: ResNetTrunk) -> set[str]:
    return set(trunk.state_dict())


@pytest.mark.parametrize("image_size", [SMALL, LARGE])
def test_torchvision_state_dict(tmp_path: Path, image_size: int) -> None:
    source = _torchvision_state()
    path = tmp_path / "resnet18.pth"
    torch.save(source, path)
    trunk = _trunk(image_size)
    conv1_before = trunk.conv1.weight.detach().clone()
    report = load_pretrained(trunk, path)

    keys = _trunk_keys(trunk)
    small = image_size < 100
    expected_loaded = keys - {"conv1.weight"} if small else keys
    assert set(report.loaded) == expected_loaded
    assert len(report.loaded) == len(expected_loaded)  # no duplicates
    skipped = {s.split(":")[0]: s for s in report.skipped}
    assert set(skipped) == ({"fc.weight", "fc.bias", "conv1.weight"} if small else {"fc.weight", "fc.bias"})
    assert "not in backbone" in skipped["fc.weight"] and "not in backbone" in skipped["fc.bias"]
    if small:
        assert "shape (64, 3, 7, 7) != (64, 3, 3, 3)" in skipped["conv1.weight"]
        assert report.missing == ["conv1.weight"]
        assert torch.equal(trunk.conv1.weight, conv1_before)  # left at its initialisation
    else:
        assert report.missing == []

    state = trunk.state_dict()
    for key in report.loaded:
        assert torch.equal(state[key], source[key]), key

    line = report.summary()
    assert "\n" not in line
    total = len(expected_loaded) + (1 if small else 0)
    assert line.startswith(f"pretrained: loaded {len(expected_loaded)} of {total} backbone tensors from {path}")
    assert f"skipped {len(skipped)} (" in line


def _msceleb_file(path: Path, with_bn_counters: bool) -> dict[str, torch.Tensor]:
    """The layout of the MS-Celeb-1M ResNet-18 checkpoints SCN/RUL/DMUE load: a dict with a
    ``state_dict`` entry, keys carrying DataParallel's ``module.`` prefix, and a 12,666-way
    identity classifier."""
    torch.manual_seed(7)
    net = torchvision.models.resnet18(weights=None, num_classes=12666)
    inner = {
        f"module.{k}": v for k, v in net.state_dict().items()
        if with_bn_counters or not k.endswith("num_batches_tracked")
    }
    assert inner["module.fc.weight"].shape == (12666, 512)
    torch.save({"epoch": 30, "arch": "resnet18", "best_prec1": 0.9, "state_dict": inner}, path)
    return {k[len("module."):]: v for k, v in inner.items()}


@pytest.mark.parametrize("with_bn_counters", [True, False])
def test_msceleb_checkpoint(tmp_path: Path, with_bn_counters: bool) -> None:
    path = tmp_path / "resnet18_msceleb.pth"
    source = _msceleb_file(path, with_bn_counters)
    trunk = _trunk(LARGE)
    report = load_pretrained(trunk, path)

    expected = {k for k in source if not k.startswith("fc.")}
    assert set(report.loaded) == expected
    assert all(not k.startswith("module.") for k in report.loaded)  # prefix stripped
    assert sorted(s.split(":")[0] for s in report.skipped) == ["fc.bias", "fc.weight"]
    assert report.missing == []  # every trunk tensor came from the file (counters aside)
    state = trunk.state_dict()
    for key in expected:
        assert torch.equal(state[key], source[key]), key

    line = report.summary()
    m = re.match(r"pretrained: loaded (\d+) of (\d+) backbone tensors from (\S+); skipped 2 \(", line)
    assert m, line
    assert int(m.group(1)) == len(expected) == int(m.group(2))
    assert m.group(3) == str(path)


def test_msceleb_checkpoint_into_small_stem(tmp_path: Path) -> None:
    path = tmp_path / "resnet18_msceleb.pth"
    source = _msceleb_file(path, with_bn_counters=False)
    trunk = _trunk(SMALL)
    report = load_pretrained(trunk, path)
    assert "conv1.weight" not in report.loaded
    assert any(s.startswith("conv1.weight: shape") for s in report.skipped)
    assert report.missing == ["conv1.weight"]
    assert torch.equal(trunk.layer4[1].conv2.weight, source["layer4.1.conv2.weight"])


def test_garbage_file_is_a_user_error(tmp_path: Path) -> None:
    path = tmp_path / "weights.pth"
    path.write_bytes(b"\x00\x01 this is not a pytorch file " * 20)
    with pytest.raises(RelabscopeError, match=re.escape(str(path)) + ": not a PyTorch weights file") as exc:
        load_pretrained(_trunk(SMALL), path)
    assert "\n" not in str(exc.value)


def test_garbage_file_message_does_not_advise_unsafe_loading(tmp_path: Path) -> None:
    path = tmp_path / "weights.pth"
    path.write_bytes(b"\x00\x01 this is not a pytorch file " * 20)
    with pytest.raises(RelabscopeError) as exc:
        load_pretrained(_trunk(SMALL), path)
    assert "weights_only" not in str(exc.value)


def test_missing_file_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(RelabscopeError, match="pretrained weights file not found"):
        load_pretrained(_trunk(SMALL), tmp_path / "nope.pth")


@pytest.mark.parametrize("content", [
    {"foo.weight": torch.zeros(3), "bar.bias": torch.ones(2)},          # nothing by name
    {"state_dict": {"module.fc.weight": torch.zeros(12666, 512),        # classifier only
                    "module.fc.bias": torch.zeros(12666)}},
    {"conv1.weight": torch.zeros(64, 3, 5, 5)},                         # name right, shape wrong
])
def test_no_matching_tensor_is_a_user_error(tmp_path: Path, content) -> None:
    path = tmp_path / "weights.pth"
    torch.save(content, path)
    trunk = _trunk(LARGE)
    before = {k: v.clone() for k, v in trunk.state_dict().items()}
    with pytest.raises(RelabscopeError, match="no tensor matches the resnet18 backbone"):
        load_pretrained(trunk, path)
    assert all(torch.equal(before[k], v) for k, v in trunk.state_dict().items())


@pytest.mark.parametrize("content", [torch.zeros(3), {"epoch": 3, "arch": "resnet18"}, [1, 2, 3]])
def test_not_a_state_dict_is_a_user_error(tmp_path: Path, content) -> None:
    path = tmp_path / "weights.pth"
    torch.save(content, path)
    with pytest.raises(RelabscopeError, match="not a state dict"):
        load_pretrained(_trunk(SMALL), path)


def test_cli_prints_the_load_summary(tmp_path: Path) -> None:
    source = _torchvision_state()
    path = tmp_path / "resnet18.pth"
    torch.save(source, path)
    out = tmp_path / "run"
    result = CliRunner().invoke(main, [
        "train", "--method", "scn", "--pretrained", str(path), "--epochs", "1",
        "-O", "num_train=48", "-O", "num_test=16", "-O", "size=32", "--image-size", "16",
        "--batch-size", "16", "--workers", "0", "--device", "cpu", "-q", "--out", str(out),
    ])
    assert result.exit_code == 0, result.output + repr(result.exception)
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("pretrained:")]
    assert len(lines) == 1, result.stderr
    n_trunk = len(_trunk(16).state_dict())
    # small stem: conv1 skipped for its shape (and reported), fc skipped; everything else loads
    assert lines[0].startswith(f"pretrained: loaded {n_trunk - 1} of {n_trunk} backbone tensors from {path}; skipped 3 ("), lines[0]
    assert "conv1.weight: shape" in lines[0]
    # the file's weights reached the model that trained: 3 Adam steps at lr 1e-3 move a
    # weight by a few thousandths, far less than two random initialisations differ
    ckpt = torch.load(out / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)
    trained = ckpt["model"]["backbone.layer4.1.conv2.weight"]
    assert (trained - source["layer4.1.conv2.weight"]).abs().mean() < 0.005
    assert (source["layer4.1.conv2.weight"] - _trunk(16, seed=5).layer4[1].conv2.weight).abs().mean() > 0.01
