"""The training loop: one loop for every method.

Per epoch: a training pass (augment on the device, method step, optimiser step, center
update, relabelling into the label state through the relabel guards), a test pass,
optionally a probe pass (the training images in eval mode, without augmentation), then the
epoch's end. Every pass emits batch records to the hooks; nothing here writes files except
checkpoints.

What the loop guarantees:

- **No per-step host syncs.** Running numbers (loss, accuracy, relabels, non-finite
  losses) accumulate in device tensors and are read at most twice a second.
- **Exact resume.** Shuffling, augmentation and the global generators are re-seeded from
  ``(seed, epoch)`` at each epoch start, and the checkpoint holds everything else, so a run
  interrupted after epoch e and resumed replays epochs e+1.. exactly (on the CPU).
- **Order of completion.** An epoch counts as complete only after the hooks' commits
  (the run log) and then the checkpoint are on disk; both happen in a background thread
  while the next epoch trains.
- **Divergence.** A non-finite loss stops training; the last good checkpoint and the
  committed epochs of the log stay as they were.
- **Stopping.** SIGTERM or Ctrl-C stops training at the next safe point (``stopping``);
  the run ends "interrupted" with its complete epochs on disk.
- **Under torchrun**, every rank reaches the same checks at the same step (every
  ``AGREE_EVERY`` steps and at the end of each pass) and they agree through one small
  all-reduce, so a NaN or a signal on one rank stops every rank at once; the last global
  batch is folded so that each rank's share holds two samples; each rank's loss is
  weighted by its share, so the averaged gradient is the global batch's; batch-norm
  buffers are broadcast from rank 0 before evaluating, so every rank evaluates the model
  that is saved; dropout and other global draws use a stream per rank.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext, suppress
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from relabscope.config import TrainConfig
from relabscope.data.augment import eval_transform, train_transform
from relabscope.data.pipeline import ImageBatches, PreparedData, split_batches
from relabscope.errors import DivergedError, StoppedError, WriteError
from relabscope.methods import METHODS
from relabscope.methods.base import Method, StepOutput
from relabscope.rundir import checkpoint_path
from relabscope.training import checkpoint
from relabscope.training.distributed import SINGLE, World
from relabscope.training.guards import Proposal
from relabscope.training.hooks import BatchRecord, EpochSummary, Hook, HookList, RunInfo, RunResult
from relabscope.training.optim import build_optimizer, build_scheduler
from relabscope.training.relabelling import Relabelling
from relabscope.training.stopping import StopSignals

PROGRESS_INTERVAL_S = 0.5
#: under torchrun, training steps between two agreed checks (NaN, stop signal): one
#: all-reduce of world-size + 1 numbers and a host sync each
AGREE_EVERY = 20
#: random streams of an epoch
SHUFFLE, AUGMENT, GLOBAL = 0, 1, 2


def epoch_seed(seed: int, epoch: int, stream: int, rank: int = 0) -> int:
    """A seed for one random stream of one epoch (and rank), independent of what ran
    before; rank 0's is the single-process one.

    >>> epoch_seed(0, 3, GLOBAL) == epoch_seed(0, 3, GLOBAL, rank=0) != epoch_seed(0, 3, GLOBAL, rank=1)
    True
    """
    key = [seed, epoch, stream] if rank == 0 else [seed, epoch, stream, rank]
    return int(np.random.SeedSequence(key).generate_state(1)[0])


def seed_globals(seed: int, epoch: int, rank: int = 0) -> None:
    """Seed torch's global generators (CPU and every CUDA device) for an epoch on a rank:
    dropout masks and RUL's partner permutation differ between ranks and repeat on resume."""
    torch.manual_seed(epoch_seed(seed, epoch, GLOBAL, rank))


def share_weights(batches: list[torch.Tensor], shares: list[torch.Tensor], world_size: int) -> list[float]:
    """Per global batch, the factor on this rank's loss (a mean over its share) that makes
    DDP's average of the ranks' gradients the gradient of the global batch's mean loss:
    world size x share / batch. 1.0 in one process and for equal shares.

    >>> share_weights([torch.arange(7)], [torch.arange(3)], 3)
    [1.2857142857142858]
    """
    return [world_size * len(share) / len(batch) for batch, share in zip(batches, shares)]


