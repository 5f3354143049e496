"""The method contract: what every registered method must do for the trainer, the guards,
the checkpoint, ``--amp`` and torchrun to work with it, checked on every entry of
``relabscope.methods.METHODS`` (in the spirit of torchmetrics' MetricTester and captum's
test_config: one harness, every implementation).

The claim that a new method is one module and one registry line is proved here by
:class:`Toy`, a relabelling method that exists only in this module and is registered with
the one line :data:`TOY`: it passes the contract, trains through ``relabscope train``'s own
command line, and a sweep trains it under its guards. docs/adding-a-method.md uses it as
its example.
"""

from __future__ import annotations

import io
import socket
from pathlib import Path
from typing import Iterator

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from click.testing import CliRunner
from torch import nn

import relabscope as rs
from relabscope.cli import main
from relabscope.config import TrainConfig, resolve
from relabscope.methods import METHODS, MethodEntry, build_method
from relabscope.methods.base import Method, StepOutput
from relabscope.methods.baseline import Baseline
from relabscope.methods.settings import RelabelGuardSettings
from relabscope.sweep import run_sweep, sweep_table
from relabscope.training.guards import Proposal
from relabscope.training.relabelling import Relabelling
from tests.conftest import TINY
from tests.test_cli import TINY as TINY_ARGS


class Toy(Baseline):
    """The baseline's network and loss (a backbone, a linear head, cross-entropy), and a
    relabel rule: a sample goes to the predicted class when the prediction beats its label
    by more than ``margin`` in probability (a bare version of SCN's rule, without its
    importance weights)."""

    margin = 0.1

    def relabel(self, out: StepOutput, labels: torch.Tensor, epoch: int) -> torch.Tensor:
        probs = out.logits.detach().softmax(dim=1)
        best, pred = probs.max(dim=1)
        gap = best - probs.gather(1, labels.unsqueeze(1)).squeeze(1)
        return torch.where(gap > self.margin, pred, labels)


#: the one line a new method adds to the registry (here, for the tests of this module only)
TOY = MethodEntry("tests.methods.test_contract:Toy", relabels=True)

CONTRACT = {**METHODS, "toy": TOY}
RELABELLING = [name for name, entry in CONTRACT.items() if entry.relabels]
K, B, SIZE = 4, 12, 32


@pytest.fixture(scope="module", autouse=True)
def toy_registered() -> Iterator[None]:
    METHODS["toy"] = TOY
    try:
        yield
    finally:
        del METHODS["toy"]


def _cfg(name: str) -> TrainConfig:
    return resolve({"method": name, "dataset": "synthetic", "image_size": SIZE})


def _built(name: str, seed: int = 0) -> Method:
    torch.manual_seed(seed)
    return build_method(name, K, _cfg(name))


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return torch.randn(B, 3, SIZE, SIZE, generator=gen), torch.arange(B) % K


def _two_steps(model: Method) -> StepOutput:
    """A step, the state it leaves (centers start at the first batch), then the step whose
    output the tests read (epoch 4: DMUE's ramp is on)."""
    images, labels = _batch()
    model.after_step(model.training_step(images, labels, epoch=4), labels)
    return model.training_step(images, labels, epoch=4)


@pytest.mark.parametrize("name", CONTRACT)
def test_a_step_has_the_shapes_and_types_the_trainer_logs(name: str) -> None:
    model = _built(name)
    out = _two_steps(model)
    assert out.loss.shape == () and out.loss.dtype == torch.float32 and torch.isfinite(out.loss)
    assert out.logits.shape == (B, K) and out.logits.dtype == torch.float32
    assert out.embedding.shape == (B, model.embed_dim) and model.embed_dim > 0
    assert out.sample_loss.shape == (B,) and torch.isfinite(out.sample_loss).all()
    assert set(out.fields) == set(model.sample_fields)
    for field, shape in model.sample_fields.items():
        assert tuple(out.fields[field].shape) == (B, *shape), field
    logits, embedding = model.eval().predict(_batch()[0])
    assert logits.shape == (B, K) and embedding.shape == (B, model.embed_dim)
    assert (model.center is not None) == CONTRACT[name].with_center


@pytest.mark.parametrize("name", CONTRACT)
def test_every_parameter_group_gets_a_gradient(name: str) -> None:
    model = _built(name)
    out = _two_steps(model)
    model.zero_grad()
    out.loss.backward()
    for group in model.param_groups():
        assert any(p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
                   for p in group["params"]), (name, group.get("lr"))


@pytest.mark.parametrize("name", CONTRACT)
def test_relabel_is_what_the_registry_says(name: str) -> None:
    """A method the registry marks ``relabels`` proposes class ids for the batch and leaves
    the labels it was given alone; any other method keeps the base class's relabel (the
    trainer never calls it, so an override would be silently ignored)."""
    model = _built(name)
    if not CONTRACT[name].relabels:
        assert type(model).relabel is Method.relabel
        return
    labels = _batch()[1]
    before = labels.clone()
    proposed = model.relabel(_two_steps(model), labels, epoch=4)
    assert proposed.shape == (B,) and proposed.dtype == torch.long
    assert ((proposed >= 0) & (proposed < K)).all()
    assert torch.equal(labels, before)


