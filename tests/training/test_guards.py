"""Relabel guards (``--relabel-floor``, ``--relabel-hysteresis``, ``--relabel-agree``): their
rules on constructed tensors, and tiny real SCN runs on data noisy enough that unguarded
relabelling empties a class, checked from the run log and from a hook that sees every
proposal; the vetoes the log records, and resume."""

from __future__ import annotations

import io
import os
import pickle
import socket
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

import relabscope as rs
from relabscope.config import resolve
from relabscope.runlog import RunLogReader
from relabscope.training.guards import (GUARD_ORDER, Proposal, build_guards, floor_sizes, nearer_new,
                                        rank_share, within_budget)
from relabscope.training.hooks import BatchRecord, Hook
from relabscope.training.progress import ProgressHook
from relabscope.training.runner import train
from tests.conftest import scratch

N_TRAIN = 64
#: half the labels wrong and the eagerest rule (delta 0): unguarded SCN empties a class
BASE = {
    "method": "scn", "noise": 0.5, "delta": 0.0, "relabel_epoch": 1, "epochs": 3, "seed": 1,
    "dataset_options": {"num_train": N_TRAIN, "num_test": 16, "size": 32}, "image_size": 16,
    "batch_size": 16, "workers": 0, "device": "cpu", "embed_every": 1,
}
GUARDED = {
    "off": {},
    "floor": {"relabel_floor": 0.5},
    "hysteresis": {"relabel_hysteresis": 1},
    "agree": {"relabel_agree": True},
    "idle": {"relabel_hysteresis": 1000},  # on, but no sample can return 1000 times in 3 epochs
}
EVERY = {"relabel_floor": 0.5, "relabel_hysteresis": 1, "relabel_agree": True}
Batches = list[dict]


class Recorder(Hook):
    """Every training batch on the host: the labels it trained on, its embeddings, and once
    relabelling is on the method's proposals and the labels granted."""

    def __init__(self) -> None:
        self.batches: Batches = []
        self.metrics: dict[int, dict[str, float]] = {}

    def on_epoch_complete(self, epoch: int, metrics: dict[str, float]) -> None:
        self.metrics[epoch] = dict(metrics)

    def on_batch_end(self, record: BatchRecord) -> None:
        if record.phase != "train":
            return
        host = {name: None if t is None else t.detach().cpu().numpy().copy()
                for name, t in [("ids", record.sample_ids), ("labels", record.labels),
                                ("emb", record.embeddings), ("proposed", record.proposed),
                                ("new", record.new_labels)]}
        self.batches.append({"epoch": record.epoch, **host})


def refused(batches: Batches, epochs: int, k: int) -> np.ndarray:
    """(epochs, k): proposals the guards refused, by the class they would have left."""
    out = np.zeros((epochs, k), np.int64)
    for b in batches:
        if b["proposed"] is not None:
            no = b["proposed"] != b["new"]
            np.add.at(out[b["epoch"]], b["labels"][no], 1)
    return out


def check_agree(batches: Batches, only_agree: bool = True, k: int = 7, d: int = 512) -> tuple[int, int]:
    """Every relabel the batches show granted was nearer the new class's mean than the old
    one's, and (when the agree guard was the only one on) every refused one was not; the
    means recomputed from the batches themselves (each epoch's training embeddings averaged
    per label trained on; epoch e's relabels judged by epoch e-1's). Returns how many were
    granted and refused."""
    sums, counts = defaultdict(lambda: np.zeros((k, d))), defaultdict(lambda: np.zeros(k))
    for b in batches:
        np.add.at(sums[b["epoch"]], b["labels"], b["emb"].astype(np.float64))
        np.add.at(counts[b["epoch"]], b["labels"], 1)
    granted = refused = 0
    for b in batches:
        if b["proposed"] is None:
            continue
        changed, no = b["new"] != b["labels"], b["proposed"] != b["new"]
        if b["epoch"] == 0:  # no epoch before: no means, nothing relabels
            assert not changed.any() and no.sum() == (b["proposed"] != b["labels"]).sum()
            continue
        with np.errstate(invalid="ignore", divide="ignore"):
            means = sums[b["epoch"] - 1] / counts[b["epoch"] - 1][:, None]
        dist = np.linalg.norm(b["emb"][:, None, :] - means[None], axis=2)  # (B, K), NaN: no mean
        dist = np.where(np.isnan(dist), np.inf, dist)
        rows = np.arange(len(dist))
        d_old, d_new = dist[rows, b["labels"]], dist[rows, b["proposed"]]
        tol = 1e-5 * np.maximum(d_old, 1.0)
        assert (d_new[changed] < d_old[changed] + tol[changed]).all()
        assert not only_agree or (d_new[no] >= d_old[no] - tol[no]).all()
        granted, refused = granted + int(changed.sum()), refused + int(no.sum())
    return granted, refused


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, _isolated_cache) -> dict[str, tuple[Path, Recorder]]:
    with scratch(tmp_path_factory, "guards") as root:
        out = {}
        for name, guard in GUARDED.items():
            rec = Recorder()
            result = train({**BASE, **guard, "out": str(root / name)}, progress=False, hooks=[rec],
                           log=lambda line: None)
            assert (result.status, result.epochs_done) == ("finished", BASE["epochs"])
            out[name] = (root / name, rec)
        yield out