class _Running:
    """Running sums of one pass, kept on the device and read on the host only when asked
    (a Python scalar sent to a CUDA tensor would sync the stream, so counts stay host-side)."""

    def __init__(self, device: torch.device):
        self.sums = torch.zeros(4, dtype=torch.float64, device=device)  # loss, correct, relabels, non-finite
        self.seen = 0

    def add(self, loss: torch.Tensor, correct: torch.Tensor, relabels: torch.Tensor | None) -> None:
        finite = torch.isfinite(loss)
        parts = [
            torch.where(finite, loss, torch.zeros_like(loss)).sum(),
            correct.sum(),
            relabels.sum() if relabels is not None else loss.new_zeros(()),
            (~finite).sum(),
        ]
        self.sums += torch.stack([p.double() for p in parts])
        self.seen += loss.shape[0]

    def reduce(self, world: World) -> None:
        """Sum the running numbers over the ranks (once per pass, at its end)."""
        if world.distributed:
            seen = torch.tensor([float(self.seen)], dtype=torch.float64, device=self.sums.device)
            both = world.all_reduce_sum(torch.cat([self.sums, seen]))
            self.sums, self.seen = both[:4], int(both[4].item())

    def read(self) -> dict[str, float]:
        loss, correct, relabels, bad = self.sums.tolist()
        seen = max(self.seen, 1)
        return {"loss": loss / seen, "acc": correct / seen, "relabels": int(relabels), "nonfinite": int(bad)}


class EpochFinisher:
    """Completes epochs in order in one background thread: an epoch's hook futures (the run
    log's commit), then its checkpoint, then ``on_epoch_complete``. So the log never lags
    behind the checkpoint, and an epoch counts as complete only once both are on disk.

    At most one epoch is in flight: ``submit`` first waits for the one before, so the next
    epoch trains while the last is written, and a failed write stops training one epoch
    later at the most. Leaving a ``with`` block settles the epoch in flight and stops the
    thread, whatever ended the block; ``completed`` is final after it.
    """

    def __init__(self, checkpoint_path: Path | None, hooks: HookList, completed: int):
        self.checkpoint_path = checkpoint_path  # None: another rank writes the checkpoint
        self.hooks = hooks
        self.completed = completed  # epochs whose log, checkpoint and on_epoch_complete are done
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="relabscope-epoch")
        self._pending: Future | None = None

    def __enter__(self) -> EpochFinisher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def submit(self, epoch: int, futures: list[Future], snapshot: dict[str, Any] | None,
               metrics: dict[str, float]) -> None:
        """Complete ``epoch`` in the background once the epoch before it is complete;
        raises that epoch's error. ``snapshot`` is a CPU copy later steps cannot change
        (None where another rank writes the checkpoint)."""
        self.wait()
        self._pending = self._pool.submit(self._complete, epoch, futures, snapshot, metrics)

    def wait(self) -> int:
        """Wait for the epoch in flight and return the completed epochs; raises the
        epoch's error (a WriteError, or Ctrl-C inside a hook), which then counts as settled."""
        pending, self._pending = self._pending, None
        if pending is not None:
            self.completed = pending.result() + 1
        return self.completed

    def close(self) -> int:
        """Settle the epoch in flight without raising, stop the thread, return the completed
        epochs. Only another error ends a run with an epoch still in flight, and that
        error is the one to report; the failed epoch just does not count."""
        with suppress(BaseException):  # incl. Ctrl-C inside a hook: the hooks must still get on_run_end
            self.wait()
        self._pool.shutdown(wait=True)
        return self.completed

    def _complete(self, epoch: int, futures: list[Future], snapshot: dict[str, Any] | None,
                  metrics: dict[str, float]) -> int:
        """Runs in the background thread; returns ``epoch`` once it is complete."""
        for f in futures:
            f.result()
        if self.checkpoint_path is not None and snapshot is not None:
            checkpoint.save(snapshot, self.checkpoint_path)
        self.hooks.on_epoch_complete(epoch, metrics)
        return epoch


