"""``Run``: every view returns what the analysis functions compute from the raw arrays (read
here with plain h5py), with the documented columns; runs without clean labels refuse the
clean-label views; a Run over a log that is still being written shows new epochs."""

from __future__ import annotations

import math

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from relabscope.analysis import compactness as C
from relabscope.analysis import consistency as S
from relabscope.analysis import distances as D
from relabscope.analysis import dynamics as Y
from relabscope.analysis import flipflops as F
from relabscope.analysis.run import Run, open_run
from relabscope.runlog import RunLogWriter, SampleTable
from relabscope.runlog.schema import RELABEL_DTYPE
from tests.conftest import TINY


def raw(path) -> dict:
    with h5py.File(path / "run.h5", "r") as f:
        n = f["epochs/done"].shape[0]
        out = {name: f["epochs/" + name][:n] for name in (
            "label", "pred", "prob", "distance", "class_mean", "test_acc", "train_acc", "train_loss", "lr",
            "seconds", "class_acc", "confusion")}
        out.update(
            n=n, events=f["relabels"][:], split=f["samples/split"][:], given=f["samples/given_label"][:].astype(np.int64),
            clean=f["samples/clean_label"][:].astype(np.int64),
            names=[s.decode() if isinstance(s, bytes) else s for s in f["meta/class_names"][:]],
            keys=[s.decode() if isinstance(s, bytes) else s for s in f["samples/key"][:]],
            emb_epochs=f["embeddings/epoch"][:], emb=f["embeddings/data"][:],
            fields=list(f["epochs/field"].keys()) if "field" in f["epochs"] else [],
            weight=f["epochs/field/weight"][:n] if "field" in f["epochs"] and "weight" in f["epochs/field"] else None,
            method=f["meta"].attrs["method"].decode(),  # schema 2: fixed-length strings read as bytes
        )
    return out


@pytest.fixture(scope="module", params=["scn", "scn-c", "baseline"])
def opened(request, tiny_runs):
    path = tiny_runs[request.param]
    run = open_run(path)
    yield run, raw(path)
    run.close()


def test_facts_and_raw_arrays(opened) -> None:
    run, r = opened
    n = r["n"]
    assert run.num_epochs == n == 4 and run.status == "finished"
    assert run.class_names == r["names"] and run.num_classes == len(r["names"])
    assert run.method == r["method"] and run.name == run.run_dir.name
    assert run.relabels_at_all == (r["method"] != "baseline")
    assert run.method in repr(run)
    train = r["split"] == 0
    np.testing.assert_array_equal(run.train_mask, train)
    np.testing.assert_array_equal(run.given_labels, r["given"])
    np.testing.assert_array_equal(run.clean_labels, r["clean"])
    np.testing.assert_array_equal(run.labels(), r["label"])
    assert run.labels().dtype == np.int64
    np.testing.assert_array_equal(run.predictions(), r["pred"])
    np.testing.assert_array_equal(run.probabilities(), r["prob"])
    np.testing.assert_array_equal(run.probabilities(1), r["prob"][1])
    np.testing.assert_array_equal(run.distances(None), r["distance"])
    np.testing.assert_array_equal(run.distances(), r["distance"][-1])
    np.testing.assert_array_equal(run.distances(0), r["distance"][0])
    np.testing.assert_array_equal(run.class_means(), r["class_mean"][-1])
    assert run.embedding_epochs() == [int(e) for e in r["emb_epochs"]]
    np.testing.assert_array_equal(run.embeddings(-1), r["emb"][-1])
    if r["weight"] is not None:
        np.testing.assert_array_equal(run.field("weight"), r["weight"])

    ev = run.relabel_events()
    assert list(ev.columns) == ["epoch", "step", "sample_id", "old", "new", "p_old", "p_new"]
    assert len(ev) == len(r["events"])
    for name, field in [("epoch", "epoch"), ("step", "step"), ("sample_id", "sample"), ("old", "old"), ("new", "new")]:
        np.testing.assert_array_equal(ev[name].to_numpy(), r["events"][field])

    want_final = r["label"][-1].astype(np.int64)
    for e in r["events"].tolist():
        if e[0] == n - 1:
            want_final[e[2]] = e[4]
    np.testing.assert_array_equal(run.final_labels(), want_final)