def _train_counts(run: rs.Run) -> np.ndarray:
    """(epochs + 1, K): training samples per class in effect in each epoch, then after the last."""
    rows = [*run.labels()[:, :N_TRAIN], run.final_labels()[:N_TRAIN]]
    return np.stack([np.bincount(r, minlength=run.num_classes) for r in rows])


def _returns(run: rs.Run) -> np.ndarray:
    """Per training sample, how often its label went back to one it held before, read from
    the log's labels per epoch (and after the last)."""
    history = np.vstack([run.labels()[:, :N_TRAIN], run.final_labels()[:N_TRAIN]]).T
    out = np.zeros(N_TRAIN, np.int64)
    for i, labels in enumerate(history):
        held = {int(labels[0])}
        for before, after in zip(labels[:-1], labels[1:]):
            if after != before:
                out[i] += int(after) in held
                held.add(int(after))
    return out


# ---------------------------------------------------------------------- the rules
def test_guards_are_off_by_default_and_log_nothing(runs) -> None:
    cfg = resolve({"method": "scn"})
    assert (cfg.relabel_floor, cfg.relabel_hysteresis, cfg.relabel_agree) == (0.0, 0, False)
    assert build_guards(cfg, torch.zeros(4, dtype=torch.long), 2, 8) is None
    with RunLogReader(runs["off"][0]) as log:
        assert log.guards == [] and log.vetoes() is None
    with rs.open_run(runs["off"][0]) as run:
        table = run.vetoes()
        assert table.empty and list(table.columns) == ["epoch", "guard", "class_id", "class_name", "vetoed"]


def test_floor_sizes_and_budget_go_largest_margin_first() -> None:
    assert floor_sizes(torch.tensor([16, 15, 10, 0]), 0.5).tolist() == [8, 8, 5, 0]
    assert floor_sizes(torch.tensor([10]), 0.3).tolist() == [3]  # 0.3 x 10 is 3, not 3.0000000000000004
    source = torch.tensor([0, 0, 0, 1, 1, 2])
    margin = torch.tensor([0.2, 0.9, 0.5, 0.1, 0.4, 0.7])
    standing = torch.tensor([True, True, True, True, False, True])
    granted = within_budget(source, margin, standing, budget=torch.tensor([2, 5, 0]))
    assert granted.tolist() == [False, True, True, True, False, False]
    # under torchrun the ranks' shares of a class's room add up to it
    room = torch.tensor([7, 0, 1, 3])
    assert (sum(rank_share(room, r, 3) for r in range(3)) == room).all()


def test_agree_gate_on_constructed_embeddings() -> None:
    means = torch.tensor([[0.0, 0.0], [10.0, 0.0], [float("nan"), float("nan")]])
    old, new = torch.tensor([0, 0, 0, 0]), torch.tensor([1, 1, 1, 2])
    x = torch.tensor([[2.0, 1.0],    # nearer the old mean: refused
                      [8.0, -1.0],   # nearer the new mean: allowed
                      [5.0, 3.0],    # as near to both: refused (strictly nearer is asked)
                      [0.0, 0.0]])   # the new class has no mean: refused
    assert nearer_new(x, means, old, new).tolist() == [False, True, False, False]
    # an old class without a mean is infinitely far: any new class with one is nearer
    assert nearer_new(x[:1], means, torch.tensor([2]), torch.tensor([1])).tolist() == [True]


