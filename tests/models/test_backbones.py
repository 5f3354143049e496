"""The ``backbone`` setting: torchvision's ResNet-18/34/50 and timm models as the trunk of
every method, the one-line errors for names and method/backbone pairs that cannot work,
pretrained loading into the chosen trunk, and tiny training runs whose logs and Grad-CAM
follow the trunk's embedding size."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Iterator

import pytest
import timm
import torch
import torchvision
from click.testing import CliRunner

from relabscope.analysis.gradcam import load_model
from relabscope.analysis.run import Run
from relabscope.cli import main
from relabscope.config import TrainConfig, resolve
from relabscope.errors import RelabscopeError
from relabscope.methods import METHODS, build_method
from relabscope.models import ResNetTrunk, TimmTrunk, build_backbone, load_pretrained
from relabscope.training import checkpoint
from relabscope.training.runner import train

TIMM_CNN = "test_resnet"  # timm's own tiny ResNet for tests: 0.4 M parameters, 96-d embedding
TIMM_VIT = "test_vit"  # a tiny vision transformer: tokens, no spatial feature map
DIMS = {"resnet18": 512, "resnet34": 512, "resnet50": 2048, TIMM_CNN: 96}
TINY = {"dataset_options": {"num_train": 48, "num_test": 16, "size": 32}, "image_size": 32, "batch_size": 16,
        "workers": 0, "device": "cpu", "epochs": 1, "embed_every": 1, "seed": 0, "keep_optimizer": False}


def _one_line(exc: pytest.ExceptionInfo[BaseException]) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


# ---------------------------------------------------------------------- the trunks
@pytest.mark.parametrize("size, side", [(32, 2), (224, 7)])  # small stem: stride 16; else 32
@pytest.mark.parametrize("name", ["resnet18", "resnet34", "resnet50"])
def test_torchvision_backbones(name: str, size: int, side: int) -> None:
    trunk = build_backbone(name, size).eval()
    assert isinstance(trunk, ResNetTrunk) and trunk.name == name and trunk.out_dim == DIMS[name]
    assert trunk.conv1.kernel_size == ((3, 3) if size < 100 else (7, 7))
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        fmap = trunk.feature_map(x)
        assert fmap.shape == (2, DIMS[name], side, side)
        assert trunk.feature_map_shape(size) == (DIMS[name], side, side)
        assert torch.allclose(trunk(x), fmap.mean(dim=(2, 3)), atol=1e-5)  # the embedding pools the map
        assert torch.equal(trunk.last_block(trunk.stem(x)), fmap)  # DMUE's split
    assert trunk.cam_layer() is trunk.layer4


def test_resnet18_keeps_torchvision_names_and_initialisation() -> None:
    """Checkpoints and pretrained files of ResNet-18 runs load as before: the trunk's
    tensors are torchvision's, names and initial values (same seed), classifier aside."""
    torch.manual_seed(5)
    reference = torchvision.models.resnet18(weights=None).state_dict()
    torch.manual_seed(5)
    state = build_backbone("resnet18", 224).state_dict()
    assert list(state) == [k for k in reference if not k.startswith("fc.")]
    assert all(torch.equal(state[k], reference[k]) for k in state)


def test_timm_cnn_embedding_size_comes_from_the_network() -> None:
    """MobileNetV3's head adds a layer after pooling: its embedding (1024) is neither its
    num_features (288) nor 512; the feature map and Grad-CAM's layer are the last stage's."""
    trunk = build_backbone("mobilenetv3_small_050", 32)
    assert isinstance(trunk, TimmTrunk) and trunk.spatial
    assert trunk.training and trunk.pretrained_target.training  # the build's size probe restored training mode
    model = trunk.pretrained_target
    assert (trunk.out_dim, model.num_features) == (1024, 288)
    trunk.eval()
    with torch.no_grad():
        assert trunk(torch.randn(2, 3, 32, 32)).shape == (2, 1024)
        assert trunk.feature_map(torch.randn(2, 3, 32, 32)).shape == (2, 288, 1, 1)
    assert trunk.cam_layer() is model.get_submodule("blocks.5")