@pytest.mark.parametrize("name", RELABELLING)
def test_the_guards_see_every_proposal(name: str) -> None:
    """Every label a relabelling method proposes to change is either granted or counted as
    one guard's veto, with every guard on."""
    model = _built(name)
    images, given = _batch()
    core = Relabelling(given, K, RelabelGuardSettings(relabel_floor=0.9, relabel_hysteresis=1, relabel_agree=True),
                       embed_dim=model.embed_dim)
    ids = torch.arange(B)
    proposals = granted = 0
    for epoch in range(3):
        core.start_epoch()
        labels = core[ids]
        out = model.training_step(images, labels, epoch=4)
        core.observe(ids, labels, out.embedding.detach())
        # the labels rotated by one: a method that proposes nothing here still gets proposals to judge
        proposed = model.relabel(out, labels, epoch=4) if epoch else (labels + 1) % K
        now = core.apply(Proposal(ids, labels, proposed, out.logits.detach(), out.embedding.detach()))
        core.end_epoch()
        proposals += int((proposed != labels).sum())
        granted += int((now != labels).sum())
        assert int(core.vetoed.sum()) == int((proposed != labels).sum()) - int((now != labels).sum())
    assert proposals > 0


@pytest.mark.parametrize("name", CONTRACT)
def test_state_dict_round_trip(name: str) -> None:
    model = _built(name)
    _two_steps(model)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    other = _built(name, seed=1)
    buffer.seek(0)
    other.load_state_dict(torch.load(buffer))
    images = _batch()[0]
    with torch.no_grad():
        a, b = model.eval().predict(images), other.eval().predict(images)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    for key, value in model.epoch_arrays().items():
        assert torch.equal(value, other.epoch_arrays()[key]), key


@pytest.mark.parametrize("name", CONTRACT)
def test_a_step_under_bf16_autocast(name: str) -> None:
    """What ``--amp`` does on CUDA, here on the CPU (which CI has): the step runs, its loss
    and everything the trainer logs stay float32 and finite, gradients reach every group."""
    model = _built(name)
    images, labels = _batch()
    for _ in range(2):  # the second step has initialised centers
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model.training_step(images, labels, epoch=4)
        assert out.loss.dtype == torch.float32 and torch.isfinite(out.loss)
        assert out.logits.dtype == torch.float32 and out.sample_loss.dtype == torch.float32
        model.zero_grad()
        out.loss.backward()
        for group in model.param_groups():
            assert any(p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
                       for p in group["params"])
        model.after_step(out, labels)
    for value in out.fields.values():
        assert torch.isfinite(value.float()).all()


# ---------------------------------------------------------------------- two gloo ranks
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank(rank: int, port: int, folder: str) -> None:
    """Every method in DDP as the trainer wraps it (its registry's unused_parameters), two
    optimiser steps on this rank's half of a batch that is nearly all one class (DMUE's
    branch for that class then sees one sample and is left out of the step); the
    parameters each rank ends with."""
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    torch.set_num_threads(1)
    METHODS["toy"] = TOY
    try:
        images, labels = _batch()
        labels = torch.where(torch.arange(B) % (B // 2) == 0, 1, 0)  # one sample of class 1 per rank
        mine = slice(rank * B // 2, (rank + 1) * B // 2)
        params = {}
        for name, entry in CONTRACT.items():
            model = _built(name)
            ddp = nn.parallel.DistributedDataParallel(model, find_unused_parameters=entry.unused_parameters)
            opt = torch.optim.SGD(model.parameters(), lr=0.1)
            for _ in range(2):  # DDP finds a parameter left out of a step at the next step
                opt.zero_grad()
                step = ddp(images[mine], labels[mine], 4)
                step.loss.backward()
                opt.step()
            params[name] = torch.cat([p.detach().flatten() for p in model.parameters()])
        torch.save(params, Path(folder) / f"{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_two_ranks_end_a_step_with_one_model() -> None:
    """DDP averages every parameter's gradient over the ranks, so both ranks hold one model
    after a step; a method whose steps leave parameters unused must say so in the registry
    (``unused_parameters``), or DDP fails the step."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(_rank, args=(_free_port(), tmp), nprocs=2, join=True)
        a, b = (torch.load(Path(tmp) / f"{r}.pt") for r in (0, 1))
    assert set(a) == set(CONTRACT)
    for name in CONTRACT:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0, msg=name)


# ---------------------------------------------------------------------- the toy, end to end
def test_the_toy_trains_through_the_command_line_with_its_guards(tmp_path) -> None:
    out = tmp_path / "toy"
    result = CliRunner().invoke(main, ["train", "--method", "toy", *TINY_ARGS, "--epochs", "3", "--noise", "0.3",
                                       "--relabel-epoch", "1", "--relabel-floor", "0.5", "-q", "--out", str(out)])
    assert result.exit_code == 0, result.output
    with rs.open_run(out) as run:
        assert run.status == "finished" and run.num_epochs == 3
        assert run.config["method"] == "toy" and run.config["relabel_floor"] == 0.5
        assert len(run.flipflops()) and run.flipflops()["changes"].sum() > 0  # it relabelled
        assert list(run.vetoes()["guard"].unique()) in ([], ["floor"])
        counts = run.class_counts()
        assert (counts["count"] >= (0.5 * counts["given"]).apply(lambda v: -(-v // 1)) - 1e-9).all()


def test_the_toy_is_swept_under_its_guards(tmp_path) -> None:
    settings = {k: v for k, v in TINY.items() if k not in ("noise", "seed")} | {"epochs": 2, "keep_optimizer": False}
    result = run_sweep(tmp_path / "grid", methods=["toy", "baseline"], noise=[0.3], seeds=1,
                       guards=["none", "floor=0.5"], settings=settings, progress=False, log=lambda line: None)
    assert not result.failed
    table = sweep_table(tmp_path / "grid")
    assert sorted(zip(table["method"], table["guard"])) == [("baseline", "none"), ("toy", "floor=0.5"),
                                                            ("toy", "none")]
