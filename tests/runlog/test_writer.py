"""The run-log writer used from a hand-written training loop, read back with plain h5py
and with relabscope's reader; every logged quantity recomputed here from raw arrays."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from relabscope.runlog import RunLogReader, RunLogWriter, SampleTable
from relabscope.runlog.repair import clear_write_flags, lookup3, write_flags

N_TRAIN, N_TEST, K, D = 60, 15, 3, 4


def _samples() -> SampleTable:
    n = N_TRAIN + N_TEST
    return SampleTable(
        key=[f"img/{i:03d}.png" for i in range(n)],
        split=[0] * N_TRAIN + [1] * N_TEST,
        given_label=np.arange(n) % K,
        clean_label=(np.arange(n) + (np.arange(n) % 5 == 0)) % K,
        extras={"ambiguity": np.linspace(0, 1, n, dtype=np.float32)},
    )


class TinyModel(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = torch.nn.Linear(6, D)
        self.fc = torch.nn.Linear(D, K)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        e = self.emb(x)
        return self.fc(e), e


def _hand_written_loop(path, epochs: int = 3, embed_every: int = 2):
    """A user's own loop: relabel by argmax when confident; log everything."""
    torch.manual_seed(0)
    samples = _samples()
    x = torch.randn(N_TRAIN + N_TEST, 6)
    labels = torch.as_tensor(samples.given_label, dtype=torch.long)
    model = TinyModel()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    seen: dict[str, list] = {"label": [], "pred": [], "prob": [], "emb": [], "loss": [], "events": []}
    with RunLogWriter.create(path, samples, ["a", "b", "c"], embed_dim=D, fields={"weight": ()},
                             has_centers=True, config={"lr": 0.1}, metadata={"seed": 0},
                             embed_every=embed_every) as log:
        for epoch in range(epochs):
            ep = {k: np.full((N_TRAIN + N_TEST,) + s, np.nan) for k, s in
                  [("label", ()), ("pred", ()), ("prob", (K,)), ("emb", (D,)), ("loss", ())]}
            for step, ids in enumerate(torch.randperm(N_TRAIN).split(16)):
                logits, emb = model(x[ids])
                loss = torch.nn.functional.cross_entropy(logits, labels[ids], reduction="none")
                opt.zero_grad()
                loss.mean().backward()
                opt.step()
                probs = logits.detach().softmax(1)
                new = torch.where(probs.max(1).values > 0.4, probs.argmax(1), labels[ids])
                log.log_batch(ids, labels[ids], logits, emb, loss=loss, new_labels=new,
                              step=epoch * 10 + step, fields={"weight": probs.max(1).values})
                for j, i in enumerate(ids.tolist()):
                    ep["label"][i] = labels[i].item()
                    ep["pred"][i] = probs[j].argmax().item()
                    ep["prob"][i] = probs[j].numpy()
                    ep["emb"][i] = emb[j].detach().numpy()
                    ep["loss"][i] = loss[j].item()
                    if new[j] != labels[i]:
                        seen["events"].append((epoch, epoch * 10 + step, i, labels[i].item(), new[j].item(),
                                               probs[j, labels[i]].item(), probs[j, new[j]].item()))
                labels[ids] = new
            with torch.no_grad():
                ids = torch.arange(N_TRAIN, N_TRAIN + N_TEST)
                logits, emb = model(x[ids])
                log.log_batch(ids, labels[ids], logits, emb, phase="test")
                probs = logits.softmax(1)
                for j, i in enumerate(ids.tolist()):
                    ep["label"][i] = labels[i].item()
                    ep["pred"][i] = probs[j].argmax().item()
                    ep["prob"][i] = probs[j].numpy()
                    ep["emb"][i] = emb[j].numpy()
            log.end_epoch(centers=torch.full((K, D), float(epoch)), lr=0.1, seconds=1.5)
            for k in ep:
                seen[k].append(ep[k])
    return samples, seen


