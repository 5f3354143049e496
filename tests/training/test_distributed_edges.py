"""torchrun at the edges (gloo on the CPU): ragged last batches that leave a rank one sample
or none, the gradient of a ragged global batch, per-rank random streams, rank 0's buffers
on every rank, unreadable counts summed over ranks, a NaN on one rank, SIGTERM to torchrun,
``--resume auto``, and one line per rank for any failure."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from relabscope.data.pipeline import split_batches
from relabscope.methods import METHODS
from relabscope.runlog.reader import RunLogReader
from relabscope.training import checkpoint
from relabscope.training.distributed import World
from relabscope.training.loop import share_weights
from tests.training.test_distributed import TORCHRUN, _env, _free_port, _torchrun, check_log, tiny_trainer

TINY = ["-O", "num_test=16", "-O", "size=16", "--image-size", "16", "--batch-size", "12", "--workers", "0",
        "--device", "cpu", "--noise", "0.3", "--relabel-epoch", "1", "--delta", "0.05", "-q"]


# ---------------------------------------------------------------------- shares
@pytest.mark.parametrize("world_size", [1, 2, 3, 8])
def test_every_sample_trains_once_and_every_share_holds_two(world_size: int) -> None:
    """For every data size that can give each rank two samples and every batch of at least
    two per rank: the epoch's shares cover each sample exactly once, none below two."""
    for n in range(2 * world_size, 70):
        for batch in (2 * world_size, 2 * world_size + 1, 12, 16, 64):
            if batch < 2 * world_size:
                continue
            order = torch.randperm(n, generator=torch.Generator().manual_seed(n))
            batches = split_batches(order, batch, min_last=2 * world_size)
            shares = [World(r, world_size).shard(b) for b in batches for r in range(world_size)]
            assert sorted(torch.cat(shares).tolist()) == list(range(n)), (n, batch)
            assert min(len(s) for s in shares) >= 2, (n, batch, [len(s) for s in shares])


def test_the_fold_only_changes_a_last_batch_too_small_to_share() -> None:
    order = torch.arange(259)
    assert [len(b) for b in split_batches(order, 64)] == [64, 64, 64, 64, 3]  # one process: as before
    assert [len(b) for b in split_batches(order, 64, min_last=4)] == [64, 64, 64, 67]  # 2 ranks: 3 < 4
    assert [len(b) for b in split_batches(torch.arange(260), 64, min_last=4)] == [64, 64, 64, 64, 4]
    assert share_weights([torch.arange(64)], [torch.arange(32)], 2) == [1.0]


# ---------------------------------------------------------------------- in-process ranks
def _no_batch_norm(module: nn.Module) -> None:
    """Batch norm's statistics are per share by design; without it a step's gradient is a
    plain function of the samples, which is what the share weights must make global."""
    for name, child in module.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            setattr(module, name, nn.Identity())
        else:
            _no_batch_norm(child)


def _trainer(world: World, out: Path):
    from relabscope.config import resolve
    from relabscope.data.base import ArraySource, FERDataset
    from relabscope.data.pipeline import PreparedData, load_images
    from relabscope.methods import build_method
    from relabscope.training.loop import Trainer

    classes = ("a", "b", "c")
    images = np.random.default_rng(0).integers(0, 256, (12, 16, 16, 3), dtype=np.uint8)
    split = FERDataset("tiny", classes, "train", [f"t{i}" for i in range(12)], np.arange(12) % 3,
                       ArraySource(images), native_size=16)
    cfg = resolve({"method": "baseline", "epochs": 1, "batch_size": 6, "image_size": 16, "workers": 0,
                   "device": "cpu", "dataset": "synthetic"})
    data, train_b, test_b = load_images(PreparedData(split, split), torch.device("cpu"), 0, 1.0, lambda line: None)
    torch.manual_seed(0)
    method = build_method("baseline", 3, cfg)
    _no_batch_norm(method)
    return Trainer(cfg, data, train_b, test_b, method, torch.device("cpu"), [], out, world=world)