def test_samples(opened) -> None:
    run, r = opened
    df = run.samples
    assert list(df.columns[:6]) == ["sample_id", "key", "split", "given_label", "clean_label", "noisy"]
    assert df["sample_id"].tolist() == list(range(len(r["keys"])))
    assert df["key"].tolist() == r["keys"]
    assert df["split"].tolist() == ["train" if s == 0 else "test" for s in r["split"]]
    assert df["given_label"].tolist() == r["given"].tolist()
    assert df["noisy"].tolist() == [bool(g != c) for g, c in zip(r["given"], r["clean"])]
    assert str(df["noisy"].dtype) == "boolean"
    assert "ambiguity" in df.columns  # synthetic data's extra column


def test_metrics_and_confusion(opened) -> None:
    run, r = opened
    m = run.metrics()
    assert list(m.columns) == ["epoch", "test_acc", "train_acc", "train_loss", "lr", "seconds", "relabels"] + [
        f"acc_{c}" for c in r["names"]]
    assert m["epoch"].tolist() == list(range(r["n"]))
    for name in ("test_acc", "train_acc", "train_loss", "lr", "seconds"):
        np.testing.assert_array_equal(m[name].to_numpy(), r[name])
    for j, c in enumerate(r["names"]):
        np.testing.assert_array_equal(m[f"acc_{c}"].to_numpy(), r["class_acc"][:, j])
    assert m["relabels"].tolist() == [sum(1 for e in r["events"].tolist() if e[0] == k) for k in range(r["n"])]
    conf = run.confusion()
    np.testing.assert_array_equal(conf.to_numpy(), r["confusion"][-1])
    assert list(conf.index) == r["names"] and list(conf.columns) == r["names"]
    np.testing.assert_array_equal(run.confusion(0).to_numpy(), r["confusion"][0])


def test_flipflops_and_oscillation(opened) -> None:
    run, r = opened
    train = r["split"] == 0
    got = run.flipflops()
    want = F.flipflop_table(labels=r["label"][:, train].astype(np.int64), events=r["events"], given=r["given"][train],
                            clean=r["clean"][train], sample_ids=np.flatnonzero(train), class_names=r["names"])
    pd.testing.assert_frame_equal(got, want)
    assert list(got.columns) == ["sample_id", "given_label", "clean_label", "final_label", "changes", "flipflops",
                                 "labels_visited"] + [f"epochs_{c}" for c in r["names"]] + [
        "first_relabel_epoch", "last_relabel_epoch", "final_is_clean"]
    np.testing.assert_array_equal(got["final_label"].to_numpy(), run.final_labels()[train])
    osc = run.oscillation_matrix()
    np.testing.assert_array_equal(osc.to_numpy(), F.oscillation_matrix(r["events"], len(r["names"])))
    assert list(osc.index) == r["names"]


def test_consistency(opened) -> None:
    run, r = opened
    sources = ["train"] * r["n"]  # the tiny runs log training-pass embeddings
    distance_at = lambda e: r["distance"][e]  # noqa: E731
    ev = run.consistency_events()
    want = S.consistency_events(r["events"], distance_at, sources)
    pd.testing.assert_frame_equal(ev, want)
    relabels = r["method"] != "baseline"
    epochs = range(TINY["relabel_epoch"] - 1, r["n"]) if relabels else range(0)  # no control without a rule
    control = S.consistency_control(r["events"], lambda e: r["label"][e], lambda e: r["prob"][e],
                                    r["split"] == 0, epochs, distance_at, sources, TINY["delta"])
    pd.testing.assert_frame_equal(run.consistency_control(), control)
    assert relabels or run.consistency_control().empty
    s = run.consistency()
    pd.testing.assert_series_equal(s, S.consistency_summary(want, control, num_classes=len(r["names"])))
    assert s["events"] == len(r["events"])
    lag = S.consistency_by_lag(r["events"], control, distance_at, sources, num_classes=len(r["names"]))
    pd.testing.assert_frame_equal(run.consistency_by_lag(), lag)