def test_hand_written_loop_round_trip(tmp_path) -> None:
    samples, seen = _hand_written_loop(tmp_path / "run")
    log = RunLogReader(tmp_path / "run")
    assert log.num_epochs == 3 and log.status == "finished"
    assert log.class_names == ["a", "b", "c"] and log.config == {"lr": 0.1}
    assert list(log.samples["key"]) == samples.key
    np.testing.assert_array_equal(log.samples["clean_label"], samples.clean_label)
    np.testing.assert_allclose(log.samples["ambiguity"], samples.extras["ambiguity"])

    train = np.arange(N_TRAIN + N_TEST) < N_TRAIN
    for e in range(3):
        np.testing.assert_array_equal(log.epoch_array("label", e), seen["label"][e].astype(np.int16))
        np.testing.assert_array_equal(log.epoch_array("pred", e), seen["pred"][e].astype(np.int16))
        np.testing.assert_allclose(log.epoch_array("prob", e), seen["prob"][e], atol=1e-3)
        np.testing.assert_allclose(log.epoch_array("loss", e)[train], seen["loss"][e][train], rtol=1e-6)
        assert np.isnan(log.epoch_array("loss", e)[~train]).all()

        emb = seen["emb"][e].astype(np.float16).astype(np.float64)
        lab = seen["label"][e].astype(int)
        means = np.stack([emb[train & (lab == c)].mean(axis=0) for c in range(K)])
        np.testing.assert_allclose(log.epoch_array("class_mean", e), means, rtol=1e-5, atol=1e-6)
        dist = np.sqrt(((emb[:, None, :] - means[None]) ** 2).sum(-1))
        np.testing.assert_allclose(log.epoch_array("distance", e), dist, rtol=1e-4, atol=1e-5)
        np.testing.assert_array_equal(log.epoch_array("class_count", e), [np.sum(train & (lab == c)) for c in range(K)])

        given = samples.given_label[~train]
        pred = seen["pred"][e][~train].astype(int)
        conf = np.zeros((K, K), int)
        for t, p in zip(given, pred):
            conf[t, p] += 1
        np.testing.assert_array_equal(log.epoch_array("confusion", e), conf)
        assert log.epoch_array("test_acc", e) == pytest.approx(np.mean(given == pred))
        np.testing.assert_allclose(log.epoch_array("center", e), np.full((K, D), e))
        assert log.epoch_array("lr", e) == pytest.approx(0.1)

    events = log.relabels()
    assert len(events) == len(seen["events"]) > 0
    for got, want in zip(events.tolist(), seen["events"]):
        assert got[:5] == want[:5]
        assert got[5:] == pytest.approx(want[5:], abs=1e-6)
    assert list(log.epoch_array("relabel_end")) == list(np.cumsum([sum(ev[0] == e for ev in seen["events"]) for e in range(3)]))
    # embeddings every 2nd epoch -> epoch index 1 only (the user's loop decides "last")
    assert list(log.embedding_epochs()) == [1]
    np.testing.assert_allclose(log.embeddings(1), seen["emb"][1], atol=2e-3, rtol=1e-3)
    log.close()

    with h5py.File(tmp_path / "run" / "run.h5", "r") as f:  # plain h5py after a clean close
        assert f.attrs["format"] == b"relabscope-runlog" and f.attrs["schema_version"] == 2  # fixed-length: bytes
        assert f["epochs/label"].shape == (3, N_TRAIN + N_TEST)


def test_probe_pass_replaces_training_embeddings(tmp_path) -> None:
    samples = _samples()
    n = len(samples)
    with RunLogWriter.create(tmp_path / "r.h5", samples, "abc", embed_dim=D) as log:
        ids = torch.arange(N_TRAIN)
        log.log_batch(ids, torch.zeros(N_TRAIN, dtype=torch.long), torch.zeros(N_TRAIN, K), torch.zeros(N_TRAIN, D))
        log.log_batch(ids, torch.zeros(N_TRAIN, dtype=torch.long), torch.zeros(N_TRAIN, K), torch.ones(N_TRAIN, D), phase="probe")
        log.end_epoch(save_embeddings=True)
    with RunLogReader(tmp_path / "r.h5") as r:
        assert r.epoch_array("embed_source", 0) == 1
        np.testing.assert_array_equal(r.embeddings(0)[:N_TRAIN], np.ones((N_TRAIN, D)))
        assert np.isnan(r.embeddings(0)[N_TRAIN:]).all()  # test samples never logged
        assert np.isnan(r.epoch_array("distance", 0)[N_TRAIN:]).all()
        assert r.epoch_array("test_acc", 0) != r.epoch_array("test_acc", 0)  # NaN: no test records
        assert n == N_TRAIN + N_TEST


def test_reader_sees_epochs_while_writer_is_open_and_discard(tmp_path) -> None:
    samples = _samples()
    log = RunLogWriter.create(tmp_path / "r.h5", samples, "abc", embed_dim=D)
    reader = RunLogReader(tmp_path / "r.h5")
    assert reader.num_epochs == 0 and reader.status == "running"
    ids = torch.arange(N_TRAIN)
    for e in range(2):
        log.log_batch(ids, torch.zeros(N_TRAIN, dtype=torch.long), torch.randn(N_TRAIN, K), torch.randn(N_TRAIN, D))
        log.end_epoch()
        assert reader.num_epochs == e + 1
    log.log_batch(ids, torch.zeros(N_TRAIN, dtype=torch.long), torch.randn(N_TRAIN, K), torch.randn(N_TRAIN, D))
    log.discard_epoch()
    log.close("diverged")
    assert reader.num_epochs == 2 and reader.status == "diverged"
    reader.close()


