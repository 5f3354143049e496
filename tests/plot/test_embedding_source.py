"""Which pass a log's embeddings come from (training or eval-mode probe) is recorded per
epoch, read by ``Run.embedding_sources`` and said by every geometry figure."""

from __future__ import annotations

import numpy as np
import pytest

import relabscope as rs


@pytest.fixture(scope="module")
def probed(tmp_path_factory):
    """A 3-epoch log whose epoch 1 also had a probe pass (its embeddings replace the training pass's)."""
    samples = rs.SampleTable(key=[f"img{i}.png" for i in range(10)], split=[0] * 8 + [1] * 2,
                             given_label=[0, 1, 2, 0, 1, 2, 0, 1, 0, 1])
    rng = np.random.default_rng(0)
    labels = samples.given_label.astype(np.int64)
    path = tmp_path_factory.mktemp("probed")
    with rs.RunLogWriter.create(path, samples, ["a", "b", "c"], embed_dim=4) as log:
        for epoch in range(3):
            train, test = np.arange(8), np.arange(8, 10)
            emb = rng.normal(size=(8, 4)) + np.eye(3, 4)[labels[train]] * 3
            new = labels[train].copy()
            if epoch == 1:
                new[0] = 1
            log.log_batch(train, labels[train], rng.normal(size=(8, 3)), emb, new_labels=new)
            labels[train] = new
            if epoch == 1:
                log.log_batch(train, labels[train], rng.normal(size=(8, 3)), emb * 0.5, phase="probe")
            log.log_batch(test, labels[test], rng.normal(size=(2, 3)), rng.normal(size=(2, 4)), phase="test")
            log.end_epoch()
    with rs.open_run(path) as run:
        yield run


def test_the_source_of_each_epoch_is_recorded(probed) -> None:
    assert probed.embedding_sources() == ["train", "probe", "train"]


def test_geometry_figures_say_which_pass(probed) -> None:
    def subtitle(fig):
        return str(fig.layout.title.subtitle.text).replace("<br>", " ")

    assert "embeddings: the eval-mode probe pass" in subtitle(rs.plot.compactness(probed, epoch=1))
    assert "embeddings: the training pass" in subtitle(rs.plot.compactness(probed, epoch=-1))
    both = subtitle(rs.plot.distance_bars(probed, 0, [1, 2]))
    assert "probe pass in epoch 1" in both and "training pass (augmented, train mode) in epoch 2" in both
    assert "probe pass in epoch 1" in subtitle(rs.plot.consistency_summary(probed))
    assert "embeddings: the eval-mode probe pass" in subtitle(rs.plot.projection(probed, method="tsne", epoch=1))
