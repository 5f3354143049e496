"""RunCapture, the framework-free core: a hand-written loop that relabels gets the same log
as the trainer's, p(old)/p(new) come from the probabilities a method reports, embeddings
come from a named layer, and misuse fails with one clear line."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import relabscope as rs
from relabscope.errors import DataError, RelabscopeError, RunDirError
from relabscope.integrations.capture import RunCapture, sample_table
from tests.integrations.tiny import K, make_data, relabel_rule


class Net(torch.nn.Module):
    """The backbone's output goes through an in-place ReLU: the logged embedding must be
    the backbone's output as it was, not as the ReLU left it."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 8))
        self.head = torch.nn.Linear(8, K)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.relu(self.backbone(x), inplace=True))


def _loop(path, epochs: int = 3, cap: RunCapture | None = None, first_epoch: int = 0):
    """A plain loop: labels in effect from the capture, relabels by the shared rule, half of
    them with probabilities of the method's own (a softmax at temperature 2)."""
    torch.manual_seed(first_epoch)
    data = make_data()
    model = Net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    cap = cap or RunCapture(path, data.y_train, data.y_test, class_names="abc", clean_labels=data.clean)
    cap.attach(model, "backbone")
    made, seen = [], {}
    with cap:
        for epoch in range(first_epoch, first_epoch + epochs):
            for ids in torch.randperm(96).split(16):
                logits = model(data.x_train[ids])
                labels = cap.labels(ids)
                opt.zero_grad()
                F.cross_entropy(logits, labels).backward()
                opt.step()
                relabel_ids, new = relabel_rule(ids, logits, labels, epoch)
                probs = (logits.detach() / 2).softmax(1)[torch.isin(ids, relabel_ids)]
                half = len(relabel_ids) // 2
                if half:
                    cap.relabel(relabel_ids[:half], new[:half], probs=probs[:half])
                cap.relabel(relabel_ids[half:], new[half:])
                soft = logits.detach().softmax(1)[torch.isin(ids, relabel_ids)]
                for j, (i, n) in enumerate(zip(relabel_ids.tolist(), new.tolist())):
                    p = probs[j] if j < half else soft[j]
                    made.append((epoch, i, labels[ids == i].item(), n, p[labels[ids == i]].item(), p[n].item()))
                cap.log(ids, logits)
            model.eval()
            with torch.no_grad():
                ids = torch.arange(48)
                cap.log(ids, model(data.x_test), phase="test")
                seen[epoch] = model.backbone(data.x_test).numpy()
            model.train()
            cap.end_epoch(lr=0.1)
    return cap, made, seen


def test_plain_loop_logs_relabels_with_the_methods_probabilities(tmp_path) -> None:
    cap, made, seen = _loop(tmp_path / "run")
    data = make_data()
    with rs.open_run(tmp_path / "run") as run:
        assert run.num_epochs == 3 and run.status == "finished" and run.class_names == ["a", "b", "c"]
        assert list(run.samples["key"][[0, 95, 96, 143]]) == ["train/0", "train/95", "test/0", "test/47"]
        np.testing.assert_array_equal(run.clean_labels, np.r_[data.clean, np.full(48, -1)])
        events = run.relabel_events()
        got = sorted(events[["epoch", "sample_id", "old", "new", "p_old", "p_new"]].itertuples(index=False))
        assert len(got) == len(made) > 10
        for g, want in zip(got, sorted(made)):
            assert tuple(g[:4]) == want[:4]
            assert g[4:] == pytest.approx(want[4:], abs=1e-6)
        np.testing.assert_array_equal(cap.labels().numpy(), run.final_labels()[:96])
        for epoch in range(3):  # the test pass's embeddings: the backbone's output before the in-place ReLU
            np.testing.assert_allclose(run.embeddings(epoch)[96:], seen[epoch], rtol=2e-3, atol=2e-3)
        assert (run.embeddings(2)[96:] < 0).any()
        assert run.metrics()["lr"].tolist() == pytest.approx([0.1] * 3)
        loss = run.log.epoch_array("loss", 2)
        assert np.isfinite(loss).all()  # per-sample loss, train and test


def test_state_dict_resumes_a_plain_loop(tmp_path) -> None:
    data = make_data()
    cap, _, _ = _loop(tmp_path / "run.h5", epochs=3)
    state = cap.state_dict()
    state["epochs"] = 2  # as if the checkpoint were one epoch older than the log
    again = RunCapture(tmp_path / "run.h5", data.y_train, data.y_test, class_names="abc")
    again.load_state_dict(state)
    _, made, _ = _loop(None, epochs=2, cap=again, first_epoch=2)
    with rs.open_run(tmp_path / "run.h5") as run:
        assert run.num_epochs == 4
        np.testing.assert_array_equal(run.labels()[2, :96], state["labels"].numpy())
        later = run.relabel_events().query("epoch >= 2")
        assert sorted(zip(later["epoch"], later["sample_id"], later["new"])) == sorted((e, i, n) for e, i, _, n, _, _ in made)