def test_resume_truncates_to_kept_epochs(tmp_path) -> None:
    _hand_written_loop(tmp_path / "run", epochs=3, embed_every=1)
    path = tmp_path / "run" / "run.h5"
    log = RunLogWriter.resume(path, keep_epochs=1)
    log.close("interrupted")
    with RunLogReader(path) as r:
        assert r.num_epochs == 1
        assert list(r.embedding_epochs()) == [0]
        assert len(r.relabels()) == int(r.epoch_array("relabel_end", 0))
        assert r.epoch_array("label").shape == (1, N_TRAIN + N_TEST)


def test_bad_calls_are_rejected(tmp_path) -> None:
    samples = _samples()
    with RunLogWriter.create(tmp_path / "r.h5", samples, "abc", embed_dim=D) as log:
        with pytest.raises(ValueError, match="phase"):
            log.log_batch([0], [0], torch.zeros(1, K), torch.zeros(1, D), phase="valid")
        with pytest.raises(KeyError, match="weight"):
            log.log_batch([0], [0], torch.zeros(1, K), torch.zeros(1, D), fields={"weight": [1.0]})
        with pytest.raises(ValueError, match="centers"):
            log.end_epoch(centers=np.zeros((K, D)))
    with pytest.raises(FileExistsError):
        RunLogWriter.create(tmp_path / "r.h5", samples, "abc", embed_dim=D)


def test_numpy_inputs_work(tmp_path) -> None:
    samples = _samples()
    with RunLogWriter.create(tmp_path / "r.h5", samples, "abc", embed_dim=D) as log:
        ids = np.arange(N_TRAIN)
        log.log_batch(ids, np.zeros(N_TRAIN, int), np.random.randn(N_TRAIN, K), np.random.randn(N_TRAIN, D))
        log.end_epoch()
    with RunLogReader(tmp_path / "r.h5") as r:
        assert (r.epoch_array("label", 0)[:N_TRAIN] == 0).all()


def test_lookup3_known_values_and_flag_clearing(tmp_path) -> None:
    # Published test vectors of Bob Jenkins' hashlittle (lookup3.c driver).
    assert lookup3(b"", 0) == 0xDEADBEEF
    assert lookup3(b"Four score and seven years ago", 0) == 0x17770551
    assert lookup3(b"Four score and seven years ago", 1) == 0xCD628161
    path = tmp_path / "f.h5"
    with h5py.File(path, "w", libver="latest") as f:
        f["x"] = np.arange(3)
    assert write_flags(path) == 0 and clear_write_flags(path) is False
    raw = bytearray(path.read_bytes())
    raw[11] = 5  # what a killed SWMR writer leaves; the checksum must be redone to match
    from struct import pack
    raw[44:48] = pack("<I", lookup3(bytes(raw[:44])))
    path.write_bytes(bytes(raw))
    with pytest.raises(OSError):
        h5py.File(path, "r")
    assert clear_write_flags(path) is True
    with h5py.File(path, "r") as f:
        assert list(f["x"][:]) == [0, 1, 2]


