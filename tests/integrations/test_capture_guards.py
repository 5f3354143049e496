"""Relabel guards on a loop of your own (``RunCapture(guards=...)``): the same guarantees
``relabscope train``'s guards give SCN, checked on relabels the test proposes itself, with
embeddings it places itself, so every expected veto is known in advance."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import relabscope as rs
from relabscope.errors import RelabscopeError, RunDirError
from relabscope.integrations.capture import RunCapture

K, PER_CLASS, D = 3, 20, 3
GIVEN = torch.arange(K).repeat_interleave(PER_CLASS)  # 20 samples per class
TEST = torch.arange(K).repeat(2)


def _embeddings(ids: torch.Tensor, movers: torch.Tensor | None = None) -> torch.Tensor:
    """Each sample at 10 x the unit vector of its given class; a mover at its next class's."""
    home = GIVEN[ids] if movers is None else torch.where(movers[ids], (GIVEN[ids] + 1) % K, GIVEN[ids])
    return 10 * torch.eye(D)[home]


def _epoch(cap: RunCapture, propose, movers: torch.Tensor | None = None) -> None:
    """One epoch of three batches: ``propose(ids, labels)`` gives each batch's new labels."""
    for ids in torch.arange(len(GIVEN)).split(20):
        labels = cap.labels(ids)
        new = propose(ids, labels)
        changed = new != labels
        cap.relabel(ids[changed], new[changed])
        cap.log(ids, torch.zeros(len(ids), K), _embeddings(ids, movers))
    cap.log(torch.arange(len(TEST)), torch.zeros(len(TEST), K), 10 * torch.eye(D)[TEST], phase="test")
    cap.end_epoch()


def _capture(path, guards=None) -> RunCapture:
    return RunCapture(path, GIVEN, TEST, class_names=["a", "b", "c"], guards=guards)


def _all_to_a(ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return torch.zeros_like(labels)


def test_floor_keeps_every_class_at_half_and_logs_what_it_refused(tmp_path) -> None:
    for guards in (None, "floor=0.5"):
        with _capture(tmp_path / str(guards), guards) as cap:
            for _ in range(2):
                _epoch(cap, _all_to_a)
    with rs.open_run(tmp_path / "None") as run:  # unguarded: b and c are emptied
        counts = run.class_counts()
        assert counts[counts["epoch"] == run.num_epochs].set_index("class_name")["count"].to_dict() == \
            {"a": 60, "b": 0, "c": 0}
        assert run.vetoes().empty
    with rs.open_run(tmp_path / "floor=0.5") as run:
        counts = run.class_counts()
        assert (counts["count"] >= np.ceil(0.5 * counts["given"])).all()
        assert counts[counts["epoch"] == run.num_epochs].set_index("class_name")["count"].to_dict() == \
            {"a": 40, "b": 10, "c": 10}
        assert run.config["relabel_floor"] == 0.5 and run.log.guards == ["floor"]
        vetoes = run.vetoes().groupby(["epoch", "class_name"])["vetoed"].sum().to_dict()
        # epoch 0: 10 of b and 10 of c refused; epoch 1: all 10 left in each
        assert vetoes == {(0, "a"): 0, (0, "b"): 10, (0, "c"): 10, (1, "a"): 0, (1, "b"): 10, (1, "c"): 10}
        assert len(run.relabel_events()) == 20


def test_hysteresis_lets_no_sample_return_to_an_earlier_label_twice(tmp_path) -> None:
    def swap(ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:  # given -> next class -> given -> ...
        return torch.where(labels == GIVEN[ids], (GIVEN[ids] + 1) % K, GIVEN[ids])

    for guards in (None, "hysteresis=1"):
        with _capture(tmp_path / str(guards), guards) as cap:
            for _ in range(5):
                _epoch(cap, swap)
    with rs.open_run(tmp_path / "None") as run:
        assert run.flipflops()["flipflops"].max() == 4  # it came back to a label it held 4 times
    with rs.open_run(tmp_path / "hysteresis=1") as run:
        ff = run.flipflops()
        assert ff["flipflops"].max() == 1 and (ff["changes"] == 2).all()  # away, back, then frozen
        assert np.array_equal(run.final_labels()[run.train_mask], GIVEN.numpy())
        assert run.vetoes()["vetoed"].sum() == 3 * 60  # epochs 2, 3, 4 refuse every sample


def test_agree_refuses_relabels_the_embedding_does_not_follow(tmp_path) -> None:
    """Four samples of each class sit at the next class's point: the class means (the epoch
    before's) are then 8 e_k + 2 e_k+1, so those four are nearer the next class's mean and
    the other sixteen nearer their own. A relabel to the next class stands for the four."""
    movers = (torch.arange(len(GIVEN)) % PER_CLASS) < 4

    def to_next(ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return (GIVEN[ids] + 1) % K

    with _capture(tmp_path / "agree", "agree") as cap:
        for _ in range(2):
            _epoch(cap, to_next, movers)
    with rs.open_run(tmp_path / "agree") as run:
        events = run.relabel_events()
        assert set(events["epoch"]) == {1}  # no class means before the first epoch ends: nothing stands
        assert sorted(events["sample_id"]) == torch.nonzero(movers).squeeze(1).tolist()
        vetoes = run.vetoes().groupby("epoch")["vetoed"].sum().to_dict()
        assert vetoes == {0: 60, 1: 60 - 12}


def test_resume_keeps_the_guards_state(tmp_path) -> None:
    def swap(ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return torch.where(labels == GIVEN[ids], (GIVEN[ids] + 1) % K, GIVEN[ids])

    with _capture(tmp_path / "whole", "hysteresis=1") as cap:
        for _ in range(4):
            _epoch(cap, swap)
    first = _capture(tmp_path / "resumed", "hysteresis=1")
    with first:
        for _ in range(2):
            _epoch(first, swap)
        state = first.state_dict()
    assert state["guards"]["hysteresis"]["returns"].sum() == 60  # every sample returned once
    second = _capture(tmp_path / "resumed", "hysteresis=1")
    second.load_state_dict(state)
    with second:
        for _ in range(2):
            _epoch(second, swap)
    with rs.open_run(tmp_path / "whole") as whole, rs.open_run(tmp_path / "resumed") as resumed:
        assert resumed.num_epochs == 4
        columns = ["epoch", "sample_id", "old", "new"]
        assert whole.relabel_events()[columns].equals(resumed.relabel_events()[columns])
        assert whole.vetoes().equals(resumed.vetoes())

    other = _capture(tmp_path / "resumed", "floor=0.5")
    with pytest.raises(RunDirError, match=r"holds no state of the relabel guard\(s\) floor"):
        other.load_state_dict(state)
    other = _capture(tmp_path / "resumed", "hysteresis=1+agree")
    other.load_state_dict({**state, "guards": {**state["guards"], "agree": {"means": torch.zeros(K, D)}}})
    with pytest.raises(RunDirError, match=r"records the relabel guards hysteresis, the resumed run has "
                                          r"hysteresis\+agree"):
        other.open()


@pytest.mark.parametrize("guards, message", [
    ("floor=2", r"guards: floor=2: relabel_floor must be in \[0, 1\]"),
    ("agree+sometimes", r"guards: unknown guard 'sometimes'"),
])
def test_bad_guards_are_one_line(tmp_path, guards, message) -> None:
    with pytest.raises(RelabscopeError, match=message):
        _capture(tmp_path / "x", guards)
