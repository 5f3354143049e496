"""RunRegistry: which runs it finds, how they are named, what it refuses, how it reports
unreadable logs, and that it notices new runs and new epochs."""

from __future__ import annotations

import os
import shutil

import h5py
import numpy as np
import pytest
import torch

from relabscope.dashboard.registry import RunRegistry, RunUnavailable
from relabscope.errors import RunDirError
from relabscope.runlog import RunLogWriter, SampleTable


def test_discovers_runs_by_root_relative_id(served) -> None:
    reg = RunRegistry([served])
    assert set(reg.ids()) == {"scn", "scn-c", "baseline", "group/nested", "broken"}
    run = reg.get("group/nested")
    assert run.method == "scn" and run.num_epochs == 4
    assert reg.get("scn") is reg.get("scn")  # opened once
    # the newest run that reads: the truncated "broken" log is the newest file here
    readable = [i for i in reg.ids() if reg.error(i) is None]
    assert "broken" not in readable and reg.newest() == readable[0]
    assert reg.error("broken").startswith("broken/run.h5: not a readable HDF5 run log")  # its id, not the server's path
    assert str(served) not in reg.error("broken")


def test_corrupt_run_is_an_error_and_others_still_work(served) -> None:
    reg = RunRegistry([served])
    with pytest.raises(RunUnavailable, match="not a readable HDF5 run log"):
        reg.get("broken")
    assert "broken" in reg.error("broken")
    assert reg.error("scn") is None
    infos = {i.id: i for i in reg.infos()}
    assert infos["broken"].error and infos["scn"].error is None and infos["scn"].epochs == 4


@pytest.mark.parametrize("bad", ["../scn", "/etc/passwd", str("scn/../scn"), "scn/", "", None, 3, "SCN",
                                 "group", "scn/checkpoints"])
def test_unknown_or_pathlike_ids_are_refused(served, bad) -> None:
    reg = RunRegistry([served])
    assert bad not in reg
    with pytest.raises(RunUnavailable):
        reg.get(bad)


def test_symlinks_out_of_the_root_are_not_listed(served, tiny_runs, tmp_path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    outside = tmp_path / "outside"
    shutil.copytree(tiny_runs["scn"], outside)
    os.symlink(outside, root / "linked-dir")                      # a folder link out of the root
    (root / "linked-log").mkdir()
    os.symlink(outside / "run.h5", root / "linked-log" / "run.h5")  # a run.h5 link out of the root
    shutil.copytree(tiny_runs["scn-c"], root / "real")
    os.symlink(root / "real", root / "alias")                     # a link inside the root is fine
    os.symlink(root, root / "real-loop")                          # a cycle does not hang discovery
    reg = RunRegistry([root])
    assert reg.ids() == ["real"]  # the link inside the root is the same run: listed once


def test_several_roots_and_a_root_that_is_a_run(served, tiny_runs) -> None:
    reg = RunRegistry([served / "scn", served / "group"])
    assert set(reg.ids()) == {"scn", "group/nested"}
    assert reg.get("scn").method == "scn"
    with pytest.raises(RunDirError, match="not found"):
        RunRegistry([served / "nope"])


def test_newer_schema_and_partial_runs_are_errors(tiny_runs, tmp_path) -> None:
    shutil.copytree(tiny_runs["baseline"], tmp_path / "future")
    with h5py.File(tmp_path / "future" / "run.h5", "r+") as f:
        f.attrs["schema_version"] = 99
    (tmp_path / "partial").mkdir()
    (tmp_path / "partial" / "run.h5.partial").write_bytes(b"")
    reg = RunRegistry([tmp_path])
    assert set(reg.ids()) == {"future", "partial"}
    assert "schema 99" in reg.error("future") and "upgrade" in reg.error("future")
    assert "stopped before its log was created" in reg.error("partial")


def test_new_runs_and_new_epochs_show_without_restart(tmp_path, tiny_runs) -> None:
    reg = RunRegistry([tmp_path], rescan_seconds=0)
    assert reg.ids() == []
    n_train, k, dim = 6, 3, 4
    samples = SampleTable(key=[f"s{i}" for i in range(n_train)], split=[0] * n_train,
                          given_label=np.arange(n_train) % k)
    log = RunLogWriter.create(tmp_path / "live", samples, ["a", "b", "c"], embed_dim=dim)
    try:
        assert reg.ids() == ["live"]
        assert reg.version("live") == {"run": "live", "epochs": 0, "status": "running"}
        labels = torch.as_tensor(samples.given_label, dtype=torch.long)
        for e in range(2):
            ids = torch.arange(n_train)
            log.log_batch(ids, labels, torch.randn(n_train, k), torch.randn(n_train, dim))
            log.end_epoch()
            assert reg.version("live")["epochs"] == e + 1
            assert reg.get("live").metrics()["epoch"].tolist() == list(range(e + 1))
    finally:
        log.close()
    assert reg.version("live")["status"] == "finished"


def test_a_broken_log_is_retried_once_it_changed(tmp_path, tiny_runs) -> None:
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "run.h5").write_bytes(b"not hdf5")
    reg = RunRegistry([tmp_path])
    assert reg.error("r")
    os.remove(tmp_path / "r" / "run.h5")
    shutil.copy(tiny_runs["scn"] / "run.h5", tmp_path / "r" / "run.h5")
    assert reg.error("r") is None and reg.get("r").num_epochs == 4


def _foreign_log(path, keys) -> None:
    """A log a hand-written loop wrote: no image source recorded, no relabscope config."""
    samples = SampleTable(key=keys, split=[0] * (len(keys) - 1) + [1], given_label=[0, 1] * (len(keys) // 2))
    with RunLogWriter.create(path, samples, ["a", "b"], embed_dim=2) as log:
        log.log_batch(np.arange(len(keys)), samples.given_label, np.zeros((len(keys), 2)), np.ones((len(keys), 2)))
        log.end_epoch()


def test_images_for_runs_that_record_none(tmp_path, tiny_runs) -> None:
    from PIL import Image

    pixels = np.arange(4 * 4 * 4 * 3, dtype=np.uint8).reshape(4, 4, 4, 3)
    (tmp_path / "imgs").mkdir()
    for i in range(4):
        Image.fromarray(pixels[i]).save(tmp_path / "imgs" / f"{i}.png")
    np.save(tmp_path / "other.npy", pixels[::-1].copy())
    root = tmp_path / "runs"
    _foreign_log(root / "mine", [f"{i}.png" for i in range(4)])
    _foreign_log(root / "theirs", [f"k{i}" for i in range(4)])
    shutil.copytree(tiny_runs["scn"], root / "scn", ignore=shutil.ignore_patterns("checkpoints"))
    with pytest.raises(RunDirError, match="images for run 'nope': no such run"):
        RunRegistry([root], images={"nope": tmp_path / "imgs"})
    assert not RunRegistry([root]).get("mine").has_images
    reg = RunRegistry([root], images={"": tmp_path / "imgs", "theirs": tmp_path / "other.npy"})
    np.testing.assert_array_equal(reg.get("mine").images([2]), pixels[[2]])         # the default folder
    np.testing.assert_array_equal(reg.get("theirs").images([0, 3]), pixels[[3, 0]])  # its own array
    assert reg.get("scn").image_source.startswith("data set")  # a relabscope run keeps its data set