def test_reader_refuses_a_truncated_log_at_once(tmp_path) -> None:
    """HDF5 skips its end-of-file check in SWMR mode and then retries failing reads for
    minutes; the reader must say "truncated" when it opens the file instead."""
    import time

    from relabscope.errors import RunDirError

    log = tmp_path / "run.h5"
    _hand_written_loop(log, epochs=2)
    data = log.read_bytes()
    cut = tmp_path / "cut.h5"
    cut.write_bytes(data[: len(data) // 3])
    started = time.perf_counter()
    with pytest.raises(RunDirError, match=r"cut\.h5: not a readable HDF5 run log \(truncated: the file ends at byte"):
        RunLogReader(cut)
    assert time.perf_counter() - started < 10
    with RunLogReader(log) as whole:  # the check costs a finished log nothing
        assert whole.num_epochs == 2


def test_relabel_probs_set_the_events_probabilities(tmp_path) -> None:
    """A method that decides from other probabilities than the logits' softmax (scaled
    logits, an ensemble) reports them; without them the softmax is used, as before."""
    samples = _samples()
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 3.0]])
    decided = torch.tensor([[0.1, 0.7, 0.2], [0.6, 0.3, 0.1], [0.2, 0.2, 0.6]])
    ids, labels, new = torch.arange(3), torch.tensor([0, 1, 2]), torch.tensor([1, 0, 2])
    with RunLogWriter.create(tmp_path / "r.h5", samples, "abc", embed_dim=D) as log:
        log.log_batch(ids, labels, logits, torch.zeros(3, D), new_labels=new, relabel_probs=decided)
        log.log_batch(ids, new, logits, torch.zeros(3, D), new_labels=labels)
        log.end_epoch()
    with RunLogReader(tmp_path / "r.h5") as r:
        events = r.relabels()
        np.testing.assert_allclose(r.epoch_array("prob", 0)[:3], logits.softmax(1).numpy(), atol=1e-3)
    softmax = logits.softmax(1)
    assert events[["sample", "old", "new"]].tolist() == [(0, 0, 1), (1, 1, 0), (0, 1, 0), (1, 0, 1)]
    np.testing.assert_allclose(events["p_old"][:2], [0.1, 0.3], rtol=1e-6)  # from relabel_probs
    np.testing.assert_allclose(events["p_new"][:2], [0.7, 0.6], rtol=1e-6)
    np.testing.assert_allclose(events["p_old"][2:], [softmax[0, 1], softmax[1, 0]], rtol=1e-6)  # the softmax
    np.testing.assert_allclose(events["p_new"][2:], [softmax[0, 0], softmax[1, 1]], rtol=1e-6)


def _as_schema_1(path) -> None:
    """Rewrite a log's strings as schema 1 wrote them: variable-length, no digests."""
    text = h5py.string_dtype()
    with h5py.File(path, "r+") as f:
        for name in ("meta/config", "meta/class_names", "meta/skipped", "samples/key"):
            values = f[name][()]
            del f[name]
            data = values.decode() if isinstance(values, bytes) else np.array([v.decode() for v in values], dtype=object)
            f.create_dataset(name, data=data, dtype=text)
        for key, value in list(f["meta"].attrs.items()):
            if isinstance(value, bytes):
                f["meta"].attrs[key] = value.decode()
        del f["meta"].attrs["digests"]
        f.attrs["format"] = "relabscope-runlog"
        f.attrs["schema_version"] = 1


def test_a_schema_1_log_reads_and_resumes_into_schema_2(tmp_path) -> None:
    _hand_written_loop(tmp_path / "run", epochs=2)
    path = tmp_path / "run" / "run.h5"
    with RunLogReader(path) as log:
        expected = log.samples["key"].tolist(), log.config, log.meta["method"] if "method" in log.meta else None
        labels = log.epoch_array("label")
    _as_schema_1(path)
    with RunLogReader(path) as log:
        assert (log.samples["key"].tolist(), log.config, log.meta.get("method")) == expected
        np.testing.assert_array_equal(log.epoch_array("label"), labels)
    RunLogWriter.resume(path, keep_epochs=2).close()
    with h5py.File(path, "r") as f:
        assert f.attrs["schema_version"] == 2 and f["samples/key"].fletcher32 and "digests" in f["meta"].attrs
    with RunLogReader(path) as log:
        assert log.samples["key"].tolist() == expected[0]
        np.testing.assert_array_equal(log.epoch_array("label"), labels)


def test_class_means_and_distances_match_the_definitions() -> None:
    """The commit's fast forms (sorted sums; |x|^2 - 2x.m + |m|^2 in float64) equal the plain
    definitions, an empty class giving NaN means and NaN distances, across several chunks."""
    from relabscope.runlog.writer import class_distances, class_means

    rng = np.random.default_rng(0)
    emb = (rng.normal(size=(1000, 16)) * 3 + 50).astype(np.float16)  # far from 0: cancellation-prone
    labels = rng.integers(0, 4, 1000)
    labels[labels == 2] = 1  # class 2 empty
    mask = rng.random(1000) < 0.8
    means, counts = class_means(emb, labels, mask, 5, chunk=128)
    x = emb.astype(np.float64)
    for k in range(5):
        rows = mask & (labels == k)
        assert counts[k] == rows.sum()
        if rows.any():
            np.testing.assert_allclose(means[k], x[rows].mean(axis=0), rtol=1e-12)
        else:
            assert np.isnan(means[k]).all()
    dist = class_distances(emb, means, chunk=300)
    direct = np.sqrt(((x[:, None, :] - means[None]) ** 2).sum(axis=2))
    np.testing.assert_allclose(dist, direct, rtol=1e-7, equal_nan=True)
    assert np.isnan(dist[:, 2]).all() and np.isnan(dist[:, 4]).all()
