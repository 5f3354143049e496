"""Training on several processes (GPUs, nodes) launched by torchrun, with one run log.

``relabscope train`` started by ``torchrun`` finds the world in the environment torchrun
sets (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``) and joins it: NCCL on CUDA, gloo on the
CPU. The experiment is the single-process one with the same ``--batch-size``, which is
the **global** batch:

- every rank draws the same global sample order for an epoch (seeded by ``(seed, epoch)``)
  and trains on its contiguous share of each global batch (``World.shard``); DDP averages
  the gradients, so one optimiser step per global batch, as in one process;
- the labels in effect are one global state: a rank relabels the samples it sees, and at
  the epoch's end every rank takes every other rank's relabels (each sample is seen once
  per epoch, so before it is seen again); relabel events keep the global step;
- center-loss centers move by the global batch's per-class sums and counts (an
  ``all_reduce`` in ``CenterLoss.update``), so they are identical on every rank;
- test and probe passes are sharded the same way;
- rank 0 writes the log: every other rank keeps host copies of its batch records
  (non-blocking device-to-host copies; no host sync in the training step) and sends them
  to rank 0 once per epoch, which logs them before it commits the epoch. Rank 0 writes the
  checkpoint; it holds the global state, so a run resumes with any world size.

What still differs from one process with the same global batch (docs/distributed.md
says why): batch-norm statistics are per rank's share (``--sync-bn`` pools them, except
for DMUE), SCN's rank regularisation and DMUE's pairwise similarities see the rank's
share, the last global batch is folded into the one before when it could not give every
rank two samples, and augmentation, dropout and RUL's partner draws use a stream per rank.
"""

from __future__ import annotations

import datetime as _dt
import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator, TypeVar

import numpy as np
import torch
import torch.distributed as dist

from relabscope.errors import RelabscopeError
from relabscope.methods import METHODS
from relabscope.training.hooks import BatchRecord, EpochSummary, Hook

T = TypeVar("T")

#: seconds a collective (and joining the world) may wait before the job fails
TIMEOUT_S = float(os.environ.get("RELABSCOPE_DIST_TIMEOUT", "600"))


