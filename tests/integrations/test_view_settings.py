"""What the views need to know of a method and model of your own, as first-class
arguments of RunCapture and both callbacks: the relabel threshold and first epoch (the
consistency view's control group), the input size and normalisation (Grad-CAM)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import relabscope as rs
from relabscope.analysis.consistency import relabel_threshold, relabelling_epochs
from relabscope.errors import DataError
from relabscope.integrations.capture import RunCapture

GIVEN, TEST = torch.tensor([0, 1, 2, 0, 1, 2]), torch.tensor([0, 1])
VIEW = {"relabel_threshold": 0.3, "relabel_from_epoch": 4, "image_size": 32, "normalize": ((0.5, 0.5, 0.5), (0.25,) * 3)}


def _one_epoch(cap: RunCapture) -> None:
    ids = torch.arange(6)
    cap.log(ids, torch.randn(6, 3), torch.randn(6, 2))
    cap.log(torch.arange(2), torch.randn(2, 3), torch.randn(2, 2), phase="test")
    cap.end_epoch()


def test_the_arguments_reach_the_log_in_the_names_the_views_read(tmp_path) -> None:
    with RunCapture(tmp_path / "run", GIVEN, TEST, **VIEW) as cap:
        _one_epoch(cap)
    with rs.open_run(tmp_path / "run") as run:
        config = run.config
        assert config["delta"] == 0.3 and config["image_size"] == 32
        assert config["relabel_epoch"] == 5  # relabscope train's 1-based setting: epoch 4 counted from 0
        assert config["normalize"] == {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
        no_events = np.zeros(0, dtype=[("epoch", "i4"), ("p_new", "f4"), ("p_old", "f4")])
        assert relabel_threshold(config, no_events) == 0.3
        assert relabelling_epochs(config, no_events, 8) == range(4, 8)


@pytest.mark.parametrize("options, message", [
    ({"relabel_threshold": 1.5}, "relabel_threshold must be a probability margin"),
    ({"relabel_from_epoch": -1}, "relabel_from_epoch counts from 0"),
    ({"image_size": 0}, "image_size must be a positive number"),
    ({"normalize": ((0.5,), (0.0,))}, "std > 0"),
    ({"relabel_threshold": 0.3, "config": {"delta": 0.2}}, r"config\['delta'\] = 0.2 but the argument gives 0.3"),
])
def test_bad_view_settings_are_one_line(tmp_path, options, message) -> None:
    with pytest.raises(DataError, match=message):
        RunCapture(tmp_path / "run", GIVEN, TEST, **options)


def test_both_callbacks_take_them_as_runcapture_does(tmp_path) -> None:
    pytest.importorskip("lightning.pytorch")
    pytest.importorskip("transformers")
    from relabscope.integrations.hf import RelabscopeTrainerCallback
    from relabscope.integrations.lightning import RelabscopeCallback

    for callback in (RelabscopeCallback(tmp_path / "a", GIVEN, TEST, class_names=["x", "y", "z"], **VIEW),
                     RelabscopeTrainerCallback(tmp_path / "b", GIVEN, TEST, class_names=["x", "y", "z"], **VIEW)):
        assert callback.capture.config["relabel_epoch"] == 5 and callback.capture.config["image_size"] == 32
        assert callback.capture.class_names == ["x", "y", "z"]
        assert callback.capture.metadata["framework"] in ("lightning", "transformers")
