"""Writing a run log from any training loop.

:class:`RunLogWriter` takes batch records keyed by sample id (ids, labels, logits,
embeddings, ...) and writes one HDF5 file per run. It is the only code that writes run
logs: relabscope's trainer reaches it through a hook, a hand-written loop calls it
directly, and a multi-GPU run gathers every rank's records to one writer.

Why it is built this way:

- **No stalls on the GPU.** ``log_batch`` only queues device-side work (softmax, argmax,
  casts) and non-blocking copies into pinned host memory, then returns. A background
  thread waits for the copies and scatters them into per-epoch buffers by sample id.
- **Crash safety.** The file is written in SWMR mode: after ``kill -9`` at any moment it
  opens with ``h5py.File(path, "r", swmr=True)`` and holds every committed epoch. An epoch
  is committed by growing ``epochs/done`` after everything else was written and flushed;
  readers take its length as the number of epochs. The file only appears under its final
  name once its layout exists (it is built under ``run.h5.partial`` and renamed).
- **SWMR rules.** No dataset or attribute may be created once SWMR starts, so all of them
  are created up front with a growable epoch axis (``runlog.layout``), and a resume
  copies the kept epochs into a new file instead of changing the old one.
- **Checksums and disk space.** Every chunk carries a checksum (``runlog.layout``), and
  each commit claims its bytes on the disk before writing any (``relabscope.diskspace``):
  a damaged byte is a failed read, never a wrong number, and a full disk a one-line
  WriteError before the epoch is written, never a crash.
- **Distances are to class means.** At each commit the writer computes, per class, the mean
  embedding of the training samples under the labels in effect, and every sample's distance
  to every such mean: one definition for every method, so SCN and SCN-C compare.
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time
from concurrent.futures import Future
from contextlib import suppress
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence, Union

import h5py
import numpy as np
import torch
from threadpoolctl import ThreadpoolController

from relabscope.diskspace import METADATA_SLACK, disk_full, is_disk_full, reserve
from relabscope.errors import LogDamagedError, RelabscopeError, WriteError
from relabscope.runlog import hdf5, layout, schema
from relabscope.runlog.check import check_log
from relabscope.runlog.images import ImagesArg, storable_spec

ArrayLike = Union[torch.Tensor, np.ndarray]
_QUEUE_DEPTH = 256  # batch records in flight before log_batch waits for the writer thread


@dataclass
class _Record:
    """One batch's arrays on their way to the host (``event`` set while copies run)."""

    phase: str
    step: int
    arrays: dict[str, Any]
    event: Any = None

    def host(self) -> dict[str, np.ndarray]:
        if self.event is not None:
            self.event.synchronize()
        return {k: v.numpy() if isinstance(v, torch.Tensor) else v for k, v in self.arrays.items()}


@dataclass
class _EpochEnd:
    """Commit the epoch; ``future`` gets its index once it is on disk."""

    future: Future[int]
    arrays: dict[str, Any]
    event: Any
    scalars: dict[str, float]
    save_embeddings: bool


@dataclass
class _Discard:
    """Drop the epoch's records; ``future`` is done once they are gone."""

    future: Future[None]


#: what the writer thread takes from its queue; None stops it
_Item = Union[_Record, _EpochEnd, _Discard, None]


@dataclass
class _Buffers:
    """One epoch's per-sample values, filled by sample id as records arrive."""

    n: int
    k: int
    d: int
    fields: dict[str, tuple[int, ...]]
    label: np.ndarray = field(init=False)
    pred: np.ndarray = field(init=False)
    prob: np.ndarray = field(init=False)
    loss: np.ndarray = field(init=False)
    emb: np.ndarray = field(init=False)
    extra: dict[str, np.ndarray] = field(init=False)

    def __post_init__(self) -> None:
        self.label = np.empty(self.n, np.int16)
        self.pred = np.empty(self.n, np.int16)
        self.prob = np.empty((self.n, self.k), np.float16)
        self.loss = np.empty(self.n, np.float32)
        self.emb = np.empty((self.n, self.d), np.float16)
        self.extra = {name: np.empty((self.n, *shape), np.float32) for name, shape in self.fields.items()}
        self.reset()

    def reset(self) -> None:
        self.label.fill(-1)
        self.pred.fill(-1)
        self.prob.fill(np.nan)
        self.loss.fill(np.nan)
        self.emb.fill(np.nan)
        for arr in self.extra.values():
            arr.fill(np.nan)
        self.has_emb = np.zeros(self.n, bool)
        self.probed = False
        self.events: list[np.ndarray] = []