@dataclass(frozen=True)
class World:
    """This process's place in the job: ``rank`` of ``size`` (1: not distributed)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def shard(self, batch: torch.Tensor) -> torch.Tensor:
        """This rank's contiguous share of a global batch (shares differ by at most one)."""
        if not self.distributed:
            return batch
        return torch.tensor_split(batch, self.size)[self.rank]

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` summed over the ranks, in place (no-op in one process)."""
        if self.distributed:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def all_reduce_min(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor``'s elementwise minimum over the ranks, in place (no-op in one process)."""
        if self.distributed:
            dist.all_reduce(tensor, op=dist.ReduceOp.MIN)
        return tensor

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def broadcast_buffers(self, module: torch.nn.Module) -> None:
        """Rank 0's buffers (batch-norm running statistics, centers) on every rank, in place."""
        if self.distributed:
            for buffer in module.buffers():
                dist.broadcast(buffer, src=0)

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if not self.distributed:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather_objects(self, obj: Any) -> list[Any] | None:
        """Every rank's ``obj`` on rank 0 (rank order), None elsewhere."""
        if not self.distributed:
            return [obj]
        out: list[Any] | None = [None] * self.size if self.is_main else None
        dist.gather_object(obj, out, dst=0)
        return out


SINGLE = World()


def merge_over_ranks(values: torch.Tensor, owned: torch.Tensor, world: World) -> torch.Tensor:
    """Per-sample state (first axis: training samples) merged over the ranks: each row from
    the one rank that ``owned`` it (``(N,)`` bool; exactly one rank owns each row: see
    ``relabscope.training.relabelling``). A sum over the ranks of "my rows, 0 elsewhere";
    returns a new tensor of ``values``' dtype (booleans summed as integers)."""
    summed = torch.int64 if values.dtype == torch.bool else values.dtype
    mask = owned.reshape(-1, *([1] * (values.dim() - 1)))
    mine = torch.where(mask, values.to(summed), torch.zeros((), dtype=summed, device=values.device))
    return world.all_reduce_sum(mine).to(values.dtype)


@contextmanager
def joined(device: str) -> Iterator[World]:
    """The world torchrun describes in the environment, joined for the ``with`` block
    (``init_process_group``, left at its end); :data:`SINGLE` when not launched by
    torchrun. A world already joined (a sweep's cells under one torchrun) is reused and left
    to whoever joined it. ``device`` is the run's ``--device``: ranks on CUDA take GPU
    ``LOCAL_RANK`` and talk over NCCL, on the CPU over gloo. One-line errors for a world
    that cannot work."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        yield SINGLE
        return
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if dist.is_initialized():
        yield World(rank, size, local)
        return
    cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    backend = os.environ.get("RELABSCOPE_DIST_BACKEND") or ("nccl" if cuda else "gloo")
    if backend == "nccl" and not cuda:
        raise RelabscopeError("torchrun: the nccl backend needs CUDA (--device cpu trains over gloo)")
    if cuda:
        if local >= torch.cuda.device_count():
            raise RelabscopeError(f"torchrun: local rank {local} but only {torch.cuda.device_count()} CUDA devices "
                                  "on this node (--nproc-per-node at most the GPU count)")
        torch.cuda.set_device(local)
    try:
        dist.init_process_group(backend, timeout=_dt.timedelta(seconds=TIMEOUT_S))
    except Exception as exc:  # rendezvous or transport failure
        raise RelabscopeError(f"torchrun: rank {rank} could not join the job ({type(exc).__name__}: "
                              f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''})") from None
    try:
        yield World(rank, size, local)
    finally:
        dist.destroy_process_group()


def on_main(world: World, make: Callable[[], T]) -> T:
    """``make()`` on rank 0 alone, its (small, picklable) result on every rank: claiming the
    run directory, a sweep's decision about a cell. A RelabscopeError there is raised on
    every rank (the same class and line)."""
    if not world.distributed:
        return make()
    outcome: tuple[bool, Any] = (True, None)
    if world.is_main:
        try:
            outcome = (True, make())
        except RelabscopeError as exc:
            outcome = (False, exc)
    ok, value = world.broadcast_object(outcome)
    if not ok:
        raise value
    result: T = value
    return result


def main_first(world: World, make: Callable[[], T]) -> T:
    """``make()`` on rank 0, then on every other rank: rank 0 draws or caches the data set
    alone, the others read its cache. A RelabscopeError on rank 0 is raised on every rank."""
    if not world.distributed:
        return make()
    result: T | None = None
    failure: RelabscopeError | None = None
    if world.is_main:
        try:
            result = make()
        except RelabscopeError as exc:
            failure = exc
    failure = world.broadcast_object(failure)
    if failure is not None:
        raise failure
    if not world.is_main:
        result = make()
    assert result is not None
    return result


def check_sync_bn(world: World, sync_bn: bool, device: torch.device, method: str) -> None:
    """SyncBatchNorm pools statistics over NCCL (CUDA only), and only for methods whose
    every batch-norm call runs on every rank's whole share (the registry's ``sync_bn``:
    DMUE's auxiliary branch c sees the samples not labelled c, so pooled statistics would
    pair different branches across ranks, or wait for a rank that has none)."""
    if not (sync_bn and world.distributed):
        return
    if device.type != "cuda":
        raise RelabscopeError("--sync-bn needs CUDA ranks (torch's SyncBatchNorm); on the CPU each rank keeps its "
                              "own batch statistics")
    if not METHODS[method].sync_bn:
        raise RelabscopeError(f"--sync-bn cannot train {method}: its auxiliary branches normalise a different part "
                              "of each rank's batch, so pooled statistics would mix branches or hang; train it "
                              "without --sync-bn (each rank keeps its own batch statistics)")


def check_batch(world: World, batch_size: int) -> None:
    """Every rank's share must hold two samples (batch normalisation trains on no fewer)."""
    if world.distributed and batch_size < 2 * world.size:
        raise RelabscopeError(f"batch_size {batch_size} is the global batch: with {world.size} ranks it must be at "
                              f"least {2 * world.size} (two samples per rank)")


def check_train_size(world: World, num_train: int) -> None:
    """Every rank needs two training samples of an epoch (the last batch folds to give them)."""
    if world.distributed and num_train < 2 * world.size:
        raise RelabscopeError(f"{num_train} training samples cannot give each of {world.size} ranks two; "
                              "train on fewer ranks or more data")


# ---------------------------------------------------------------------- the records
#: what a rank sends of a batch record, by name: dtype on the wire (None: as is)
_WIRE = {"sample_ids": torch.int64, "labels": torch.int64, "logits": torch.float32, "embeddings": torch.float16,
         "loss": torch.float32, "new_labels": torch.int64}


class RecordSender(Hook):
    """On a rank other than 0: keeps host copies of the epoch's batch records and sends
    them to rank 0 at the epoch's end (``gather_objects``; rank 0's ``RunLogHook`` takes
    them). Copies start non-blocking into pinned memory, so the training step does not
    wait; they are complete by the epoch's end."""

    def __init__(self, world: World):
        self.world = world
        self.records: list[tuple[dict[str, Any], Any]] = []

    def on_batch_end(self, record: BatchRecord) -> None:
        arrays: dict[str, Any] = {"phase": record.phase, "step": record.step}
        event = None
        for name, dtype in _WIRE.items():
            value = getattr(record, name)
            if value is not None:
                arrays[name] = _to_host(value.detach().to(dtype))
        arrays["fields"] = {k: _to_host(v.detach().float()) for k, v in record.fields.items()}
        if record.logits.is_cuda:
            event = torch.cuda.Event()
            event.record()
        self.records.append((arrays, event))

    def on_epoch_end(self, summary: EpochSummary) -> None:
        self.world.gather_objects([_numpy(arrays, event) for arrays, event in self.records])
        self.records = []


def received_records(world: World) -> list[dict[str, Any]]:
    """On rank 0, at an epoch's end: every other rank's records of the epoch (rank order)."""
    gathered = world.gather_objects([])
    return [record for records in (gathered or [])[1:] for record in records]


def record_bytes(records: list[dict[str, Any]]) -> int:
    """Bytes of the arrays in ``records`` (what the gather moved, before pickling)."""
    total = 0
    for r in records:
        for value in (*r.values(), *r.get("fields", {}).values()):
            if isinstance(value, np.ndarray):
                total += value.nbytes
    return total


def _to_host(t: torch.Tensor) -> torch.Tensor:
    return t.to("cpu", non_blocking=True) if t.is_cuda else t.clone()


def _numpy(arrays: dict[str, Any], event: Any) -> dict[str, Any]:
    if event is not None:
        event.synchronize()
    out = {k: (v.numpy() if isinstance(v, torch.Tensor) else v) for k, v in arrays.items() if k != "fields"}
    out["fields"] = {k: v.numpy() for k, v in arrays["fields"].items()}
    return out