def test_hysteresis_counts_a_return_to_any_label_held_before() -> None:
    """Sample 0 (given 0) goes 0 -> 1 -> 2 -> 1: the return to 1, a label it held but was not
    given, is its first return, so with K = 1 it stays at 1 and its next proposal is refused."""
    guards = build_guards(resolve({"method": "scn", "relabel_hysteresis": 1}), torch.tensor([0, 0]), 3, 4)
    assert guards is not None and guards.names == ("hysteresis",)

    def step(old: int, new: int) -> int:  # sample 0 moves; sample 1 proposes nothing
        p = Proposal(torch.tensor([0, 1]), torch.tensor([old, 0]), torch.tensor([new, 0]), torch.zeros(2, 3),
                     torch.zeros(2, 4))
        return int(guards.apply(p)[0])

    assert [step(0, 1), step(1, 2), step(2, 1), step(1, 0)] == [1, 2, 1, 1]
    assert guards.vetoed.tolist() == [[0, 1, 0]]  # one veto, of a relabel that would have left class 1


# ---------------------------------------------------------------------- in a run
def test_floor_keeps_every_class_at_half_its_given_size(runs) -> None:
    with rs.open_run(runs["off"][0]) as off:
        assert (_train_counts(off) == 0).any(), "without the guard this setting should empty a class"
    with rs.open_run(runs["floor"][0]) as run:
        given = np.bincount(run.given_labels[:N_TRAIN], minlength=run.num_classes)
        counts = _train_counts(run)
        assert (counts >= 0.5 * given).all(), (counts, given)
        assert run.vetoes()["vetoed"].sum() > 0  # the floor had to hold something back


def test_hysteresis_one_lets_a_sample_return_once(runs) -> None:
    with rs.open_run(runs["off"][0]) as off:
        assert _returns(off).max() >= 2, "without the guard some sample should return twice"
    with rs.open_run(runs["hysteresis"][0]) as run:
        assert _returns(run).max() == 1
        assert run.vetoes()["vetoed"].sum() > 0


def test_agree_grants_only_relabels_nearer_the_new_mean(runs) -> None:
    granted, refused = check_agree(runs["agree"][1].batches)
    assert granted > 0 and refused > 0  # the gate both let relabels through and held some back


@pytest.mark.parametrize("guard", ["floor", "hysteresis", "agree"])
def test_vetoes_are_logged_per_epoch_and_class(runs, guard: str) -> None:
    path, rec = runs[guard]
    with rs.open_run(path) as run:
        table = run.vetoes()
        assert set(table["guard"]) == {guard}
        assert len(table) == run.num_epochs * run.num_classes  # every epoch and class, zeros included
        assert (table["class_name"] == [run.class_names[c] for c in table["class_id"]]).all()
        logged = table.pivot(index="epoch", columns="class_id", values="vetoed").to_numpy()
        assert np.array_equal(logged, refused(rec.batches, run.num_epochs, run.num_classes))
        assert logged.sum() > 0
        # the epoch line says as many (ProgressHook reads the same metrics)
        assert [rec.metrics[e]["vetoed"] for e in range(run.num_epochs)] == logged.sum(axis=1).tolist()
        stream = io.StringIO()
        ProgressHook(stream).on_epoch_complete(1, rec.metrics[1])
        assert f"relabels {rec.metrics[1]['relabels']} (guards vetoed {logged[1].sum()})" in stream.getvalue()


def test_a_guard_that_refuses_nothing_changes_nothing(runs) -> None:
    """Hysteresis on at a limit no sample reaches: the guard path itself (state, counts,
    the log's vetoes) leaves every relabel exactly as the unguarded run made it."""
    with rs.open_run(runs["off"][0]) as off, rs.open_run(runs["idle"][0]) as idle:
        assert np.array_equal(off.labels(), idle.labels())
        assert off.log.relabels().tobytes() == idle.log.relabels().tobytes()
        assert np.array_equal(off.probabilities(None), idle.probabilities(None))
        assert set(idle.vetoes()["guard"]) == {"hysteresis"} and idle.vetoes()["vetoed"].sum() == 0