class RunLogWriter:
    """Writes one run's log, so that a training loop of your own gets every analysis and
    view relabscope's trainer gets. Use :meth:`create` for a new run, :meth:`resume` to
    append; the constructor is theirs.

    A hand-written loop needs four calls::

        with RunLogWriter.create("runs/mine/run.h5", samples, class_names, embed_dim=512) as log:
            for epoch in range(epochs):
                for images, ids in train_loader:
                    logits, emb = model(images)
                    new = my_relabel(logits, labels[ids])         # optional
                    log.log_batch(ids, labels[ids], logits, emb, new_labels=new)
                for images, ids in test_loader:
                    logits, emb = model(images)
                    log.log_batch(ids, given[ids], logits, emb, phase="test")
                log.end_epoch()   # class means, distances, test accuracy; then commit

    Sample ids are rows of the ``samples`` table given at creation (train and test in one
    id space). Arguments may be torch tensors on any device or numpy arrays.

    Args:
        file: the log, open for writing in SWMR mode.
        path: its path.
        embed_every: keep the embeddings every this many epochs (``end_epoch``'s default).
        next_epoch: the epoch the next ``end_epoch`` commits.

    Example:
        Two epochs of a 4-sample training set and a 2-sample test set, random numbers in
        place of a model; one relabel in the second epoch:

        >>> import tempfile
        >>> import numpy as np
        >>> import relabscope as rs
        >>> samples = rs.SampleTable(key=[f"img{i}.png" for i in range(6)], split=[0, 0, 0, 0, 1, 1],
        ...                          given_label=[0, 1, 1, 0, 0, 1])
        >>> labels, rng = samples.given_label.copy(), np.random.default_rng(0)
        >>> with rs.RunLogWriter.create(tempfile.mkdtemp(), samples, ["neutral", "happiness"], embed_dim=8) as log:
        ...     for epoch in range(2):
        ...         train, test = np.arange(4), np.arange(4, 6)
        ...         new = labels[train].copy()
        ...         if epoch == 1:
        ...             new[2] = 0  # the method moves sample 2 to "neutral"
        ...         log.log_batch(train, labels[train], rng.normal(size=(4, 2)), rng.normal(size=(4, 8)),
        ...                       new_labels=new)
        ...         labels[train] = new
        ...         log.log_batch(test, labels[test], rng.normal(size=(2, 2)), rng.normal(size=(2, 8)), phase="test")
        ...         _ = log.end_epoch()  # class means, distances, test accuracy; then commit
        >>> run = rs.open_run(log.path)
        >>> run.num_epochs, run.status, run.relabel_events()[["epoch", "sample_id", "old", "new"]].to_numpy().tolist()
        (2, 'finished', [[1, 2, 1, 0]])
        >>> run.close()
    """

    def __init__(self, file: h5py.File, path: Path, embed_every: int, next_epoch: int):
        self._file = file
        self._datasets: dict[str, h5py.Dataset] = {}  # opened once: a lookup by path costs more than a small write
        self.path = path
        self.embed_every = embed_every
        self.epoch = next_epoch
        meta = file["meta"].attrs
        self.num_classes = int(meta["num_classes"])
        self.embed_dim = int(meta["embed_dim"])
        self.fields = json.loads(meta["fields"])
        self.fields = {k: tuple(v) for k, v in self.fields.items()}
        self.has_centers = "center" in file["epochs"]
        #: the relabel guards whose vetoes the log records (``epochs/vetoed``), in its order
        self.guards: list[str] = json.loads(meta.get("guards", "[]"))
        self._split = file["samples/split"][:]
        self._given = file["samples/given_label"][:]
        self._train = self._split == schema.SPLIT_CODES["train"]
        self._buf = _Buffers(len(self._split), self.num_classes, self.embed_dim, self.fields)
        self._step = 0
        self._committed = next_epoch  # owned by the writer thread
        self._queue: queue.Queue[_Item] = queue.Queue(maxsize=_QUEUE_DEPTH)
        self._error: BaseException | None = None
        self._delivered = False  # the error reached the caller (a call raised it, or a commit's future)
        self._closed = False
        #: seconds each commit took in the writer thread (class means, distances, the write)
        self.commit_seconds: list[float] = []
        self._thread = threading.Thread(target=self._run, name="relabscope-runlog", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ creation
    @classmethod
    def create(
        cls,
        path: str | Path,
        samples: schema.SampleTable,
        class_names: Iterable[str],
        *,
        embed_dim: int,
        fields: Mapping[str, tuple[int, ...]] | None = None,
        has_centers: bool = False,
        config: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        skipped: Iterable[str] = (),
        embed_every: int = 1,
        images: ImagesArg | None = None,
        guards: Sequence[str] = (),
    ) -> "RunLogWriter":
        """Create a new log. The file appears under its final name only once its layout
        exists (it is built under ``run.h5.partial``), so a reader never sees half a layout.

        Args:
            path: a ``.h5`` file, or a directory to hold ``run.h5``.
            samples: every sample, train and test, in the order of the sample ids.
            class_names: class names by class id.
            embed_dim: the embedding size D.
            fields: the method's own per-sample quantities logged each epoch, name ->
                trailing shape (() for a scalar), e.g. ``{"weight": ()}``.
            has_centers: reserve room for learned centers ("-C" methods).
            config: the run's settings (stored as JSON).
            metadata: attributes of the ``meta`` group (data set, method, ...).
            skipped: keys of unreadable samples left out of ``samples``.
            embed_every: keep the embeddings every this many epochs (and when asked).
            images: where the samples' pixels are, stored in the log so thumbnails, the
                sample inspector, reports and Grad-CAM find them: a folder (the keys are
                paths relative to it), an ``.npy``/``.npz`` array (row = sample id) or a
                text file with one image path per sample (see ``relabscope.runlog.images``).
            guards: names of the relabel guards the run switched on, in the order they
                apply: the log then records their vetoes per epoch, guard and class
                (``end_epoch``'s ``vetoed``). None: the log records no vetoes.

        Returns:
            The writer, at epoch 0.

        Raises:
            FileExistsError: a log is already there.
            ImageSourceError: ``images`` names no usable source, or one a log cannot store.
        """
        path = Path(path)
        if path.suffix != ".h5":
            path = path / schema.LOG_NAME
        if path.exists():
            raise FileExistsError(f"{path}: run log already exists")
        path.parent.mkdir(parents=True, exist_ok=True)
        class_names = list(class_names)
        fields = {k: tuple(v) for k, v in (fields or {}).items()}
        metadata = dict(metadata or {})
        if images is not None:  # checked before the file exists: a bad source leaves nothing behind
            metadata["images"] = storable_spec(images)
        partial = path.with_name(path.name + schema.PARTIAL_SUFFIX)
        f = hdf5.open_file(partial, "w")
        try:
            _claim(f, partial, layout.layout_bytes(samples), "creating the log")
            layout.build(f, samples, class_names, embed_dim, fields, has_centers,
                         dict(config or {}), metadata, list(skipped), list(guards))
            f.swmr_mode = True
            f.flush()
            os.replace(partial, path)
        except BaseException:
            _abandon(f, partial)
            raise
        return cls(f, path, embed_every, next_epoch=0)

    @classmethod
    def resume(
        cls, path: str | Path, *, keep_epochs: int, embed_every: int = 1,
        config: Mapping[str, Any] | None = None, guards: Sequence[str] | None = None,
    ) -> "RunLogWriter":
        """Continue a log after its first epochs; later rows go (a run resumes from its last
        checkpoint, which may be older than the log's last epoch).

        The kept epochs are copied into a new file (``run.h5.resuming``) that then replaces
        the log, which is only ever read. So a dashboard or notebook holding the log open
        never blocks a resume and never sees a half-changed file (readers reopen the new
        file when they see it, ``RunLogReader``); a kept row that is damaged (its checksum
        fails) stops the resume before anything changed; a disk without room for the copy
        is one line, the log as it was; and the "open for writing" flags a killed writer
        left on the old file do not matter.

        Args:
            path: the ``.h5`` file.
            keep_epochs: the epochs to keep; the next ``end_epoch`` commits this one.
            embed_every: keep the embeddings every this many epochs.
            config: replaces the stored config (a resumed run may extend its epochs).
            guards: the relabel guards the resumed run has (None: not checked); a log
                that records other guards' vetoes is refused before anything changes.

        Returns:
            The writer, at epoch ``keep_epochs``.

        Raises:
            LogDamagedError: the log cannot be read, or a row it would keep is damaged (the
                message says which epochs are intact).
            RunDirError: not a run log, or one of a newer schema.
            WriteError: no room on the disk for the copy.
            ValueError: the log holds fewer than ``keep_epochs`` epochs, or other guards.
        """
        path = Path(path)
        staged = path.with_name(path.name + schema.RESUME_SUFFIX)
        with hdf5.open_log(path) as old:
            logged = json.loads(old["meta"].attrs.get("guards", "[]"))
            if guards is not None and logged != list(guards):
                raise ValueError(f"the log records the relabel guards {'+'.join(logged) or 'none'}, the resumed "
                                 f"run has {'+'.join(guards) or 'none'}: resume with the guards it was written with")
            if keep_epochs > old["epochs/done"].shape[0]:
                raise ValueError(f"log holds {old['epochs/done'].shape[0]} epochs, cannot keep {keep_epochs}")
            new = hdf5.open_file(staged, "w")
            try:
                _claim(new, staged, layout.copy_bytes(old, keep_epochs), f"copying its {keep_epochs} kept epochs")
                layout.rebuild(old, new, keep_epochs, None if config is None else dict(config))
                new.swmr_mode = True
                new.flush()
            except hdf5.HDF5_ERRORS as exc:
                _abandon(new, staged)
                if is_disk_full(exc):
                    raise disk_full(staged, None, f"copying its {keep_epochs} kept epochs") from None
                raise LogDamagedError(f"{_damage(path, exc)}; the resume changed nothing") from None
            except BaseException:
                _abandon(new, staged)
                raise
        os.replace(staged, path)
        return cls(new, path, embed_every, next_epoch=keep_epochs)

    # ------------------------------------------------------------------ logging
    def log_record(self, record: Mapping[str, Any]) -> None:
        """:meth:`log_batch` of one batch record, as the trainer, torchrun's other ranks and
        ``RunCapture`` hand them on: the keys are ``log_batch``'s arguments (``phase``
        default "train"; ``step`` read for training batches only). The one place a record
        becomes a logged batch."""
        phase = record.get("phase", "train")
        self.log_batch(record["sample_ids"], record["labels"], record["logits"], record["embeddings"], phase=phase,
                       loss=record.get("loss"), new_labels=record.get("new_labels"),
                       step=record.get("step") if phase == "train" else None, fields=record.get("fields"),
                       relabel_probs=record.get("relabel_probs"), steps=record.get("steps"))

    def log_batch(
        self,
        sample_ids: ArrayLike,
        labels: ArrayLike,
        logits: ArrayLike,
        embeddings: ArrayLike,
        *,
        phase: str = "train",
        loss: ArrayLike | None = None,
        new_labels: ArrayLike | None = None,
        step: int | None = None,
        fields: Mapping[str, ArrayLike] | None = None,
        relabel_probs: ArrayLike | None = None,
        steps: ArrayLike | None = None,
    ) -> None:
        """Record one batch of the current epoch. Only queues device work and copies, then
        returns: a background thread moves the numbers into the epoch's buffers, so logging
        does not stall the GPU.

        Args:
            sample_ids: ``(B,)`` rows of the samples table.
            labels: ``(B,)`` for "train" the labels in effect the loss used, for "test" the
                given labels.
            logits: ``(B, K)``; the log keeps their softmax and argmax.
            embeddings: ``(B, D)``; their class means define the distances.
            phase: "train", "test", or "probe" (an eval pass over training samples: only
                its embeddings are kept, and they replace the training pass's this epoch).
            loss: ``(B,)`` per-sample loss.
            new_labels: ``(B,)`` the labels in effect after this batch's relabelling; every
                difference from ``labels`` becomes a relabel event with p(old) and p(new).
            step: numbers the batch for relabel events (default: a running count).
            fields: ``(B, ...)`` per declared field (``create``'s ``fields``).
            relabel_probs: ``(B, K)`` the class probabilities the relabel decision used,
                when they are not the softmax of ``logits`` (a method that relabels from
                scaled logits or an ensemble): the relabel events' p(old) and p(new) come
                from them. The logged ``prob`` stays the softmax of ``logits``.
            steps: ``(B,)`` each row's batch number for its relabel events, when the record
                joins several batches (``step`` is then the last one's).

        Raises:
            RuntimeError: the writer failed earlier or is closed.
            KeyError: a field that was not declared.
        """
        self._check()
        if phase not in ("train", "test", "probe"):
            raise ValueError(f"phase must be train, test or probe, not {phase!r}")
        if step is None:
            step = self._step
        if phase == "train":
            self._step = step + 1
        with torch.no_grad():
            logits_t = torch.as_tensor(logits).detach().float()
            probs = logits_t.softmax(dim=1)
            labels_t = torch.as_tensor(labels).detach().to(device=logits_t.device, dtype=torch.long)
            arrays: dict[str, torch.Tensor] = {
                "ids": torch.as_tensor(sample_ids).detach(),
                "emb": torch.as_tensor(embeddings).detach().to(torch.float16),
            }
            if phase != "probe":
                arrays.update(label=labels_t, pred=probs.argmax(dim=1), prob=probs.to(torch.float16))
                if loss is not None:
                    arrays["loss"] = torch.as_tensor(loss).detach().float()
                for name, value in (fields or {}).items():
                    if name not in self.fields:
                        raise KeyError(f"field {name!r} was not declared when the log was created")
                    arrays["field/" + name] = torch.as_tensor(value).detach().float()
            if new_labels is not None and phase == "train":
                new_t = torch.as_tensor(new_labels).detach().to(device=logits_t.device, dtype=torch.long)
                arrays["new"] = new_t
                decided = probs if relabel_probs is None else \
                    torch.as_tensor(relabel_probs).detach().to(device=logits_t.device, dtype=torch.float32)
                arrays["p_old"] = decided.gather(1, labels_t.unsqueeze(1)).squeeze(1)
                arrays["p_new"] = decided.gather(1, new_t.unsqueeze(1)).squeeze(1)
                if steps is not None:
                    arrays["steps"] = torch.as_tensor(steps).detach()
        record = _Record(phase, step, *_start_copy(arrays))
        self._put(record)

    def end_epoch(
        self,
        *,
        centers: ArrayLike | None = None,
        lr: float = float("nan"),
        seconds: float = float("nan"),
        unreadable: int = 0,
        save_embeddings: bool | None = None,
        vetoed: ArrayLike | None = None,
        wait: bool = True,
    ) -> Future[int]:
        """Commit the current epoch: class means, distances, test metrics, embeddings. A
        reader sees the epoch only once all of it is on disk.

        Args:
            centers: ``(K, D)`` learned centers (logs created with ``has_centers``).
            lr: the learning rate, for the record.
            seconds: the epoch's duration, for the record.
            unreadable: images that failed to load this epoch.
            save_embeddings: keep this epoch's embeddings; None keeps them every
                ``embed_every`` epochs.
            vetoed: ``(G, K)`` the relabels each guard refused this epoch, by the class
                the relabel would have left (logs created with ``guards``); None records
                them as unknown (-1).
            wait: False commits in the background (the trainer overlaps it with the next
                epoch).

        Returns:
            A future whose result is the committed epoch, done once it is on disk (call
            ``result()`` before reporting the epoch complete).

        Raises:
            RuntimeError: the writer failed earlier or is closed.
            ValueError: centers or vetoes given to a log without room for them.
        """
        self._check()
        if centers is not None and not self.has_centers:
            raise ValueError("this log was created without room for learned centers")
        if vetoed is not None and tuple(np.shape(vetoed)) != (len(self.guards), self.num_classes):
            raise ValueError(f"vetoed has shape {tuple(np.shape(vetoed))}; this log records "
                             f"({len(self.guards)}, {self.num_classes}): guards {self.guards} x classes")
        if save_embeddings is None:
            save_embeddings = (self.epoch + 1) % self.embed_every == 0
        arrays = {} if centers is None else {"center": torch.as_tensor(centers).detach().float()}
        if vetoed is not None:
            arrays["vetoed"] = torch.as_tensor(vetoed).detach().to(torch.int32)
        arrays, event = _start_copy(arrays)
        future: Future[int] = Future()
        scalars = {"lr": lr, "seconds": seconds, "unreadable": unreadable}
        self._put(_EpochEnd(future, arrays, event, scalars, bool(save_embeddings)))
        self.epoch += 1
        if wait:
            future.result()
        return future

    def discard_epoch(self) -> None:
        """Drop the current epoch's records without committing (e.g. after a NaN loss)."""
        self._check()
        future: Future[None] = Future()
        self._put(_Discard(future))
        future.result()

    def flush(self) -> None:
        """Wait until every queued record and commit has been handled."""
        self._check()
        self._queue.join()
        self._check()

    def close(self, status: str = "finished") -> None:
        """Finish pending commits, record the run's status and close the file (also on
        leaving a ``with`` block: "finished", or "interrupted" after an exception).

        Args:
            status: "finished", "diverged", "interrupted" (or "running").

        Raises:
            WriteError: a commit failed for want of space or the status could not be
                written; not raised again when a call already reported it.
            RuntimeError: the background thread failed otherwise (its error chained).
        """
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._thread.join()
        try:
            if self._file.id.valid:
                self._file["status"][0] = schema.STATUS[status]
                self._file.flush()
                _unclaim(self._file)
        except hdf5.HDF5_ERRORS as exc:
            if self._error is None:
                self._error = WriteError(f"{self.path}: could not record the run's status ({hdf5.describe(exc)})")
        finally:
            self._file.close()
        if self._error is not None and not self._delivered:
            raise self._failure()

    def __enter__(self) -> "RunLogWriter":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.close("finished" if exc_type is None else "interrupted")

    # ------------------------------------------------------------------ internals
    def _check(self) -> None:
        if self._error is not None:
            self._delivered = True
            raise self._failure()
        if self._closed:
            raise RuntimeError("run log writer is closed")

    def _failure(self) -> BaseException:
        """The background thread's error as the caller sees it: a WriteError (a full disk, a
        failed write) as it is, one line; anything else as a RuntimeError chaining it."""
        assert self._error is not None
        if isinstance(self._error, RelabscopeError):
            return self._error
        failure = RuntimeError(f"run log writer failed: {self._error}")
        failure.__cause__ = self._error
        return failure

    def _put(self, item: _Item) -> None:
        try:
            self._queue.put_nowait(item)  # the common case, without a timed wait's cost
            return
        except queue.Full:
            pass
        while True:
            try:
                self._queue.put(item, timeout=0.5)
                return
            except queue.Full:
                self._check()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                if self._error is not None:
                    continue  # drain; the error is reported to the caller
                if isinstance(item, _Record):
                    self._scatter(item)
                elif isinstance(item, _Discard):
                    self._buf.reset()
                    item.future.set_result(None)
                else:
                    self._commit(item)
            except BaseException as exc:  # reported to the caller on its next call
                self._error = exc
                if isinstance(item, (_EpochEnd, _Discard)):
                    item.future.set_exception(self._failure())
                    self._delivered = True
            finally:
                self._queue.task_done()

    def _scatter(self, record: _Record) -> None:
        a = record.host()
        ids = a["ids"].astype(np.int64)
        buf = self._buf
        if record.phase == "probe":
            if not buf.probed:  # the probe pass replaces the training pass's embeddings
                buf.has_emb[self._train] = False
                buf.probed = True
            buf.emb[ids] = a["emb"]
            buf.has_emb[ids] = True
            return
        if not (buf.probed and record.phase == "train"):
            buf.emb[ids] = a["emb"]
            buf.has_emb[ids] = True
        buf.label[ids] = a["label"]
        buf.pred[ids] = a["pred"]
        buf.prob[ids] = a["prob"]
        if "loss" in a:
            buf.loss[ids] = a["loss"]
        for name, arr in buf.extra.items():
            if "field/" + name in a:
                arr[ids] = a["field/" + name].reshape(arr[ids].shape)
        if "new" in a:
            changed = np.flatnonzero(a["new"] != a["label"])
            if len(changed):
                ev = np.empty(len(changed), schema.RELABEL_DTYPE)
                ev["epoch"] = self._committed
                ev["step"] = a["steps"][changed] if "steps" in a else record.step
                ev["sample"] = ids[changed]
                ev["old"] = a["label"][changed]
                ev["new"] = a["new"][changed]
                ev["p_old"] = a["p_old"][changed]
                ev["p_new"] = a["p_new"][changed]
                buf.events.append(ev)

    def _commit(self, end: _EpochEnd) -> None:
        started = time.perf_counter()
        f, buf = self._file, self._buf
        e = self._committed
        host = _Record("end", 0, end.arrays, end.event).host()
        labels = buf.label.astype(np.int64)
        with _one_blas_thread():
            means, counts = class_means(buf.emb, labels, self._train & buf.has_emb, self.num_classes)
            distance = class_distances(buf.emb, means)
        distance[~buf.has_emb] = np.nan
        test = (~self._train) & (buf.pred >= 0)
        confusion = confusion_matrix(self._given[test], buf.pred[test], self.num_classes)
        seen = self._train & (buf.pred >= 0)
        events = np.concatenate(buf.events) if buf.events else np.empty(0, schema.RELABEL_DTYPE)
        events = events[np.argsort(events["step"], kind="stable")]  # time order, whichever rank sent them
        relabel_end = self._dataset("relabels").shape[0] + len(events)
        rows = {
            "epochs/label": buf.label,
            "epochs/pred": buf.pred,
            "epochs/prob": buf.prob,
            "epochs/loss": buf.loss,
            "epochs/distance": distance.astype(np.float32),
            "epochs/class_mean": means.astype(np.float32),
            "epochs/class_count": counts.astype(np.int32),
            "epochs/embed_source": np.int8(schema.EMBED_SOURCES["probe" if buf.probed else "train"]),
            "epochs/test_acc": _ratio(np.trace(confusion), confusion.sum()),
            "epochs/class_acc": _class_accuracy(confusion),
            "epochs/confusion": confusion,
            "epochs/train_loss": _nanmean(buf.loss[seen]),
            "epochs/train_acc": _ratio((buf.pred[seen] == buf.label[seen]).sum(), seen.sum()),
            "epochs/lr": np.float32(end.scalars["lr"]),
            "epochs/seconds": np.float32(end.scalars["seconds"]),
            "epochs/unreadable": np.int32(end.scalars["unreadable"]),
            "epochs/relabel_end": np.int64(relabel_end),
        }
        for name, arr in buf.extra.items():
            rows["epochs/field/" + name] = arr
        if self.has_centers:
            rows["epochs/center"] = host.get("center", np.full((self.num_classes, self.embed_dim), np.nan, np.float32))
        if self.guards:
            rows["epochs/vetoed"] = host.get("vetoed", np.full((len(self.guards), self.num_classes), -1, np.int32))
        size = sum(np.asarray(row).nbytes for row in rows.values()) + events.nbytes
        _claim(f, self.path, size + (buf.emb.nbytes if end.save_embeddings else 0), f"committing epoch {e}")
        try:
            self._write_epoch(e, rows, events, buf.emb if end.save_embeddings else None)
        except hdf5.HDF5_ERRORS as exc:
            raise WriteError(f"{self.path}: could not commit epoch {e} ({hdf5.describe(exc)}); the epochs "
                             "before it are intact") from exc
        buf.reset()
        self._committed = e + 1
        self.commit_seconds.append(time.perf_counter() - started)
        end.future.set_result(e)

    def _write_epoch(self, e: int, rows: dict[str, Any], events: np.ndarray, embeddings: np.ndarray | None) -> None:
        """Append epoch ``e``'s rows, events and embeddings; flush; then commit it by growing
        ``epochs/done`` and flushing again (readers count only epochs ``done`` holds)."""
        f, ds_ = self._file, self._dataset
        for name, row in rows.items():
            _append_row(ds_(name), e, row)
        if len(events):
            ds = ds_("relabels")
            start = ds.shape[0]
            ds.resize((start + len(events),))
            ds[start:] = events
        if embeddings is not None:
            data, which = ds_("embeddings/data"), ds_("embeddings/epoch")
            m = which.shape[0]
            data.resize((m + 1, *data.shape[1:]))
            data[m] = embeddings
            which.resize((m + 1,))
            which[m] = e
        f.flush()
        done = ds_("epochs/done")
        done.resize((e + 1,))
        done[e] = time.time()
        f.flush()

    def _dataset(self, name: str) -> h5py.Dataset:
        """The log's dataset ``name``, opened once per writer."""
        found = self._datasets.get(name)
        if found is None:
            found = self._datasets[name] = self._file[name]
        return found


# ---------------------------------------------------------------------- helpers
@cache
def _blas() -> ThreadpoolController:
    return ThreadpoolController()


def _one_blas_thread() -> Any:
    """numpy's BLAS on one thread while a commit computes distances: a commit runs beside
    training, and the BLAS pool's other threads (which spin a while after every call) took
    the cores training's own threads were using; an epoch of a small CPU model ran 20 %
    slower for a 15 ms commit (benchmarks/callback_overhead.py)."""
    return _blas().limit(limits=1, user_api="blas")


def _claim(f: h5py.File, path: Path, nbytes: int, what: str) -> None:
    """Allocate the bytes the next write appends (plus HDF5's metadata) before writing any,
    so a full disk stops it cleanly instead of in the middle (``relabscope.diskspace``)."""
    reserve(hdf5.vfd_handle(f), f.id.get_filesize(), nbytes + METADATA_SLACK, path, what)


def _unclaim(f: h5py.File) -> None:
    """Give back what :func:`_claim` allocated and no write used: cut the file to the end
    of HDF5's allocation (HDF5 would otherwise record the claimed tail as part of the file)."""
    fd = hdf5.vfd_handle(f)
    if fd is not None and os.fstat(fd).st_size > f.id.get_filesize():
        os.ftruncate(fd, f.id.get_filesize())


def _abandon(f: h5py.File, path: Path) -> None:
    """Close and delete a file this writer was building and gave up on."""
    with suppress(*hdf5.HDF5_ERRORS):
        f.close()
    path.unlink(missing_ok=True)


def _damage(path: Path, exc: BaseException) -> str:
    """Why a log could not be read through: what ``relabscope check`` finds, else HDF5's
    error in a few words."""
    found = check_log(path)
    return found.summary() if not found.ok else f"{path}: {hdf5.describe(exc)}"


def _start_copy(arrays: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """Start device-to-host copies; return host-side handles and a CUDA event (or None)."""
    out: dict[str, Any] = {}
    on_gpu = False
    for name, value in arrays.items():
        if isinstance(value, torch.Tensor) and value.is_cuda:
            out[name] = value.to("cpu", non_blocking=True)  # lands in pinned memory
            on_gpu = True
        elif isinstance(value, torch.Tensor):
            out[name] = value.numpy().copy()  # a CPU loop may reuse its buffers
        else:
            out[name] = np.array(value, copy=True)
    if not on_gpu:
        return out, None
    event = torch.cuda.Event()  # type: ignore[no-untyped-call]  # torch: Event.__new__ has no annotations
    event.record()
    return out, event


def class_means(
    emb: np.ndarray, labels: np.ndarray, mask: np.ndarray, num_classes: int, chunk: int = 1 << 15
) -> tuple[np.ndarray, np.ndarray]:
    """Per-class mean of ``emb`` rows where ``mask`` (and a label >= 0); NaN for empty classes."""
    sums = np.zeros((num_classes, emb.shape[1]), np.float64)
    rows = np.flatnonzero(mask & (labels >= 0))
    counts = np.bincount(labels[rows], minlength=num_classes)
    order = rows[np.argsort(labels[rows], kind="stable")]
    sorted_labels = labels[order]
    for start in range(0, len(order), chunk):
        part = order[start:start + chunk]
        lab = sorted_labels[start:start + chunk]
        bounds = np.flatnonzero(np.r_[True, lab[1:] != lab[:-1]])
        sums[lab[bounds]] += np.add.reduceat(emb[part].astype(np.float64), bounds, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / counts[:, None]
    means[counts == 0] = np.nan
    return means, counts


def class_distances(emb: np.ndarray, means: np.ndarray, chunk: int = 1 << 14) -> np.ndarray:
    """Euclidean distance of every row of ``emb`` to every class mean (N x K, float64)."""
    out = np.empty((emb.shape[0], means.shape[0]), np.float64)
    mean_sq = np.einsum("kd,kd->k", means, means)
    twice = (2.0 * means).T
    with np.errstate(invalid="ignore"):  # a class with no sample has a NaN mean: NaN distances
        for start in range(0, emb.shape[0], chunk):
            x = emb[start:start + chunk].astype(np.float64)
            sq = out[start:start + chunk]
            np.subtract(np.einsum("nd,nd->n", x, x)[:, None] + mean_sq[None, :], x @ twice, out=sq)
            np.sqrt(np.maximum(sq, 0.0, out=sq), out=sq)
    return out


def confusion_matrix(true: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """K x K counts, rows the given label, columns the prediction."""
    idx = true.astype(np.int64) * num_classes + pred.astype(np.int64)
    return np.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes).astype(np.int32)


def _class_accuracy(confusion: np.ndarray) -> np.ndarray:
    totals = confusion.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, np.diag(confusion) / totals, np.nan).astype(np.float32)


def _nanmean(values: np.ndarray) -> np.float32:
    finite = values[~np.isnan(values)]
    mean: np.float32 = np.float32(finite.mean()) if len(finite) else np.float32(np.nan)
    return mean


def _ratio(num: Any, den: Any) -> np.float32:
    ratio: np.float32 = np.float32(num / den) if den else np.float32(np.nan)
    return ratio


def _append_row(ds: h5py.Dataset, e: int, row: Any) -> None:
    """Write row ``e`` of a per-epoch dataset, growing it if needed: through h5py's
    low-level calls, which skip the high-level selection machinery (half the time per row;
    a commit writes about twenty rows while training runs beside it). HDF5's filters
    (fletcher32) apply as on any write."""
    dsid = ds.id
    dims = dsid.shape
    if dims[0] < e + 1:
        dsid.set_extent((e + 1, *dims[1:]))
    one = (1, *dims[1:])
    file_space = dsid.get_space()
    file_space.select_hyperslab((e,) + (0,) * (len(dims) - 1), one)
    dsid.write(h5py.h5s.create_simple(one), file_space, np.ascontiguousarray(row, dtype=ds.dtype).reshape(one))