def _edge_rank(rank: int, size: int, port: int, out: str) -> None:
    torch.set_num_threads(1)
    import torch.distributed as dist

    from relabscope.training.loop import Trainer, seed_globals

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=size)
    try:
        world = World(rank, size, rank)
        result: dict = {}
        # a ragged global batch of 7: shares 3, 2, 2
        x = torch.randn(7, 3, 16, 16, generator=torch.Generator().manual_seed(1))
        labels = torch.tensor([0, 1, 2, 0, 1, 2, 2])
        share = world.shard(torch.arange(7))
        trainer = _trainer(world, Path(out) / "ddp")
        trainer._step(x[share], labels[share], 0, share_weights([torch.arange(7)], [share], size)[0])
        result["grads"] = {n: p.grad.clone() for n, p in trainer.method.named_parameters() if p.grad is not None}
        if rank == 0:
            alone = _trainer(World(), Path(out) / "alone")
            alone._step(x, labels, 0)
            result["single"] = {n: p.grad.clone() for n, p in alone.method.named_parameters() if p.grad is not None}
        # streams: per rank, repeatable
        seed_globals(5, 2, rank)
        first = torch.rand(4)
        seed_globals(5, 2, rank)
        result["draws"] = (first, torch.rand(4))
        # unreadable images counted on each rank, summed
        stub = SimpleNamespace(train_batches=SimpleNamespace(unreadable=rank + 1), world=world,
                               device=torch.device("cpu"))
        result["unreadable"] = Trainer._unreadable(stub)  # type: ignore[arg-type]
        # rank 0's buffers everywhere
        bn = nn.BatchNorm1d(3)
        bn.running_mean.fill_(float(rank))
        world.broadcast_buffers(bn)
        result["running_mean"] = bn.running_mean.clone()
        torch.save(result, Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def three_ranks(tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("edges")
    mp.spawn(_edge_rank, args=(3, _free_port(), str(out)), nprocs=3, join=True)
    return [torch.load(out / f"rank{r}.pt") for r in range(3)]


def test_a_ragged_batch_steps_with_the_single_process_gradient(three_ranks) -> None:
    single = three_ranks[0]["single"]
    assert len(single) > 10
    for rank in three_ranks:  # DDP left the same averaged gradient on every rank
        assert rank["grads"].keys() == single.keys()
        for name, grad in single.items():
            torch.testing.assert_close(rank["grads"][name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_random_streams_differ_between_ranks_and_repeat(three_ranks) -> None:
    draws = [r["draws"] for r in three_ranks]
    for first, again in draws:
        torch.testing.assert_close(first, again, rtol=0, atol=0)  # a resumed epoch draws the same
    assert len({tuple(d[0].tolist()) for d in draws}) == 3


def test_unreadable_counts_and_buffers_are_the_job_s(three_ranks) -> None:
    assert [r["unreadable"] for r in three_ranks] == [6, 6, 6]  # 1 + 2 + 3
    for r in three_ranks:
        torch.testing.assert_close(r["running_mean"], torch.zeros(3), rtol=0, atol=0)


def test_sync_bn_is_refused_where_it_could_hang() -> None:
    from relabscope.errors import RelabscopeError
    from relabscope.training.distributed import check_sync_bn

    two, cuda = World(0, 2), torch.device("cuda", 0)
    for method in (m for m, entry in METHODS.items() if not entry.sync_bn):
        with pytest.raises(RelabscopeError, match=f"--sync-bn cannot train {method}: its auxiliary branches"):
            check_sync_bn(two, True, cuda, method)
    check_sync_bn(two, True, cuda, "rul-c")  # every batch-norm call on every rank's whole share
    check_sync_bn(World(), True, torch.device("cpu"), "dmue")  # one process: nothing to pool


def test_ruls_dropout_free_copy_uses_batch_statistics_through_the_module() -> None:
    """The copy goes through the module (so --sync-bn's SyncBatchNorm pools it) and leaves
    the running statistics and the batch count as they were."""
    from relabscope.methods.rul import batch_statistics

    norm = nn.BatchNorm1d(4)
    norm.running_mean.fill_(3.0)
    before = {k: v.clone() for k, v in norm.state_dict().items()}
    x = torch.randn(6, 4, generator=torch.Generator().manual_seed(0))
    want = torch.nn.functional.batch_norm(x, None, None, norm.weight, norm.bias, training=True, eps=norm.eps)
    torch.testing.assert_close(batch_statistics(norm, x), want)
    for key, value in norm.state_dict().items():
        torch.testing.assert_close(value, before[key], rtol=0, atol=0, msg=key)
    assert norm.momentum == 0.1


def test_a_checkpoint_with_more_cuda_states_than_devices_resumes(monkeypatch) -> None:
    """Checkpoints of older versions hold one CUDA generator state per visible GPU; restoring
    them where fewer are visible raised IndexError. They are ignored now, and none is saved."""
    state = checkpoint.rng_state()
    assert "cuda" not in state
    state["cuda"] = [torch.zeros(16, dtype=torch.uint8)] * 8

    def refuse(states):  # what set_rng_state_all does with 8 states on a machine with fewer GPUs
        raise IndexError("list index out of range")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", refuse)
    checkpoint.set_rng_state(state)
    assert torch.equal(torch.get_rng_state(), state["torch"])


# ---------------------------------------------------------------------- a NaN on one rank
def _poison_rank1_at_the_end_of_epoch_2(method) -> None:
    """Rank 1's loss turns NaN in the last of its 4 steps of epoch 2 (after which its
    gradient reaches every rank)."""
    step = method.training_step
    calls = {"n": 0}

    def poisoned(images, labels, epoch):
        out = step(images, labels, epoch)
        calls["n"] += 1
        if epoch == 1 and calls["n"] == 8:
            out.loss = out.loss * float("nan")
            out.sample_loss = out.sample_loss * float("nan")
        return out

    method.training_step = poisoned


def _nan_rank(rank: int, size: int, port: int, out: str, cache: str) -> None:
    import torch.distributed as dist

    from relabscope.errors import DivergedError

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=size)
    try:
        patch = _poison_rank1_at_the_end_of_epoch_2 if rank == 1 else None
        trainer = tiny_trainer(World(rank, size, rank), "scn", 3, Path(out) / "run", cache, patch)
        try:
            trainer.fit()
            outcome = "finished"
        except DivergedError as exc:
            outcome = str(exc)
        (Path(out) / f"rank{rank}.txt").write_text(outcome)
    finally:
        dist.destroy_process_group()


def test_a_nan_on_one_rank_stops_every_rank_diverged(tmp_path: Path) -> None:
    mp.spawn(_nan_rank, args=(2, _free_port(), str(tmp_path), str(tmp_path / "cache")), nprocs=2, join=True)
    outcomes = [(tmp_path / f"rank{r}.txt").read_text() for r in (0, 1)]
    for text in outcomes:
        assert "loss became NaN or infinite in epoch 2 on rank 1" in text, outcomes
    with RunLogReader(tmp_path / "run") as log:
        assert log.status == "diverged" and log.num_epochs == 1  # epoch 1 complete, epoch 2 not kept


# ---------------------------------------------------------------------- torchrun
@pytest.mark.parametrize("nproc, num_train, method", [
    (2, 27, "rul"),    # 27 = 2 x 12 + 3: the last batch of 3 would leave rank 1 one sample
    (2, 27, "dmue"),
    (3, 26, "rul"),    # 26 = 2 x 12 + 2: over 3 ranks, 1, 1 and none
])
def test_ragged_last_batches_train_on_every_rank(tmp_path: Path, nproc: int, num_train: int, method: str) -> None:
    out = tmp_path / "run"
    done = _torchrun(["--method", method, "--epochs", "1", "-O", f"num_train={num_train}", *TINY, "--out", str(out)],
                     tmp_path / "cache", nproc=nproc)
    assert done.returncode == 0, done.stderr[-3000:]
    check_log(out, 1)  # every training sample seen in the epoch (the split test: exactly once)
    with RunLogReader(out) as log:
        assert log.status == "finished" and int(log.meta["world_size"]) == nproc


def test_sigterm_to_torchrun_stops_every_rank_and_resume_finishes(tmp_path: Path) -> None:
    cache, out = tmp_path / "cache", tmp_path / "run"
    cmd = [TORCHRUN, "--standalone", "--nproc-per-node=2", "-m", "relabscope", "train", "--method", "scn-c",
           "--epochs", "40", "-O", "num_train=48", *TINY, "--out", str(out)]
    job = subprocess.Popen(cmd, env=_env(cache), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           start_new_session=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and job.poll() is None and not (out / "checkpoints" / "last.pt").exists():
        time.sleep(0.3)
    assert job.poll() is None, job.stderr.read()[-3000:] if job.stderr else ""
    job.send_signal(signal.SIGTERM)  # what Slurm or a user's kill sends to the launcher
    _, stderr = job.communicate(timeout=120)
    assert job.returncode != 0
    stopped = [line for line in stderr.splitlines() if "stopped by SIGTERM" in line]
    assert {line.split(":")[1].strip() for line in stopped} == {"rank 0 of 2", "rank 1 of 2"}, stderr[-3000:]
    with RunLogReader(out) as log:
        assert log.status == "interrupted"
        committed = log.num_epochs
    assert committed >= 1
    resumed = _torchrun(["--resume", str(out), "--epochs", str(committed + 1), "-q"], cache)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    check_log(out, committed + 1)
    with RunLogReader(out) as log:
        assert log.status == "finished"


def test_resume_auto_starts_then_continues(tmp_path: Path) -> None:
    """The same command twice (a requeued job): it starts the run, then continues it."""
    cache, out = tmp_path / "cache", tmp_path / "run"
    args = ["--resume", "auto", "--method", "scn", "-O", "num_train=48", *TINY, "--out", str(out)]
    first = _torchrun([*args, "--epochs", "1"], cache)
    assert first.returncode == 0, first.stderr[-3000:]
    again = _torchrun([*args, "--epochs", "2"], cache)
    assert again.returncode == 0, again.stderr[-3000:]
    check_log(out, 2)
    changed = subprocess.run([sys.executable, "-m", "relabscope", "train", *args, "--epochs", "3", "--delta", "0.5"],
                             env=_env(cache), capture_output=True, text=True, timeout=300)
    assert changed.returncode != 0 and "cannot change delta when resuming" in changed.stderr


def test_an_unexpected_error_is_one_line_per_rank(monkeypatch) -> None:
    """Under torchrun any error, not only relabscope's own, is one line naming the rank (a
    traceback per rank buries the cause); --traceback (or RELABSCOPE_TRACEBACK=1) shows it."""
    from click.testing import CliRunner

    import relabscope.training.runner as runner
    from relabscope.cli import main

    def broken(*args, **kwargs):
        raise ValueError("Expected more than 1 value per channel when training\nsecond line")

    monkeypatch.setattr(runner, "train", broken)
    rank1 = {"WORLD_SIZE": "2", "RANK": "1"}
    done = CliRunner().invoke(main, ["train", "-q"], env=rank1)
    assert done.exit_code == 1 and done.output.strip().splitlines() == [
        "relabscope: rank 1 of 2: error: ValueError: Expected more than 1 value per channel when training "
        "(relabscope --traceback ... prints the traceback)"]
    shown = CliRunner().invoke(main, ["--traceback", "train", "-q"], env=rank1)
    assert isinstance(shown.exception, ValueError)
    alone = CliRunner().invoke(main, ["train", "-q"], env={"WORLD_SIZE": "1"})  # one process: the traceback
    assert isinstance(alone.exception, ValueError)
    known = CliRunner().invoke(main, ["train", "--resume", "auto", "-q"], env=rank1)
    assert known.output.strip() == ("relabscope: rank 1 of 2: error: --resume auto needs --out: the run directory "
                                    "to continue, or to start the run in")


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_one_process_stops_at_a_safe_point_on_a_signal(tmp_path: Path, sig: int, code: int) -> None:
    """Without torchrun too: the first SIGTERM or Ctrl-C stops after the current step, the log
    closes "interrupted" with its complete epochs, and the line says how to continue."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "relabscope", "train", "--method", "scn", "--epochs", "40", "-O", "num_train=48",
           *TINY, "--out", str(out)]
    job = subprocess.Popen(cmd, env=_env(tmp_path / "cache"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and job.poll() is None and not (out / "checkpoints" / "last.pt").exists():
        time.sleep(0.2)
    assert job.poll() is None, job.stderr.read()[-3000:] if job.stderr else ""
    job.send_signal(sig)
    _, stderr = job.communicate(timeout=120)
    assert job.returncode == code, stderr[-3000:]
    name = signal.Signals(sig).name
    assert f"stopped by {name}" in stderr and f"relabscope train --resume {out} continues" in stderr
    with RunLogReader(out) as log:
        assert log.status == "interrupted" and log.num_epochs >= 1
