"""Training on several ranks (gloo on the CPU): one global label state, identical centers,
one complete run log written by rank 0; launched as users do, with torchrun (one node, two
"nodes" on 127.0.0.1); resumed with another world size; a rank killed mid-run."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from relabscope.methods import METHODS
from relabscope.runlog.reader import RunLogReader

TORCHRUN = str(Path(sys.executable).with_name("torchrun"))
TINY = ["-O", "num_train=48", "-O", "num_test=16", "-O", "size=16", "--image-size", "16", "--batch-size", "12",
        "--workers", "0", "--device", "cpu", "--noise", "0.3", "--relabel-epoch", "1", "--delta", "0.05", "-q"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(cache: Path) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "RELABSCOPE_CACHE": str(cache), "RELABSCOPE_DIST_TIMEOUT": "120"}


def _torchrun(args: list[str], cache: Path, nproc: int = 2, timeout: float = 300) -> subprocess.CompletedProcess:
    cmd = [TORCHRUN, "--standalone", f"--nproc-per-node={nproc}", "-m", "relabscope", "train", *args]
    return subprocess.run(cmd, env=_env(cache), capture_output=True, text=True, timeout=timeout)


def check_log(run_dir: Path, epochs: int) -> None:
    """A complete log of a run trained on several ranks: every training sample seen in every
    epoch, the labels of epoch e+1 are those of epoch e with epoch e's relabels applied, the
    events in time order, and every test sample predicted."""
    with h5py.File(run_dir / "run.h5", "r") as f:
        assert f["epochs/done"].shape[0] == epochs
        train = f["samples/split"][:] == 0
        labels = f["epochs/label"][:].astype(np.int64)
        pred = f["epochs/pred"][:]
        events = f["relabels"][:]
        ends = f["epochs/relabel_end"][:]
    assert (labels[:, train] >= 0).all(), "a training sample was not seen in some epoch"
    assert (pred[:, ~train] >= 0).all(), "a test sample was not predicted"
    start = 0
    for e in range(epochs - 1):
        after = labels[e].copy()
        for ev in events[start:ends[e]]:
            assert ev["epoch"] == e and after[ev["sample"]] == ev["old"]
            after[ev["sample"]] = ev["new"]
        np.testing.assert_array_equal(labels[e + 1], after)
        assert (np.diff(events[start:ends[e]]["step"]) >= 0).all()
        start = ends[e]


# ---------------------------------------------------------------------- in-process ranks
def tiny_trainer(world, method: str, epochs: int, run_dir: Path, cache: str, patch=None):
    """A Trainer of ``method`` on 48 tiny synthetic images with the run log's hooks (rank 0
    writes, the others send), built directly (no torchrun); ``patch(method)`` may change the
    method first."""
    os.environ["RELABSCOPE_CACHE"] = cache
    torch.set_num_threads(1)
    from relabscope.config import resolve
    from relabscope.data.pipeline import load_images, prepare
    from relabscope.methods import build_method
    from relabscope.training.distributed import RecordSender
    from relabscope.training.log_hook import RunLogHook
    from relabscope.training.loop import Trainer

    cfg = resolve({"method": method, "epochs": epochs, "batch_size": 12, "image_size": 16, "workers": 0,
                   "device": "cpu", "noise": 0.3, "relabel_epoch": 1, "delta": 0.05,
                   "dataset_options": {"num_train": 48, "num_test": 16, "size": 16}})
    device = torch.device("cpu")
    data, train_b, test_b = load_images(prepare(cfg), device, 0, cfg.cache_gb, lambda line: None)
    torch.manual_seed(cfg.seed)
    model = build_method(cfg.method, len(data.class_names), cfg)
    if patch is not None:
        patch(model)
    hooks = [RunLogHook(world)] if world.is_main else [RecordSender(world)]
    return Trainer(cfg, data, train_b, test_b, model, device, hooks, run_dir, {}, world=world)


def _rank(rank: int, size: int, port: int, out: str, cache: str) -> None:
    """One rank of a Trainer run built directly (no torchrun): its final centers, labels
    and model state go to ``out``/rank<r>.pt."""
    import torch.distributed as dist

    from relabscope.training.distributed import World

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=size)
    try:
        trainer = tiny_trainer(World(rank, size, rank), "scn-c", 3, Path(out) / "run", cache)
        trainer.fit()
        method = trainer.method
        assert method.center is not None
        torch.save({"centers": method.center.centers, "labels": trainer.labels.current,
                    "state": method.state_dict()}, Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_two_ranks_share_one_label_state_and_identical_centers(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    mp.spawn(_rank, args=(2, _free_port(), str(tmp_path), str(cache)), nprocs=2, join=True)
    a, b = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    torch.testing.assert_close(a["centers"], b["centers"], rtol=0, atol=0)
    torch.testing.assert_close(a["labels"], b["labels"], rtol=0, atol=0)
    # one model on every rank: parameters by DDP, buffers (running statistics) broadcast from rank 0
    assert a["state"].keys() == b["state"].keys()
    for name, value in a["state"].items():
        torch.testing.assert_close(b["state"][name], value, rtol=0, atol=0, msg=name)
    check_log(tmp_path / "run", 3)
    with RunLogReader(tmp_path / "run") as log:
        np.testing.assert_allclose(log.epoch_array("center", -1), a["centers"].numpy(), rtol=1e-6)
        final = log.epoch_array("label", -1).astype(np.int64)
    assert len(np.unique(final)) > 1


# ---------------------------------------------------------------------- torchrun
@pytest.mark.parametrize("method", [m for m, entry in METHODS.items() if entry.with_center])
def test_torchrun_two_ranks_write_one_complete_log(tmp_path: Path, method: str) -> None:
    out = tmp_path / "run"
    done = _torchrun(["--method", method, "--epochs", "2", *TINY, "--out", str(out)], tmp_path / "cache")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("finished: 2 epochs") == 1  # rank 0 speaks for the job
    check_log(out, 2)
    with RunLogReader(out) as log:
        assert log.status == "finished" and int(log.meta["world_size"]) == 2


def test_two_nodes_on_one_machine(tmp_path: Path) -> None:
    """The multi-node launch (c10d rendezvous), two torchrun agents on 127.0.0.1."""
    out, port = tmp_path / "run", _free_port()
    common = ["--nnodes=2", "--nproc-per-node=1", "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}",
              "--rdzv-id=relabscope-test", "-m", "relabscope", "train", "--method", "scn-c", "--epochs", "1", *TINY,
              "--out", str(out)]
    agents = [subprocess.Popen([TORCHRUN, f"--node-rank={r}", *common], env=_env(tmp_path / "cache"),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in (0, 1)]
    codes = [a.wait(timeout=300) for a in agents]
    assert codes == [0, 0], [a.stderr.read()[-2000:] for a in agents]
    check_log(out, 1)


def test_resume_with_another_world_size(tmp_path: Path) -> None:
    cache, out = tmp_path / "cache", tmp_path / "run"
    first = _torchrun(["--method", "scn-c", "--epochs", "1", *TINY, "--out", str(out)], cache)
    assert first.returncode == 0, first.stderr[-3000:]
    alone = subprocess.run([sys.executable, "-m", "relabscope", "train", "--resume", str(out), "--epochs", "2", "-q"],
                           env=_env(cache), capture_output=True, text=True, timeout=300)  # 2 ranks -> 1
    assert alone.returncode == 0, alone.stderr[-3000:]
    again = _torchrun(["--resume", str(out), "--epochs", "3", "-q"], cache)  # 1 -> 2
    assert again.returncode == 0, again.stderr[-3000:]
    check_log(out, 3)
    with RunLogReader(out) as log:
        assert log.status == "finished"


def test_a_killed_rank_brings_the_job_down_and_the_run_resumes(tmp_path: Path) -> None:
    cache, out = tmp_path / "cache", tmp_path / "run"
    cmd = [TORCHRUN, "--standalone", "--nproc-per-node=2", "-m", "relabscope", "train", "--method", "scn-c",
           "--epochs", "30", *TINY, "--out", str(out)]
    job = subprocess.Popen(cmd, env=_env(cache), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           start_new_session=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and job.poll() is None:
        if (out / "checkpoints" / "last.pt").exists():
            break
        time.sleep(0.5)
    assert job.poll() is None, job.stderr.read()[-3000:] if job.stderr else ""
    ranks = subprocess.run(["pgrep", "-f", "-P", str(job.pid), "relabscope"], capture_output=True, text=True)
    pids = [int(p) for p in ranks.stdout.split()]
    assert len(pids) == 2, ranks.stdout
    os.kill(max(pids), signal.SIGKILL)  # the rank started last: rank 1
    assert job.wait(timeout=120) != 0  # torchrun takes the job down
    with RunLogReader(out) as log:  # opens (SWMR) and holds the committed epochs
        committed = log.num_epochs
    assert committed >= 1
    resumed = _torchrun(["--resume", str(out), "--epochs", str(committed + 1), "-q"], cache)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    check_log(out, committed + 1)


@pytest.mark.parametrize("args, env, message", [
    (["--batch-size", "3"], {}, "batch_size 3 is the global batch: with 2 ranks it must be at least 4"),
    ([], {"RELABSCOPE_DIST_BACKEND": "nccl"}, "the nccl backend needs CUDA"),
    (["--sync-bn"], {}, "--sync-bn needs CUDA ranks"),
])
def test_bad_combinations_are_one_line(tmp_path: Path, args, env, message) -> None:
    cmd = [TORCHRUN, "--standalone", "--nproc-per-node=2", "-m", "relabscope", "train", "--method", "scn-c",
           "--epochs", "1", *TINY, *args, "--out", str(tmp_path / "run")]
    done = subprocess.run(cmd, env={**_env(tmp_path / "cache"), **env}, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    # a line per rank that got to say it (torchrun stops the others once one rank fails)
    errors = [line for line in done.stderr.splitlines() if line.startswith("relabscope: rank")]
    assert errors and all(": error: " in line and message in line for line in errors), done.stderr[-2000:]
    assert all(line.split(":")[1].strip() in ("rank 0 of 2", "rank 1 of 2") for line in errors)


SWEEP = ["--methods", "scn-c,baseline-c", "--noise", "0.3", "--seeds", "1", "--epochs", "1", *TINY]


def test_a_sweep_under_torchrun_spreads_every_run_over_the_ranks(tmp_path: Path) -> None:
    cmd = [TORCHRUN, "--standalone", "--nproc-per-node=2", "-m", "relabscope", "sweep", *SWEEP,
           "--out", str(tmp_path / "sweep")]
    done = subprocess.run(cmd, env=_env(tmp_path / "cache"), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("Test accuracy (%)") == 1  # rank 0 prints the table
    for method in ("scn-c", "baseline-c"):
        run = tmp_path / "sweep" / method / "noise-30" / "seed-0"
        check_log(run, 1)
        with RunLogReader(run) as log:
            assert int(log.meta["world_size"]) == 2


def test_a_sweep_with_one_process_per_gpu_shares_the_grid(tmp_path: Path) -> None:
    """--gpus 0,1 starts one sweep process per GPU; on a CPU machine they train on the CPU,
    one cell each (the grid's locks), and the parent prints the table once."""
    cmd = [sys.executable, "-m", "relabscope", "sweep", *SWEEP, "--gpus", "0,1", "--out", str(tmp_path / "sweep")]
    done = subprocess.run(cmd, env=_env(tmp_path / "cache"), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("Test accuracy (%)") == 1
    for method in ("scn-c", "baseline-c"):
        check_log(tmp_path / "sweep" / method / "noise-30" / "seed-0", 1)