def test_resume_keeps_the_guards_state(tmp_path: Path) -> None:
    """All three guards, 4 epochs straight vs 3 then resumed: the same labels, relabels and
    vetoes. The cut falls where the state matters: samples are frozen and the agree gate
    needs epoch 3's means."""
    every = {**BASE, **EVERY, "epochs": 4}
    straight, cut = tmp_path / "straight", tmp_path / "cut"
    train({**every, "out": str(straight)}, progress=False, log=lambda line: None)
    train({**every, "epochs": 3, "out": str(cut)}, progress=False, log=lambda line: None)
    state = torch.load(cut / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)["guards"]
    assert list(state) == list(GUARD_ORDER)
    assert (state["hysteresis"]["returns"] >= 1).any() and torch.isfinite(state["agree"]["means"]).all()
    train({"epochs": 4}, resume=cut, progress=False, log=lambda line: None)
    with rs.open_run(straight) as a, rs.open_run(cut) as b:
        assert np.array_equal(a.labels(), b.labels())
        assert a.log.relabels().tobytes() == b.log.relabels().tobytes()
        assert a.vetoes().equals(b.vetoes())
        assert a.vetoes().query("epoch == 3 and guard == 'hysteresis'")["vetoed"].sum() > 0


def _guarded_rank(rank: int, size: int, port: int, out: str, cache: str) -> None:
    """One rank of a two-rank job with every guard on, joined as torchrun would; its hook's
    batches go to ``out``/rank<r>.pkl."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(size), RANK=str(rank),
                      LOCAL_RANK=str(rank), RELABSCOPE_CACHE=cache)
    torch.set_num_threads(1)
    rec = Recorder()
    train({**BASE, **EVERY, "out": f"{out}/run"}, progress=False, hooks=[rec], log=lambda line: None)
    with open(f"{out}/rank{rank}.pkl", "wb") as fh:
        pickle.dump(rec.batches, fh)


def test_two_ranks_keep_the_floor_and_count_every_veto(tmp_path: Path) -> None:
    """Under torchrun (two gloo ranks): the merged labels keep the floor and the hysteresis
    limit, the agree gate judged by the means of both ranks' embeddings, and the log's
    vetoes are both ranks' refusals."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    mp.spawn(_guarded_rank, args=(2, port, str(tmp_path), os.environ["RELABSCOPE_CACHE"]), nprocs=2, join=True)
    batches = []
    for rank in (0, 1):
        with open(tmp_path / f"rank{rank}.pkl", "rb") as fh:
            batches += pickle.load(fh)
    with rs.open_run(tmp_path / "run") as run:
        assert run.meta["world_size"] == 2
        given = np.bincount(run.given_labels[:N_TRAIN], minlength=run.num_classes)
        assert (_train_counts(run) >= 0.5 * given).all()
        assert _returns(run).max() <= 1
        table = run.vetoes()
        logged = table.groupby(["epoch", "class_id"])["vetoed"].sum().unstack().to_numpy()
        assert np.array_equal(logged, refused(batches, run.num_epochs, run.num_classes)) and logged.sum() > 0
    assert check_agree(batches, only_agree=False)[0] > 0


# ---------------------------------------------------------------------- the log
def test_a_log_reads_missing_vetoes_as_unknown(tmp_path: Path) -> None:
    """Written by hand: vetoes of an epoch not given read as unknown (no rows), a wrong
    shape is refused, and a log without guards records none."""
    samples = rs.SampleTable(key=[f"s{i}" for i in range(4)], split=[0, 0, 0, 1], given_label=[0, 1, 1, 0])
    rng = np.random.default_rng(0)
    with rs.RunLogWriter.create(tmp_path / "g", samples, ["a", "b"], embed_dim=3, guards=["agree", "floor"]) as log:
        for epoch in range(2):
            log.log_batch(np.arange(3), [0, 1, 1], rng.normal(size=(3, 2)), rng.normal(size=(3, 3)))
            log.log_batch([3], [0], rng.normal(size=(1, 2)), rng.normal(size=(1, 3)), phase="test")
            if epoch == 0:
                with pytest.raises(ValueError, match=r"guards \['agree', 'floor'\] x classes"):
                    log.end_epoch(vetoed=np.zeros((1, 2)))
                log.end_epoch(vetoed=np.array([[0, 2], [1, 0]]))
            else:
                log.end_epoch()
    with rs.open_run(tmp_path / "g") as run:
        assert run.log.guards == ["agree", "floor"]
        assert run.log.vetoes()[1].tolist() == [[-1, -1], [-1, -1]]
        assert run.vetoes()[["epoch", "guard", "class_name", "vetoed"]].values.tolist() == [
            [0, "agree", "a", 0], [0, "agree", "b", 2], [0, "floor", "a", 1], [0, "floor", "b", 0]]