class Trainer:
    """Trains one method on prepared data and tells hooks about it."""

    def __init__(
        self,
        cfg: TrainConfig,
        data: PreparedData,
        train_batches: ImageBatches,
        test_batches: ImageBatches,
        method: Method,
        device: torch.device,
        hooks: list[Hook],
        run_dir: Path,
        metadata: dict[str, Any] | None = None,
        world: World = SINGLE,
    ):
        self.cfg = cfg
        self.world = world
        #: the registry's word on the method (whether it relabels, DDP's unused parameters)
        self.entry = METHODS[cfg.method]
        self.data = data
        self.train_batches = train_batches
        self.test_batches = test_batches
        self.device = device
        if cfg.sync_bn and world.distributed:  # modules replaced in place, parameters kept
            method = nn.SyncBatchNorm.convert_sync_batchnorm(method)
        # two calls: torch's stubs type memory_format only alone (the runtime takes both at once)
        self.method = method.to(device).to(memory_format=torch.channels_last)
        self.step_model = self._step_model(method)
        self.hooks = HookList(hooks)
        self.run_dir = Path(run_dir)
        self.metadata = dict(metadata or {})
        self.opt = build_optimizer(method, cfg)
        self.sched = build_scheduler(self.opt, cfg)
        given = torch.as_tensor(np.asarray(data.train.labels), dtype=torch.long, device=device)
        self.labels = Relabelling(given, len(data.class_names), cfg if self.entry.relabels else None,
                                  method.embed_dim)
        self.test_labels = torch.as_tensor(data.test.labels, device=device)
        self.epoch = 0  # the next epoch to run
        self.step = 0  # training batches so far
        self._stop = StopSignals()  # installed while fit runs
        use_amp = cfg.amp and device.type == "cuda"
        self._autocast = (
            (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if use_amp else nullcontext
        )

    def _step_model(self, method: Method) -> nn.Module:
        """What a training step calls: the method, or under torchrun the method in DDP
        (gradients averaged over the ranks; parameters some batches leave unused, as DMUE's
        branches, allowed where the method says so), its centers reduced over the global
        batch."""
        if not self.world.distributed:
            return method
        if method.center is not None:
            method.center.reduce = self.world.all_reduce_sum
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(method, device_ids=ids, find_unused_parameters=self.entry.unused_parameters)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs. After the last epoch, with ``keep_optimizer`` off,
        no optimiser or scheduler state: Adam's two moments are twice the model's size
        (a finished DMUE run's checkpoint drops from 840 to 280 MB), and only extending a
        finished run needs them."""
        state = {
            "epoch": self.epoch,
            "step": self.step,
            "model": self.method.state_dict(),
            **self.labels.state_dict(),  # "labels" and, with guards, "guards"
            "rng": checkpoint.rng_state(),
            "config": self.cfg.to_dict(),
            "fingerprint": self.data.fingerprint,
            "samples": self.data.samples_fingerprint(),
        }
        if self.cfg.keep_optimizer or self.epoch < self.cfg.epochs:
            state["optimizer"], state["scheduler"] = self.opt.state_dict(), self.sched.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a checkpoint; one without optimiser state (a finished run's, see
        ``state_dict``) leaves the fresh optimiser as it is."""
        self.method.load_state_dict(state["model"])
        if "optimizer" in state:
            self.opt.load_state_dict(state["optimizer"])
            self.sched.load_state_dict(state["scheduler"])
        self.labels.load_state_dict(state)
        checkpoint.set_rng_state(state["rng"])
        self.epoch = int(state["epoch"])
        self.step = int(state["step"])

    # ------------------------------------------------------------------ the loop
    def fit(self) -> RunResult:
        """Run epochs ``self.epoch .. cfg.epochs - 1``; returns how the run ended.

        However the run ends, the epoch being completed in the background is settled first
        (leaving the ``with`` block), so the error message and ``on_run_end`` count only
        epochs whose log and checkpoint are on disk.
        """
        start = time.perf_counter()
        self.hooks.on_run_start(self._run_info())
        finisher = EpochFinisher(checkpoint_path(self.run_dir) if self.world.is_main else None, self.hooks,
                                 completed=self.epoch)
        status, last = "interrupted", {}
        self._stop = StopSignals()
        try:
            with self._stop, finisher:
                while self.epoch < self.cfg.epochs:
                    last = self._next_epoch(finisher)
                finisher.wait()
            status = "finished"
        except (DivergedError, WriteError, StoppedError) as exc:
            if isinstance(exc, DivergedError):
                status = "diverged"
            failure = type(exc)(f"{exc}; {self._what_is_kept(exc, finisher.completed)}")
            failure.exit_code = exc.exit_code
            raise failure from None
        finally:  # Ctrl-C and unexpected errors too: the hooks must still close the log
            result = RunResult(self.run_dir, status, finisher.completed, last, time.perf_counter() - start)
            self.hooks.on_run_end(result)
        return result

    def _run_info(self) -> RunInfo:
        steps = len(self._global_batches(torch.arange(len(self.train_batches))))
        return RunInfo(
            self.cfg, self.run_dir, self.data.class_names, self.data.sample_table(), self.method,
            self.device, self.epoch, steps, self.metadata, self.data.skipped,
            self.labels.guards.names if self.labels.guards is not None else (),
        )

    def _next_epoch(self, finisher: EpochFinisher) -> dict[str, float]:
        """Train epoch ``self.epoch`` and hand its completion to ``finisher``; returns its metrics."""
        cfg, epoch = self.cfg, self.epoch
        t0 = time.perf_counter()
        metrics = self._run_epoch(epoch)
        metrics["seconds"] = time.perf_counter() - t0
        vetoed = self.labels.vetoed
        if vetoed is not None:  # the epoch's count over every rank (end_epoch summed it)
            metrics["vetoed"] = int(vetoed.sum())
        self.sched.step()
        self.epoch += 1
        save_emb = (epoch + 1) % cfg.embed_every == 0 or epoch == cfg.epochs - 1
        summary = EpochSummary(epoch, metrics, self.method.epoch_arrays(), save_emb, self._unreadable(), vetoed)
        futures = self.hooks.epoch_end(summary)
        snapshot = checkpoint.to_cpu(self.state_dict()) if self.world.is_main else None  # rank 0 saves it
        finisher.submit(epoch, futures, snapshot, metrics)
        return metrics

    def _unreadable(self) -> int:
        """Images that could not be read in this epoch's training pass, over every rank."""
        count = self.train_batches.unreadable
        if not self.world.distributed:
            return count
        return int(self.world.all_reduce_sum(torch.tensor([count], dtype=torch.int64, device=self.device)).item())

    def _what_is_kept(self, exc: DivergedError | WriteError | StoppedError, completed: int) -> str:
        """The end of a stopped run's error line: which epoch its files keep, and what next."""
        if isinstance(exc, StoppedError):
            return (f"the log and {checkpoint_path(self.run_dir)} keep {completed} complete epochs: "
                    f"relabscope train --resume {self.run_dir} continues" if completed
                    else "no epoch had completed, so the run starts over when resumed")
        if isinstance(exc, DivergedError):
            return (f"the log and {checkpoint_path(self.run_dir)} keep the last good epoch ({completed} complete)"
                    if completed else "no epoch had completed, so there is no checkpoint")
        return (f"the last checkpoint written is after epoch {completed}: resume the run "
                "(relabscope train --resume) once the problem is fixed" if completed
                else "no epoch had been checkpointed yet")

    def _run_epoch(self, epoch: int) -> dict[str, float]:
        cfg = self.cfg
        seed_globals(cfg.seed, epoch, self.world.rank)
        train = self._train_pass(epoch)
        if self.world.distributed:  # every rank evaluates (and rank 0 saves) rank 0's running statistics
            self.world.broadcast_buffers(self.method)
        test = self._eval_pass(epoch, "test", self.test_batches)
        if cfg.probe_every and (epoch + 1) % cfg.probe_every == 0:
            self._eval_pass(epoch, "probe", self.train_batches)
        metrics = {
            "epoch": epoch,
            "train_loss": train["loss"],
            "train_acc": train["acc"],
            "relabels": train["relabels"],
            "test_acc": test["acc"],
            "lr": self.opt.param_groups[0]["lr"],
        }
        return metrics

    def _global_batches(self, order: torch.Tensor) -> list[torch.Tensor]:
        """An epoch's global batches; the last one folded into the one before when it could
        not give every rank two samples (every sample still trains once)."""
        return split_batches(order, self.cfg.batch_size, min_last=2 * self.world.size)

    def _train_pass(self, epoch: int) -> dict[str, float]:
        cfg, method, world = self.cfg, self.method, self.world
        method.train()
        n = len(self.train_batches)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(epoch_seed(cfg.seed, epoch, SHUFFLE)))
        gen = torch.Generator(device=self.device).manual_seed(epoch_seed(cfg.seed, epoch, AUGMENT, world.rank))
        relabelling = self.entry.relabels and epoch + 1 >= cfg.relabel_epoch
        self.labels.start_epoch(world)
        running = _Running(self.device)
        batches = self._global_batches(order)
        shares = [world.shard(g) for g in batches]
        weights = share_weights(batches, shares, world.size)
        total = len(shares)
        next_report = time.monotonic() + PROGRESS_INTERVAL_S
        for i, (images, ids) in enumerate(self.train_batches.batches_of(shares)):
            labels = self.labels[ids]
            out = self._step(train_transform(images, cfg.image_size, gen), labels, epoch, weights[i])
            self.labels.observe(ids, labels, out.embedding.detach())
            new_labels = proposed = None
            if relabelling:
                proposed = method.relabel(out, labels, epoch)
                new_labels = self.labels.apply(Proposal(ids, labels, proposed, out.logits.detach(),
                                                        out.embedding.detach()))
            pred = out.logits.detach().argmax(dim=1)
            running.add(out.sample_loss.detach(), pred == labels,
                        None if new_labels is None else new_labels != labels)
            record = BatchRecord("train", epoch, self.step, ids, labels, out.logits.detach(),
                                 out.embedding.detach(), out.sample_loss.detach(),
                                 {k: v.detach() for k, v in out.fields.items()}, new_labels, proposed)
            self.hooks.on_batch_end(record)
            if new_labels is not None:
                self.hooks.on_relabel(record)
            self.step += 1
            if world.distributed and (i + 1) % AGREE_EVERY == 0:
                self._agreement(epoch, running)
            elif not world.distributed and self._stop.requested:
                raise self._stop_error(epoch)
            if time.monotonic() >= next_report:
                self._report(epoch, i + 1, total, running)
                next_report = time.monotonic() + PROGRESS_INTERVAL_S
        self._agreement(epoch, running)
        self.labels.end_epoch(world)  # every rank takes the others' relabels, guard state and vetoes
        if world.distributed:
            running.reduce(world)
        return self._report(epoch, total, total, running)

    def _step(self, x: torch.Tensor, labels: torch.Tensor, epoch: int, weight: float = 1.0) -> StepOutput:
        """One optimiser step on this rank's share of a global batch. Under torchrun DDP
        averages the ranks' gradients, so the loss is scaled by ``weight``
        (:func:`share_weights`) and the average is the global batch's gradient."""
        with self._autocast():
            out: StepOutput = self.step_model(x, labels, epoch)
        self.opt.zero_grad(set_to_none=True)
        (out.loss * weight if weight != 1.0 else out.loss).backward()
        self.opt.step()
        self.method.after_step(out, labels)
        return out

    def _report(self, epoch: int, done: int, total: int, running: _Running) -> dict[str, float]:
        """Tell the hooks how far the pass is (a host sync, twice a second at most). In one
        process a non-finite loss stops the run here; under torchrun only an agreed check
        may (a rank that stopped alone would leave the others waiting in a collective)."""
        stats = running.read()
        if not self.world.distributed and stats["nonfinite"]:
            raise self._diverged(epoch, [self.world.rank])
        self.hooks.on_progress(epoch, done, total, stats)
        return stats

    def _agreement(self, epoch: int, running: _Running) -> None:
        """A point every rank reaches at the same step: stop every rank together when any
        rank's pass so far had a non-finite loss, or any rank was asked to stop (SIGTERM,
        Ctrl-C). One all-reduce of world-size + 1 numbers and a host sync."""
        world = self.world
        flags = torch.zeros(world.size + 1, dtype=torch.float64, device=self.device)
        flags[world.rank] = running.sums[3]
        flags[world.size] = float(self._stop.requested)
        values = world.all_reduce_sum(flags).tolist()
        bad = [rank for rank, count in enumerate(values[:world.size]) if count]
        if bad:
            raise self._diverged(epoch, bad)
        if values[world.size]:
            raise self._stop_error(epoch)

    def _diverged(self, epoch: int, ranks: list[int]) -> DivergedError:
        where = f" on rank {', '.join(map(str, ranks))}" if self.world.distributed else ""
        return DivergedError(f"{self.run_dir}: loss became NaN or infinite in epoch {epoch + 1}{where}; "
                             "training stopped")

    def _stop_error(self, epoch: int) -> StoppedError:
        how = self._stop.name or "a stop signal on another rank"
        return self._stop.error(f"{self.run_dir}: stopped by {how} in epoch {epoch + 1}")

    @torch.no_grad()
    def _eval_pass(self, epoch: int, phase: str, batches: ImageBatches) -> dict[str, float]:
        method = self.method
        method.eval()
        offset = 0 if phase == "probe" else self.data.num_train
        given = self.labels.current if phase == "probe" else self.test_labels
        running = _Running(self.device)
        mine = self.world.shard(torch.arange(len(batches)))  # the pass is sharded like training
        for step, (images, idx) in enumerate(batches.batches(mine, self.cfg.batch_size)):
            x = eval_transform(images, self.cfg.image_size)
            with self._autocast():
                logits, embedding = method.predict(x)
            labels = given[idx]
            logits = logits.float()
            loss = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
            running.add(loss, logits.argmax(dim=1) == labels, None)
            self.hooks.on_batch_end(BatchRecord(phase, epoch, step, idx + offset, labels, logits, embedding, loss))
        method.train()
        self._agreement(epoch, running)  # weights gone bad in the epoch's last step show here
        running.reduce(self.world)
        return running.read()
