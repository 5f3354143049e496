"""Suspects out to Label Studio: the tasks file and the labeling interface beside it, every
task with its sample's image."""

from __future__ import annotations

import json

import numpy as np
import pytest


def test_a_label_studio_export_needs_images_and_a_tasks_file(tmp_path) -> None:
    """On main a run without images exported tasks without ``image`` while the interface asks
    for ``$image`` (Label Studio refused the whole import); ``--out x.xml`` wrote the tasks and
    then overwrote them with the interface; without ``--out`` the plain table was printed."""
    from click.testing import CliRunner

    import relabscope as rs
    from relabscope.cli import main
    from relabscope.errors import RelabscopeError

    samples = rs.SampleTable(key=[f"img/{i:04d}.png" for i in range(80)], split=[0] * 64 + [1] * 16,
                             given_label=np.arange(80) % 4)
    rng = np.random.default_rng(0)
    run_dir = tmp_path / "ex"
    with rs.RunLogWriter.create(run_dir, samples, ["a", "b", "c", "d"], embed_dim=4) as log:  # no images anywhere
        for _ in range(2):
            log.log_batch(np.arange(64), samples.given_label[:64], rng.normal(size=(64, 4)), rng.normal(size=(64, 4)))
            log.log_batch(np.arange(64, 80), samples.given_label[64:], rng.normal(size=(16, 4)),
                          rng.normal(size=(16, 4)), phase="test")
            log.end_epoch()
    with rs.open_run(run_dir) as run:
        with pytest.raises(RelabscopeError, match="the run has no images, and a Label Studio task shows its sample's"):
            rs.export_suspects(run, tmp_path / "tasks.json", format="labelstudio")
    faces = tmp_path / "faces.npy"
    np.save(faces, np.zeros((80, 8, 8, 3), np.uint8))
    with rs.open_run(run_dir, images=faces) as run:
        with pytest.raises(RelabscopeError, match=r"tasks\.xml: the tasks are JSON .* e\.g\. .*tasks\.json"):
            rs.export_suspects(run, tmp_path / "tasks.xml", format="labelstudio")
        written = rs.export_suspects(run, tmp_path / "tasks.json", top=5, format="labelstudio")
    assert [p.name for p in written] == ["tasks.json", "tasks.xml"]
    assert all(t["data"]["image"].startswith("data:image/png") for t in json.loads(written[0].read_text()))
    result = CliRunner().invoke(main, ["suspects", str(run_dir), "--format", "labelstudio"])
    assert result.exit_code == 1 and "give --out tasks.json" in result.stderr and result.stdout == ""