def test_a_transformer_has_no_feature_map_for_rul_or_gradcam() -> None:
    trunk = build_backbone(TIMM_VIT, 224)
    assert not trunk.spatial and trunk.out_dim == 64
    with pytest.raises(RelabscopeError, match="Grad-CAM needs a spatial feature map") as exc:
        trunk.cam_layer()
    assert TIMM_VIT in _one_line(exc)
    cfg = resolve({"method": "rul", "backbone": TIMM_VIT, "image_size": 224})
    with pytest.raises(RelabscopeError, match=r"method rul \(its uncertainty heads\) needs a spatial") as exc:
        build_method("rul", 3, cfg)
    assert "'test_vit' has none (its features are tokens or channels-last)" in _one_line(exc)
    assert build_method("scn", 3, resolve({"method": "scn", "backbone": TIMM_VIT, "image_size": 224})).embed_dim == 64


# ---------------------------------------------------------------------- names and pairs refused
def test_unknown_name_is_refused_when_built() -> None:
    with pytest.raises(RelabscopeError) as exc:
        build_backbone("resnet5O", 32)
    assert _one_line(exc).startswith("unknown backbone 'resnet5O': not one of resnet18, resnet34, resnet50 nor a "
                                     "timm model; did you mean resnet50, ")  # then timm's closest names
    with pytest.raises(RelabscopeError, match="unknown backbone 'no-such-net'.*timm.list_models"):
        build_method("baseline", 3, resolve({"backbone": "no-such-net"}))


def test_without_timm_only_torchvision_names_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm now fails, as when it is not installed
    expected = ("backbone must be one of resnet18, resnet34, resnet50, got 'resnet10t' "
                "(other names are timm models: pip install relabscope[timm])")
    with pytest.raises(RelabscopeError) as exc:
        resolve({"backbone": "resnet10t"})
    assert _one_line(exc) == f"invalid setting: {expected}"
    with pytest.raises(RelabscopeError) as exc:
        build_backbone("resnet10t", 32)
    assert _one_line(exc) == expected
    assert resolve({"backbone": "resnet34"}).backbone == "resnet34"


@pytest.mark.parametrize("method", [m for m, entry in METHODS.items() if entry.splits_backbone])
def test_dmue_needs_a_backbone_it_can_split(method: str) -> None:
    expected = (f"method {method} copies its backbone's last block per class, which needs one of resnet18, resnet34, "
                f"resnet50; backbone '{TIMM_CNN}' does not split into a stem and a last block")
    with pytest.raises(RelabscopeError) as exc:  # the config refuses it before any data is loaded
        resolve({"method": method, "backbone": TIMM_CNN})
    assert _one_line(exc) == f"invalid setting: {expected}"
    unchecked = TrainConfig(method=method, backbone=TIMM_CNN, image_size=32)  # no validation: the build refuses it
    with pytest.raises(RelabscopeError, match=f"method {method} copies its backbone.s last block per class"):
        build_method(method, 3, unchecked)


def test_dmue_on_resnet50_branches_are_its_layer4() -> None:
    cfg = resolve({"method": "dmue-c", "backbone": "resnet50"})
    model = build_method("dmue-c", 2, cfg)
    assert model.embed_dim == 2048 and model.center is not None and model.center.centers.shape == (2, 2048)
    assert model.neck.num_features == 2048 and model.fc.in_features == 2048
    assert [type(b) for b in model.branches] == [type(model.backbone.layer4)] * 2
    out = model.training_step(torch.randn(6, 3, 32, 32), torch.tensor([0, 1, 0, 1, 0, 1]), epoch=0)
    assert out.embedding.shape == (6, 2048) and out.logits.shape == (6, 2) and torch.isfinite(out.loss)


# ---------------------------------------------------------------------- pretrained weights
def test_pretrained_resnet50_loads_by_name_and_shape(tmp_path: Path) -> None:
    torch.manual_seed(1)
    source = torchvision.models.resnet50(weights=None).state_dict()
    path = tmp_path / "resnet50.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.items()}}, path)
    trunk = build_backbone("resnet50", 32)  # small stem: the 7x7 conv1 does not fit
    report = load_pretrained(trunk, path)
    assert set(report.loaded) == set(trunk.state_dict()) - {"conv1.weight"} and report.missing == ["conv1.weight"]
    assert sorted(s.split(":")[0] for s in report.skipped) == ["conv1.weight", "fc.bias", "fc.weight"]
    assert torch.equal(trunk.layer4[2].conv3.weight, source["layer4.2.conv3.weight"])

    torch.save({"foo.weight": torch.zeros(3)}, path)
    with pytest.raises(RelabscopeError) as exc:
        load_pretrained(trunk, path)
    assert _one_line(exc) == f"{path}: no tensor matches the resnet50 backbone"


