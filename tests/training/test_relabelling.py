"""The one relabelling core (``training.relabelling.Relabelling``) that the trainer and
RunCapture share: proposals through the guards into the labels in effect, its state
round trip, and the rank-merge rule on two gloo ranks (each sample's state from the lowest
rank that trained it; samples no rank trained keep theirs)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from relabscope.errors import RunDirError
from relabscope.methods.settings import RelabelGuardSettings
from relabscope.training.distributed import World
from relabscope.training.guards import Proposal
from relabscope.training.relabelling import Relabelling

K = 3
GIVEN = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 2, 2])


def _propose(core: Relabelling, ids: list[int], new: list[int]) -> torch.Tensor:
    ids_t = torch.tensor(ids)
    old = core[ids_t]
    logits = torch.nn.functional.one_hot(torch.tensor(new), K).float() * 5
    core.observe(ids_t, old, torch.zeros(len(ids), 2))
    return core.apply(Proposal(ids_t, old, torch.tensor(new), logits, torch.zeros(len(ids), 2)))


def test_without_guards_every_proposal_takes_effect() -> None:
    core = Relabelling(GIVEN, K, RelabelGuardSettings())
    core.start_epoch()
    assert _propose(core, [0, 1, 4], [1, 2, 1]).tolist() == [1, 2, 1]
    core.end_epoch()
    assert core.current.tolist() == [1, 2, 0, 0, 1, 1, 1, 1, 2, 2]
    assert core.vetoed is None
    assert core.given.tolist() == GIVEN.tolist()  # the given labels stay as they were


def test_a_method_that_does_not_relabel_has_no_guards_whatever_the_settings() -> None:
    core = Relabelling(GIVEN, K, None, embed_dim=2)
    assert core.guards is None and core.vetoed is None


def test_the_floor_refuses_what_would_empty_a_class_and_counts_it() -> None:
    core = Relabelling(GIVEN, K, RelabelGuardSettings(relabel_floor=0.5))
    core.start_epoch()
    now = _propose(core, [8, 9], [0, 0])  # class 2 has two samples: its floor is 1
    core.end_epoch()
    assert sorted(now.tolist()) == [0, 2]
    assert core.vetoed is not None and core.vetoed.tolist() == [[0, 0, 1]]


def test_guard_state_loaded_before_the_guards_exist_is_taken_when_they_are_built() -> None:
    """RunCapture builds the guards at its first batch (the agree guard needs the embedding
    size), after a checkpoint may have been loaded."""
    settings = RelabelGuardSettings(relabel_hysteresis=1)
    first = Relabelling(GIVEN, K, settings)
    first.start_epoch()
    _propose(first, [0], [1])
    _propose(first, [0], [0])  # back to a label it held: frozen from now on
    first.end_epoch()
    state = first.state_dict()
    assert state["guards"]["hysteresis"]["returns"][0] == 1

    second = Relabelling(GIVEN, K, settings)
    second.load_state_dict(state)
    assert second.guards is None and second.state_dict()["guards"]["hysteresis"]["returns"][0] == 1
    second.start_epoch()
    assert _propose(second, [0], [2]).tolist() == [0]  # refused: the loaded state froze it
    assert second.current.tolist() == first.current.tolist()


def test_a_checkpoint_without_the_guards_state_is_refused() -> None:
    core = Relabelling(GIVEN, K, RelabelGuardSettings(relabel_agree=True), embed_dim=2)
    with pytest.raises(RunDirError, match="agree"):
        core.load_state_dict({"labels": {"current": GIVEN.clone()}})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank(rank: int, port: int, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        world = World(rank=rank, size=2)
        core = Relabelling(GIVEN, K, RelabelGuardSettings(relabel_hysteresis=2))
        core.start_epoch(world)
        # sample 0 trained by both ranks (a padding sampler repeats it), each relabelling it
        # elsewhere; samples 1-4 by rank 0, 5-8 by rank 1; sample 9 by no rank
        if rank == 0:
            _propose(core, [0, 1, 2, 3, 4], [1, 1, 0, 0, 2])
        else:
            _propose(core, [5, 6, 7, 8, 0], [2, 1, 1, 0, 2])
        core.end_epoch(world)
        hysteresis = core.guards.guards[0] if core.guards is not None else None
        torch.save({"labels": core.current, "held": hysteresis.held if hysteresis else None}, Path(out) / f"{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_two_ranks_merge_by_one_rule(tmp_path) -> None:
    mp.spawn(_rank, args=(_free_port(), str(tmp_path)), nprocs=2, join=True)
    a, b = (torch.load(tmp_path / f"{r}.pt") for r in (0, 1))
    assert a["labels"].tolist() == b["labels"].tolist()
    # sample 0 from rank 0 (the lowest that trained it), 1-4 rank 0's, 5-8 rank 1's, 9 as given
    assert a["labels"].tolist() == [1, 1, 0, 0, 2, 2, 1, 1, 0, 2]
    assert a["held"].tolist() == b["held"].tolist()
    assert a["held"][0].tolist() == [True, True, False]  # rank 0's history of sample 0, not a sum of both