def test_compactness(opened) -> None:
    run, r = opened
    train = r["split"] == 0
    for epoch in (-1, 0):
        for kind, lab in (("effect", r["label"][epoch]), ("given", r["given"]), ("clean", r["clean"])):
            for split, mask in (("train", train), ("test", ~train), ("all", np.ones_like(train))):
                got = run.compactness(epoch=epoch, labels=kind, split=split)
                want = C.compactness(r["distance"][epoch], lab, mask, r["names"])
                pd.testing.assert_frame_equal(got, want)
    assert list(run.compactness().columns) == ["n", "n_without_mean", "mean", "std", "ratio", "nearest_own",
                                               "silhouette"]
    with pytest.raises(ValueError, match="split"):
        run.compactness(split="valid")
    with pytest.raises(ValueError, match="labels"):
        run.compactness(labels="noisy")


def test_distance_profile(opened) -> None:
    run, r = opened
    sids = sorted({int(s) for s in r["events"]["sample"]})[:2] + [int(np.flatnonzero(r["split"] == 1)[0])]
    for sid in sids:
        epochs = D.key_epochs(r["events"], sid, r["n"])
        got = run.distance_profile(sid)
        want = D.distance_profile(sid, epochs, lambda e: r["distance"][e][sid], r["label"][:, sid],
                                  int(r["given"][sid]), int(r["clean"][sid]), r["names"],
                                  spread_at=lambda e: D.center_spread(r["class_mean"][e]))
        pd.testing.assert_frame_equal(got, want)
        assert sorted(set(got["epoch"])) == epochs
    got = run.distance_profile(sids[0], epochs=[0, -1])
    assert sorted(set(got["epoch"])) == [0, r["n"] - 1]
    assert list(got.columns) == ["epoch", "class_id", "class_name", "distance", "relative_distance", "is_given",
                                 "is_effect", "is_clean", "label_in_effect"]


def test_dynamics_and_noise(opened) -> None:
    run, r = opened
    train = r["split"] == 0
    dyn = run.dynamics()
    want = Y.dynamics_table(probs=r["prob"][:, train], preds=r["pred"][:, train].astype(np.int64),
                            effect=r["label"][:, train].astype(np.int64), given=r["given"][train],
                            sample_ids=np.flatnonzero(train))
    pd.testing.assert_frame_equal(dyn, want)
    det = run.noise_detection()
    pd.testing.assert_frame_equal(det, Y.noise_detection(want, run.flipflops(), r["given"][train] != r["clean"][train]))
    assert {"score", "auroc", "direction"} <= set(det.columns) and len(det) == 7
    assert det["auroc"].notna().all()
    rec = run.noise_recovery()
    final = run.final_labels()
    pd.testing.assert_frame_equal(rec, Y.noise_recovery(r["label"][:, train].astype(np.int64), final[train],
                                                        r["events"], r["given"], r["clean"], train))
    assert list(rec.columns) == ["epoch", "relabels", "relabel_precision", "relabel_recall", "noisy_corrected",
                                 "clean_corrupted"]
    assert rec["relabels"].sum() == len(r["events"])


# ---------------------------------------------------------------------- hand-written logs
N_TRAIN, N_TEST, K, DIM = 12, 4, 3, 4


def _samples(clean: bool) -> SampleTable:
    n = N_TRAIN + N_TEST
    return SampleTable(key=[f"s{i}" for i in range(n)], split=[0] * N_TRAIN + [1] * N_TEST,
                       given_label=np.arange(n) % K,
                       clean_label=((np.arange(n) + (np.arange(n) % 4 == 0)) % K) if clean else None)


