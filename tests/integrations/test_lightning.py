"""RelabscopeCallback in one process: the log holds what the module trained on, relabelled
and embedded, and every analysis reads it; a checkpoint resumes the log."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

pl = pytest.importorskip("lightning.pytorch")

import relabscope as rs  # noqa: E402
from relabscope.errors import RelabscopeError, RunDirError  # noqa: E402
from relabscope.integrations.lightning import RelabscopeCallback  # noqa: E402
from tests.integrations.lightning_run import fit  # noqa: E402
from tests.integrations.tiny import K, make_data  # noqa: E402

EPOCHS = 4


def _events(made):
    return sorted((epoch, i, new) for epoch, ids, labels in made for i, new in zip(ids, labels))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    path = tmp_path_factory.mktemp("lightning") / "run.h5"
    model, callback, _ = fit(path, EPOCHS)
    run = rs.open_run(path)
    yield run, model, callback
    run.close()


def test_log_holds_the_epochs_and_exactly_the_relabels_made(trained) -> None:
    run, model, callback = trained
    data = make_data()
    assert run.num_epochs == EPOCHS and run.status == "finished" and run.method == "tiny"
    assert run.class_names == ["a", "b", "c"]
    np.testing.assert_array_equal(run.given_labels, np.r_[data.y_train, data.y_test])
    np.testing.assert_array_equal(run.clean_labels[:96], data.clean)
    events = run.relabel_events()
    got = sorted(zip(events["epoch"], events["sample_id"], events["new"]))
    assert got == _events(model.made) and len(got) > 20
    labels = run.labels()  # (epochs, samples): the labels in effect each epoch trained on
    for epoch, sample, old, new in events[["epoch", "sample_id", "old", "new"]].itertuples(index=False):
        assert labels[epoch, sample] == old
        if epoch + 1 < EPOCHS:
            assert labels[epoch + 1, sample] == new
    np.testing.assert_array_equal(labels[0, :96], data.y_train)
    np.testing.assert_array_equal(callback.labels().numpy(), run.final_labels()[:96])


def test_embeddings_are_the_named_layers_output(trained) -> None:
    run, model, _ = trained
    data = make_data()
    emb = run.embeddings(EPOCHS - 1)
    model.eval()
    with torch.no_grad():  # the last validation pass ran with the final weights
        test_emb = model.backbone(data.x_test).numpy()
        test_pred = model.head(model.backbone(data.x_test)).argmax(1).numpy()
    np.testing.assert_allclose(emb[96:], test_emb, rtol=2e-3, atol=2e-3)
    train_emb = torch.stack([model.train_embeddings[i] for i in range(96)]).numpy()
    np.testing.assert_allclose(emb[:96], train_emb, rtol=2e-3, atol=2e-3)
    assert run.metrics()["test_acc"].iloc[-1] == pytest.approx(np.mean(test_pred == data.y_test.numpy()))
    assert run.embedding_epochs() == list(range(EPOCHS))


def test_class_means_and_distances_follow_from_the_embeddings(trained) -> None:
    run, _, _ = trained
    for epoch in range(EPOCHS):
        emb = run.embeddings(epoch).astype(np.float64)
        labels = run.labels()[epoch, :96]
        means = np.stack([emb[:96][labels == c].mean(axis=0) for c in range(K)])
        np.testing.assert_allclose(run.class_means(epoch), means, rtol=1e-5, atol=1e-6)
        dist = np.linalg.norm(emb[:, None, :] - means[None], axis=2)
        np.testing.assert_allclose(run.distances(epoch), dist, rtol=1e-4, atol=1e-5)


def test_analyses_run_on_the_log(trained) -> None:
    run, _, _ = trained
    flips = run.flipflops()
    per_sample = run.relabel_events()["sample_id"].value_counts()
    assert len(flips) == 96
    np.testing.assert_array_equal(flips["changes"], per_sample.reindex(range(96), fill_value=0))
    dynamics = run.dynamics()
    assert len(dynamics) == 96 and dynamics["aum_given"].notna().all()
    consistency = run.consistency()
    assert consistency["events"] == len(run.relabel_events()) and consistency["evaluated"] > 0


def test_checkpoint_resume_cuts_the_log_back_and_keeps_the_labels(tmp_path) -> None:
    log, ckpts = tmp_path / "run.h5", tmp_path / "ckpt"
    first, _, _ = fit(log, 3, checkpoints=ckpts)
    with rs.open_run(log) as run:
        before = run.relabel_events()
        labels_after_two = run.labels()[2, :96].copy()
    state = torch.load(ckpts / "epoch=1.ckpt", weights_only=False)["callbacks"]["RelabscopeCallback"]
    assert state["epochs"] == 2
    np.testing.assert_array_equal(state["labels"].numpy(), labels_after_two)

    second, callback, trainer = fit(log, 4, ckpt_path=str(ckpts / "epoch=1.ckpt"))
    assert [m[0] for m in second.made] and min(m[0] for m in second.made) == 2  # it trained epochs 2 and 3
    with rs.open_run(log) as run:
        assert run.num_epochs == 4 and run.status == "finished"
        np.testing.assert_array_equal(run.labels()[2, :96], labels_after_two)
        events = run.relabel_events()
        kept = before[before["epoch"] < 2].reset_index(drop=True)
        assert events[events["epoch"] < 2].reset_index(drop=True).equals(kept)
        later = events[events["epoch"] >= 2]
        assert sorted(zip(later["epoch"], later["sample_id"], later["new"])) == _events(second.made)
        np.testing.assert_array_equal(callback.labels().numpy(), run.final_labels()[:96])


def test_resume_from_a_checkpoint_saved_after_validation(tmp_path) -> None:
    """Validated every second epoch, checkpoints are saved in on_validation_end, and a
    fit resumed from one runs that epoch's on_train_epoch_end again: the epoch is in the
    log once, with its batches, and the epochs after it follow."""
    log, ckpts = tmp_path / "run.h5", tmp_path / "ckpt"
    fit(log, 4, checkpoints=ckpts, check_val_every_n_epoch=2)
    state = torch.load(ckpts / "epoch=1.ckpt", weights_only=False)["callbacks"]["RelabscopeCallback"]
    assert state["epochs"] == 2  # committed before the checkpoint was saved
    second, _, _ = fit(log, 4, ckpt_path=str(ckpts / "epoch=1.ckpt"), check_val_every_n_epoch=2)
    assert sorted({m[0] for m in second.made}) == [2, 3]
    with rs.open_run(log) as run:
        assert run.num_epochs == 4
        assert (run.labels()[:, :96] >= 0).all()  # every epoch holds every training sample
        assert (run.predictions()[[1, 3], 96:] >= 0).all() and (run.predictions()[[0, 2], 96:] < 0).all()


def test_an_exception_closes_the_log_as_interrupted(tmp_path) -> None:
    class Boom(pl.Callback):
        def on_train_epoch_start(self, trainer, pl_module) -> None:
            if trainer.current_epoch == 2:
                raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        fit(tmp_path / "run.h5", 4, extra_callbacks=[Boom()])
    with rs.open_run(tmp_path / "run.h5") as run:
        assert run.num_epochs == 2 and run.status == "interrupted"


def test_a_fresh_fit_refuses_an_existing_log(tmp_path) -> None:
    log = tmp_path / "run.h5"
    fit(log, 1)
    with pytest.raises(RunDirError, match="run.h5: a run log is already there"):
        fit(log, 1)
    with rs.open_run(log) as run:  # untouched, closed as finished
        assert run.num_epochs == 1 and run.status == "finished"


def test_the_module_reaches_its_callback_through_the_trainer(trained, tmp_path) -> None:
    """``RelabscopeCallback.of(self.trainer)`` is how TinyNet (tests/integrations/lightning_run.py,
    a module that never receives the callback) read labels and relabelled in every test
    above; a trainer without the callback, or with two, is one line."""
    _, model, callback = trained
    assert RelabscopeCallback.of(model.trainer) is callback
    with pytest.raises(RelabscopeError, match="the trainer has no RelabscopeCallback"):
        RelabscopeCallback.of(pl.Trainer(callbacks=[], logger=False, enable_checkpointing=False))
    with pytest.raises(RelabscopeError, match="has 2 RelabscopeCallbacks"):  # Lightning itself refuses two
        RelabscopeCallback.of(SimpleNamespace(callbacks=[callback, callback]))


def test_relabscopes_numbers_reach_the_trainers_own_logger(tmp_path) -> None:
    """Each epoch's relabels, flip-flops so far, guard vetoes and classes below half their
    given size arrive in Lightning's CSVLogger under relabscope/, equal to the log's."""
    import csv

    epochs = 7  # long enough for samples to return to a label (relabel_rule picks each every 5 epochs)
    logger = pl.loggers.CSVLogger(tmp_path / "logs", name="tiny")
    fit(tmp_path / "run.h5", epochs, logger=logger, callback_options={"guards": "floor=0.9"})
    with open(Path(logger.log_dir) / "metrics.csv") as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("relabscope/relabels")]
    assert [int(float(r["epoch"])) for r in rows] == list(range(epochs))
    with rs.open_run(tmp_path / "run.h5") as run:
        events = run.relabel_events()
        per_epoch = events.groupby("epoch")["sample_id"].nunique().reindex(range(epochs), fill_value=0)
        assert [float(r["relabscope/relabels"]) for r in rows] == per_epoch.astype(float).tolist()
        assert float(rows[-1]["relabscope/flipflops"]) == run.flipflops()["flipflops"].sum()
        vetoes = run.vetoes()
        by_epoch = vetoes.groupby("epoch")["vetoed"].sum().reindex(range(epochs), fill_value=0)
        assert [float(r["relabscope/vetoed"]) for r in rows] == by_epoch.astype(float).tolist()
        counts = run.class_counts()
        last = counts[counts["epoch"] == run.num_epochs]
        assert float(rows[-1]["relabscope/classes_below_half"]) == float((2 * last["count"] < last["given"]).sum())
    assert all(sum(float(r[f"relabscope/{k}"]) for r in rows) > 0 for k in ("relabels", "vetoed", "flipflops"))


def test_relabscopes_numbers_reach_a_tensorboard_event_file(tmp_path) -> None:
    """The same numbers through Lightning's TensorBoardLogger, read back with tensorboard's
    own event reader: one value per epoch under relabscope/, equal to the CSV logger's."""
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    import csv

    epochs = 3
    loggers = [pl.loggers.TensorBoardLogger(tmp_path / "tb", name="tiny"),
               pl.loggers.CSVLogger(tmp_path / "csv", name="tiny")]
    fit(tmp_path / "run.h5", epochs, logger=loggers)
    with open(Path(loggers[1].log_dir) / "metrics.csv") as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("relabscope/relabels")]
    board = event_accumulator.EventAccumulator(loggers[0].log_dir)
    board.Reload()
    for name in ("relabels", "flipflops", "vetoed", "classes_below_half"):
        scalars = board.Scalars(f"relabscope/{name}")
        assert [s.value for s in scalars] == [float(r[f"relabscope/{name}"]) for r in rows]
    assert sum(s.value for s in board.Scalars("relabscope/relabels")) > 0