def test_sample_table_from_plain_arrays() -> None:
    table = sample_table(torch.tensor([2, 0]), np.array([1]), keys=["a.png", "b.png", "c.png"], clean_labels=[2, -1, 1])
    assert table.key == ["a.png", "b.png", "c.png"] and table.split.tolist() == [0, 0, 1]
    assert table.given_label.tolist() == [2, 0, 1] and table.clean_label.tolist() == [2, -1, 1]
    with pytest.raises(DataError, match="keys: 2 given for 3 samples"):
        sample_table([0, 1], [0], keys=["a", "b"])
    with pytest.raises(DataError, match="train_labels: expected a 1-D array of integer class ids"):
        sample_table([0.5, 1.0])
    with pytest.raises(DataError, match="clean_labels: 1 given, expected 2"):
        sample_table([0, 1], [0], clean_labels=[0])
    with pytest.raises(DataError, match="class_names: 2 names, but the labels use class id 2"):
        RunCapture("x.h5", [0, 2], class_names=["a", "b"])


def test_misuse_fails_with_one_line(tmp_path) -> None:
    model = Net()
    x = torch.randn(4, 1, 8, 8)
    cap = RunCapture(tmp_path / "run.h5", [0, 1, 2, 0], [1, 2], class_names="abc")
    with pytest.raises(RelabscopeError, match=r"embedding_layer 'neck': Net has no such layer \(its children: backbone, head\)"):
        cap.attach(model, "neck")
    with pytest.raises(RelabscopeError, match="before open"):
        cap.log([0], torch.zeros(1, K), torch.zeros(1, 2))
    with cap:
        with pytest.raises(RelabscopeError, match="no embeddings for the batch"):
            cap.log([0, 1], torch.zeros(2, K))
        with pytest.raises(DataError, match=r"test sample ids must be positions 0\.\.1 in the test labels, got 4\.\.5"):
            cap.log([4, 5], torch.zeros(2, K), torch.zeros(2, 8), phase="test")
        with pytest.raises(DataError, match=r"train sample ids must be positions 0\.\.3 in the train labels, got 3\.\.4"):
            cap.log(torch.tensor([3, 4]), torch.zeros(2, K), torch.zeros(2, 8))
        with pytest.raises(DataError, match=r"train sample ids must be positions 0\.\.3 in the train labels, got -1\.\.0"):
            cap.labels([-1, 0])
        with pytest.raises(DataError, match=r"train sample ids must be integers, not torch.float32"):
            cap.labels(torch.tensor([0.0, 1.0]))
        with pytest.raises(DataError, match=r"test sample ids must be integers, not torch.bool"):
            cap.log(torch.tensor([True, False]), torch.zeros(2, K), torch.zeros(2, 8), phase="test")
        with pytest.raises(DataError, match=r"test sample ids must be positions 0\.\.1 in the test labels, got -2\.\.-2"):
            cap.log([-2], torch.zeros(1, K), torch.zeros(1, 8), phase="test")
        with pytest.raises(DataError, match=r"logits of shape \(2, 2\) for 2 sample ids and 3 classes"):
            cap.log([0, 1], torch.zeros(2, 2), torch.zeros(2, 8))
        cap.relabel([3], [1])
        with pytest.raises(RelabscopeError, match="not in the batch being logged"):
            cap.log([0, 1], torch.zeros(2, K), torch.zeros(2, 8))
        with pytest.raises(DataError, match="embeddings of size 3, earlier batches 8"):
            cap.log([0, 1], torch.zeros(2, K), torch.zeros(2, 3))
        with pytest.raises(DataError, match=r"probs have shape \(1, 2\), expected \(1, 3\)"):
            cap.relabel([0], [1], probs=torch.ones(1, 2))
        cap.attach(model, "backbone")
        cap.log(torch.arange(4), model(x))
        cap.end_epoch()
        with pytest.raises(DataError, match="checkpoint state: labels for 3 training samples, this run has 4"):
            RunCapture(tmp_path / "other.h5", [0, 1, 2, 0]).load_state_dict({"labels": torch.zeros(3), "epochs": 1})
    with RunCapture(tmp_path / "no-test.h5", [0, 1]) as train_only:
        with pytest.raises(DataError, match="a test batch, but no test_labels were given"):
            train_only.log([0], torch.zeros(1, 2), torch.zeros(1, 8), phase="test")
    with pytest.raises(RunDirError, match="run.h5: a run log is already there"):
        RunCapture(tmp_path / "run.h5", [0, 1, 2, 0]).open()
    missing = RunCapture(tmp_path / "gone.h5", [0, 1, 2, 0])
    missing.load_state_dict({"labels": torch.zeros(4), "epochs": 2})
    with pytest.raises(RunDirError, match="gone.h5: the checkpoint's state has 2 logged epochs but there is no run log"):
        missing.open()
    with rs.open_run(tmp_path / "run.h5") as run:
        assert run.num_epochs == 1 and run.relabel_events().empty


def test_images_are_recorded_in_the_log(tmp_path) -> None:
    pixels = tmp_path / "pixels.npy"
    np.save(pixels, np.zeros((6, 8, 8), np.uint8))
    with RunCapture(tmp_path / "run.h5", [0, 1, 2, 0], [1, 2], class_names="abc", images=pixels) as cap:
        cap.log([0, 1, 2, 3], torch.zeros(4, K), torch.zeros(4, 2))
        cap.end_epoch()
    with rs.open_run(tmp_path / "run.h5") as run:
        assert str(pixels) in run.meta["images"]