def _epoch(log: RunLogWriter, epoch: int, labels: torch.Tensor) -> torch.Tensor:
    """One epoch: train batch relabelling sample `epoch` to the next class, then the test batch."""
    g = torch.Generator().manual_seed(epoch)
    ids = torch.arange(N_TRAIN)
    new = labels[ids].clone()
    new[epoch % N_TRAIN] = (new[epoch % N_TRAIN] + 1) % K
    log.log_batch(ids, labels[ids], torch.randn(N_TRAIN, K, generator=g), torch.randn(N_TRAIN, DIM, generator=g),
                  new_labels=new)
    labels[ids] = new
    test = torch.arange(N_TRAIN, N_TRAIN + N_TEST)
    log.log_batch(test, labels[test], torch.randn(N_TEST, K, generator=g), torch.randn(N_TEST, DIM, generator=g),
                  phase="test")
    log.end_epoch()
    return labels


def test_run_without_clean_labels(tmp_path) -> None:
    samples = _samples(clean=False)
    labels = torch.as_tensor(samples.given_label, dtype=torch.long)
    with RunLogWriter.create(tmp_path / "run", samples, ["a", "b", "c"], embed_dim=DIM) as log:
        for e in range(2):
            labels = _epoch(log, e, labels)
    with Run(tmp_path / "run") as run:
        assert run.clean_labels is None
        assert run.samples["noisy"].isna().all()
        with pytest.raises(ValueError, match="clean"):
            run.noise_detection()
        with pytest.raises(ValueError, match="clean"):
            run.noise_recovery()
        with pytest.raises(ValueError, match="clean"):
            run.compactness(labels="clean")
        ff = run.flipflops()
        assert (ff["clean_label"] == -1).all() and ff["final_is_clean"].isna().all()
        assert ff["changes"].sum() == 2 and len(ff) == N_TRAIN
        np.testing.assert_array_equal(run.final_labels()[:N_TRAIN], labels.numpy()[:N_TRAIN])
        assert len(run.dynamics()) == N_TRAIN
        # two training-pass epochs: epoch 0's relabel would be measured at epoch 2, which is not logged
        assert run.consistency()["events"] == 2 and run.consistency()["evaluated"] == 0
        assert run.consistency_events()["after_epoch"].isna().all()


def test_run_reads_a_log_being_written(tmp_path) -> None:
    samples = _samples(clean=True)
    labels = torch.as_tensor(samples.given_label, dtype=torch.long)
    log = RunLogWriter.create(tmp_path / "run", samples, ["a", "b", "c"], embed_dim=DIM)
    try:
        run = Run(tmp_path / "run")
        assert run.num_epochs == 0 and run.status == "running"
        assert run.labels().shape == (0, N_TRAIN + N_TEST)
        np.testing.assert_array_equal(run.final_labels(), samples.given_label)
        assert len(run.metrics()) == 0 and len(run.relabel_events()) == 0
        for e in range(3):
            labels = _epoch(log, e, labels)
            assert run.num_epochs == e + 1
            assert run.labels().shape == (e + 1, N_TRAIN + N_TEST)  # no reopening: the cache follows the log
            assert len(run.relabel_events()) == e + 1
            assert run.metrics()["relabels"].tolist() == [1] * (e + 1)
            np.testing.assert_array_equal(run.final_labels(), labels.numpy())
            assert len(run.noise_recovery()) == e + 1
            assert run.flipflops()["changes"].sum() == e + 1
            ce = run.consistency_events()
            assert len(ce) == e + 1 and ce["closer_to_new"].isna().tolist()[-1]
        assert run.status == "running"
    finally:
        log.close()
    assert run.status == "finished" and run.num_epochs == 3
    run.close()