def test_pretrained_timm_weights_load_under_timm_names(tmp_path: Path) -> None:
    torch.manual_seed(1)
    source = timm.create_model(TIMM_CNN, pretrained=False, num_classes=10).state_dict()
    path = tmp_path / "timm.pth"
    torch.save(source, path)
    trunk = build_backbone(TIMM_CNN, 32)
    report = load_pretrained(trunk, path)
    assert set(report.loaded) == {k for k in source if not k.startswith("fc.")} and report.missing == []
    assert torch.equal(trunk.pretrained_target.state_dict()["layer4.0.conv1.weight"], source["layer4.0.conv1.weight"])


# ---------------------------------------------------------------------- tiny runs
@pytest.fixture
def run_dir(tmp_path: Path) -> Iterator[Path]:
    """A run directory removed after the test (a ResNet-50 checkpoint is 100 MB)."""
    yield tmp_path / "run"
    shutil.rmtree(tmp_path, ignore_errors=True)


@pytest.mark.parametrize("method, backbone", [
    ("baseline", "resnet50"), ("rul", "resnet50"), ("baseline", TIMM_CNN), ("scn", TIMM_CNN), ("rul-c", TIMM_CNN),
])
def test_tiny_run_logs_the_backbones_embedding(run_dir: Path, method: str, backbone: str) -> None:
    train({**TINY, "method": method, "backbone": backbone, "out": str(run_dir)}, progress=False, log=lambda line: None)
    with Run(run_dir) as run:
        assert run.status == "finished" and run.config["backbone"] == backbone
        dim = 64 if method.startswith("rul") else DIMS[backbone]  # RUL logs its 64-d mean feature
        assert run.log.meta["embed_dim"] == dim and run.embeddings().shape == (64, dim)
        state = checkpoint.load(run_dir / "checkpoints" / "last.pt")["model"]
        if method.startswith("rul"):  # its heads read the backbone's unpooled map: C x 2 x 2 (ResNet) or x 1 x 1
            side = 4 if backbone == "resnet50" else 1
            assert state["mu_head.linear.weight"].shape == (64, DIMS[backbone] * side)


def test_cli_trains_scn_on_resnet50_and_gradcam_reads_its_layer4(run_dir: Path) -> None:
    options = ["--dataset-option", "num_train=48", "-O", "num_test=16", "-O", "size=32", "--image-size", "32",
               "--batch-size", "16", "--epochs", "1", "--workers", "0", "--device", "cpu", "--drop-optimizer"]
    result = CliRunner().invoke(main, ["train", "--method", "scn", "--backbone", "resnet50", *options, "-q",
                                       "--out", str(run_dir)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    with Run(run_dir) as run:
        assert run.config["backbone"] == "resnet50" and run.log.meta["embed_dim"] == 2048
        method, _ = load_model(run)
        assert method.cam_layer() is method.backbone.layer4 and method.backbone.layer4[-1].conv3.out_channels == 2048
        cam = run.gradcam([0, 1, 2], label="given")
    assert cam.heatmaps.shape == (3, 32, 32) and cam.probabilities.shape == (3, len(run.class_names))
    assert cam.heatmaps.min() >= 0 and cam.heatmaps.max() <= 1 and (cam.heatmaps.reshape(3, -1).max(axis=1) > 0).any()


def test_gradcam_on_a_timm_cnn_reads_its_last_stage(run_dir: Path) -> None:
    train({**TINY, "method": "baseline", "backbone": TIMM_CNN, "image_size": 64, "out": str(run_dir)},
          progress=False, log=lambda line: None)
    with Run(run_dir) as run:
        method, _ = load_model(run)
        assert method.cam_layer() is method.backbone.pretrained_target.layer4  # timm's feature_info: last stage
        cam = run.gradcam([0, 1], label="given")
    assert cam.heatmaps.shape == (2, 64, 64) and 0 <= cam.heatmaps.min() and cam.heatmaps.max() <= 1
