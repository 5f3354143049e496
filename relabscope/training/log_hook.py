"""The hook that turns trainer events into a run log (the trainer itself never touches HDF5)."""

from __future__ import annotations

import time
from concurrent.futures import Future

from relabscope.runlog.schema import LOG_NAME
from relabscope.runlog.writer import RunLogWriter
from relabscope.training.distributed import SINGLE, World, received_records, record_bytes
from relabscope.training.hooks import BatchRecord, EpochSummary, Hook, RunInfo, RunResult


class RunLogHook(Hook):
    """Creates (or, after ``--resume``, reopens) ``run.h5`` in the run directory and feeds
    it every batch record; commits run in the background and the trainer waits for them
    before it checkpoints an epoch. Under torchrun it runs on rank 0 and, before it commits
    an epoch, logs the records every other rank sent (``distributed.RecordSender``)."""

    def __init__(self, world: World = SINGLE) -> None:
        self.writer: RunLogWriter | None = None
        self.world = world
        #: per epoch under torchrun: bytes of the other ranks' records and the seconds to
        #: receive and queue them (what ``benchmarks/distributed.py`` reports)
        self.gathered: list[tuple[int, float]] = []

    def on_run_start(self, run: RunInfo) -> None:
        path = run.run_dir / LOG_NAME
        cfg = run.config
        if run.start_epoch > 0:
            self.writer = RunLogWriter.resume(path, keep_epochs=run.start_epoch,
                                              embed_every=cfg.embed_every, config=cfg.to_dict())
            return
        self.writer = RunLogWriter.create(
            path,
            run.samples,
            run.class_names,
            embed_dim=run.method.embed_dim,
            fields=run.method.sample_fields,
            has_centers=run.method.center is not None,
            config=cfg.to_dict(),
            metadata=run.metadata,
            skipped=run.skipped,
            embed_every=cfg.embed_every,
            guards=run.guards,
        )

    def on_batch_end(self, record: BatchRecord) -> None:
        assert self.writer is not None
        self.writer.log_record(record.as_mapping())

    def on_epoch_end(self, summary: EpochSummary) -> Future:
        assert self.writer is not None
        if self.world.distributed:
            started = time.perf_counter()
            records = received_records(self.world)
            for r in records:
                self.writer.log_record(r)
            self.gathered.append((record_bytes(records), time.perf_counter() - started))
        return self.writer.end_epoch(
            centers=summary.arrays.get("centers"),
            lr=summary.metrics["lr"],
            seconds=summary.metrics["seconds"],
            unreadable=summary.unreadable,
            save_embeddings=summary.save_embeddings,
            vetoed=summary.vetoed,
            wait=False,
        )

    def on_run_end(self, result: RunResult) -> None:
        if self.writer is not None:
            self.writer.close(result.status)