def test_summary_is_nan_safe_on_empty_consistency() -> None:
    s = S.consistency_summary(S.consistency_events(np.zeros(0, RELABEL_DTYPE), lambda e: None, []))
    assert s["events"] == 0 and math.isnan(s["closer_to_new"])


def test_embedding_epoch_names_kept_epochs(tiny_runs) -> None:
    run = Run(tiny_runs["scn"])
    kept = run.embedding_epochs()
    assert kept and kept[-1] == run.num_epochs - 1  # the last epoch always keeps them
    assert run.embedding_epoch(-1) == kept[-1]
    for e in kept:
        assert run.embedding_epoch(e) == e and run.embedding_epoch(e - run.num_epochs) == e
    missing = sorted(set(range(run.num_epochs)) - set(kept))
    assert missing, "TINY keeps embeddings every 2nd epoch"
    with pytest.raises(ValueError, match="no embeddings kept for epoch"):
        run.embedding_epoch(missing[0])
    with pytest.raises(ValueError, match="no embeddings kept for epoch"):
        run.embeddings(missing[0])
    np.testing.assert_array_equal(run.embeddings(-1), run.embeddings(kept[-1]))


def test_oscillations_add_up_to_the_matrix(tiny_runs) -> None:
    for method in ("scn", "scn-c", "baseline"):
        with Run(tiny_runs[method]) as run:
            osc = run.oscillations()
            assert list(osc.columns) == ["sample_id", "a", "b", "epoch"]
            counts = np.zeros((run.num_classes, run.num_classes), np.int64)
            np.add.at(counts, (osc["a"].to_numpy(), osc["b"].to_numpy()), 1)
            np.testing.assert_array_equal(counts, run.oscillation_matrix().to_numpy())
            ev = run.relabel_events()
            for row in osc.itertuples():  # each cycle ends with a relabel back to a, in that epoch
                mine = ev[(ev["sample_id"] == row.sample_id) & (ev["epoch"] == row.epoch)]
                assert (mine["new"] == row.a).any() and (mine["old"] == row.b).any()


def test_images_are_the_training_pixels(tiny_runs) -> None:
    from relabscope.analysis.gradcam import load_images

    with Run(tiny_runs["scn"]) as run:
        ids = [0, 5, len(run.samples) - 1]  # a test sample too
        pixels = run.images(ids)
        assert pixels.dtype == np.uint8 and pixels.shape[0] == 3 and pixels.shape[-1] == 3
        raw = load_images(run, np.array(ids), image_size=run.config["image_size"])
        np.testing.assert_array_equal(pixels, raw.expand(-1, 3, -1, -1).permute(0, 2, 3, 1).numpy())
        for bad in ([-1], [len(run.samples)]):
            with pytest.raises(ValueError, match="out of range"):
                run.images(bad)


def test_the_data_set_is_opened_once_per_run(tiny_runs, monkeypatch) -> None:
    """Thumbnails and Grad-CAM ask for images again and again; re-parsing a data set's
    label files each time would make every request as slow as opening the data set."""
    from relabscope.analysis import gradcam  # where Run re-opens its data set

    calls = []
    real = gradcam.load_dataset
    monkeypatch.setattr(gradcam, "load_dataset", lambda *a, **k: calls.append(a) or real(*a, **k))
    with Run(tiny_runs["scn"]) as run:
        first = run.images([0, 1])
        np.testing.assert_array_equal(run.images([1]), first[1:])
        run.images([len(run.samples) - 1])
    assert len(calls) == 1


def test_one_samples_probabilities(tiny_runs) -> None:
    with Run(tiny_runs["scn"]) as run:
        every = run.probabilities()
        for sid in (0, 7, len(run.samples) - 1):
            np.testing.assert_array_equal(run.probabilities(sample_id=sid), every[:, sid, :])
        with pytest.raises(IndexError, match="out of range"):
            run.probabilities(sample_id=len(run.samples))
