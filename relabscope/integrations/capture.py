"""Logging a run of your own model: labels in effect, relabels and embeddings for any loop.

:class:`RunCapture` stands between a training loop and
:class:`~relabscope.runlog.writer.RunLogWriter` and holds what every integration needs and
a hand-written loop would otherwise rebuild:

- **the samples**, from plain label arrays (:func:`sample_table`): the training samples,
  then the test (validation) samples. Each split keeps its own sample ids, ``0..n-1`` in
  the order of its labels (what a data set's index gives), and the capture places them in
  the log's one id space;
- **the labels in effect**, starting from the given training labels. A relabelling
  method changes them with one call, :meth:`RunCapture.relabel`, made while it trains
  the batch; they take effect when the batch is logged, and every change becomes a
  relabel event. A method that never relabels still gets the whole log (forgetting, AUM,
  cartography, class means and distances come from what every batch logs);
- **embeddings** from a forward hook on a named layer (:meth:`RunCapture.attach`), so the
  model does not have to return them, or given with each batch;
- **per-sample loss**, cross-entropy against the labels in effect (train) or the given
  labels (test), as the log defines it;
- **relabel guards** (``guards="floor=0.5+agree"``, the spelling of the sweep's
  ``--guards``): the limits ``relabscope train``'s ``--relabel-floor``,
  ``--relabel-hysteresis`` and ``--relabel-agree`` put on SCN, applied to your method's
  relabels by the same code (``relabscope.training.guards``) when a batch is logged; their
  vetoes go into the log per epoch, guard and class, and their state into
  :meth:`RunCapture.state_dict`;
- **several processes** (``torch.distributed`` joined, as Lightning's DDP or ``torchrun``
  do): rank 0 alone writes; the other ranks keep host copies of their batches and send
  them to it once per epoch, and every rank applies every rank's relabels, so the labels
  in effect are one state everywhere.

A hand-written loop::

    cap = RunCapture("runs/mine", train_labels, test_labels, class_names=names)
    cap.attach(model, "backbone")                  # embeddings: the backbone's output
    with cap:
        for epoch in range(epochs):
            model.train()
            for x, ids in train_loader:            # ids: positions in train_labels
                logits = model(x)
                loss = F.cross_entropy(logits, cap.labels(ids))
                ...                                # backward, step
                cap.relabel(ids[m], new[m])        # only if your method relabels
                cap.log(ids, logits)
            model.eval()
            for x, ids in test_loader:             # ids: positions in test_labels
                cap.log(ids, model(x), phase="test")
            cap.end_epoch()
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import platform
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Iterable, Literal, Mapping, Sequence, TypedDict, Union

import numpy as np
import torch
import torch.distributed as dist

from relabscope import __version__
from relabscope.data.canaries import CANARY_COLUMN, plant_canaries
from relabscope.errors import DataError, RelabscopeError, RunDirError
from relabscope.methods.guards import NONE, guard_settings, guards_on, parse_guard
from relabscope.methods.settings import RelabelGuardSettings
from relabscope.models.spec import ModelSpec
from relabscope.runlog.images import ImagesArg
from relabscope.runlog.schema import LOG_NAME, SPLIT_CODES, SampleTable
from relabscope.runlog.writer import RunLogWriter
from relabscope.training.distributed import World
from relabscope.integrations.chunks import BatchChunk
from relabscope.integrations.figures import EpochFigures
from relabscope.training.guards import Proposal
from relabscope.training.relabelling import Relabelling

ArrayLike = Union[torch.Tensor, np.ndarray, Sequence[int]]
EmbeddingIO = Literal["output", "input"]
Phase = Literal["train", "test"]


class CaptureOptions(TypedDict, total=False):
    """:class:`RunCapture`'s keyword arguments, which the Lightning and transformers
    callbacks take as they are (documented there)."""

    class_names: Iterable[str] | None
    keys: Iterable[str] | None
    clean_labels: ArrayLike | None
    images: ImagesArg | None
    embed_every: int
    config: Mapping[str, Any] | None
    metadata: Mapping[str, Any] | None
    guards: str | None
    relabel_threshold: float | None
    relabel_from_epoch: int | None
    image_size: int | None
    normalize: tuple[Sequence[float], Sequence[float]] | None
    model_factory: str | None
    cam_layer: str | None
    canaries: float
    canary_seed: int


def sample_table(
    train_labels: ArrayLike,
    test_labels: ArrayLike | None = None,
    *,
    keys: Iterable[str] | None = None,
    clean_labels: ArrayLike | None = None,
) -> SampleTable:
    """The log's samples from plain arrays: training samples first, then test samples.

    Args:
        train_labels: ``(n_train,)`` the given class id of each training sample.
        test_labels: ``(n_test,)`` the given class id of each test (validation) sample.
        keys: one stable name per sample, train then test (a path relative to an image
            folder lets the views find the pixels); default ``train/<i>``, ``test/<j>``.
        clean_labels: the true class ids when known (-1 where not), for the training
            samples alone or for train then test.

    Returns:
        The table; a training sample's id is its position in ``train_labels``, a test
        sample's is ``n_train`` plus its position in ``test_labels``.

    Raises:
        DataError: labels that are not 1-D class ids, or lengths that do not match.
    """
    train = _class_ids(train_labels, "train_labels")
    test = _class_ids([] if test_labels is None else test_labels, "test_labels")
    n_train, n = len(train), len(train) + len(test)
    names = [f"train/{i}" for i in range(n_train)] + [f"test/{j}" for j in range(len(test))] \
        if keys is None else [str(k) for k in keys]
    if len(names) != n:
        raise DataError(f"keys: {len(names)} given for {n} samples ({n_train} train + {len(test)} test)")
    clean = None
    if clean_labels is not None:
        clean = _class_ids(clean_labels, "clean_labels", unknown_ok=True)
        if len(clean) == n_train:
            clean = np.concatenate([clean, np.full(len(test), -1, np.int64)])
        if len(clean) != n:
            raise DataError(f"clean_labels: {len(clean)} given, expected {n_train} (train) or {n} (train + test)")
    split = np.r_[np.full(n_train, SPLIT_CODES["train"]), np.full(len(test), SPLIT_CODES["test"])]
    return SampleTable(key=names, split=split, given_label=np.concatenate([train, test]), clean_label=clean)


class RunCapture:
    """One run's log fed from a training loop: the samples, the labels in effect, relabels
    and embeddings (see the module docstring). Use it as a context manager, or call
    :meth:`open` and :meth:`close`.

    Args:
        path: a ``.h5`` file, or a directory to hold ``run.h5``.
        train_labels: ``(n_train,)`` the given label of each training sample.
        test_labels: ``(n_test,)`` the given label of each test (validation) sample.
        class_names: names by class id (default: the ids as text).
        keys: one name per sample, train then test (see :func:`sample_table`).
        clean_labels: true labels when known (see :func:`sample_table`).
        images: where the samples' pixels are, recorded in the log for the views
            (``RunLogWriter.create``'s ``images``); None records none.
        embed_every: keep the embeddings every this many epochs.
        config: the run's settings, stored as JSON in the log.
        metadata: attributes of the log's ``meta`` group (``method``, ``dataset``, ...),
            over the defaults (versions, sizes, ``method`` and ``dataset`` "custom").
        guards: relabel guards on :meth:`relabel`, spelled as the sweep's ``--guards``
            values: ``"floor=0.5"``, ``"hysteresis=1"``, ``"agree"``, joined with ``+``
            (``"floor=0.5+agree"``); None or ``"none"``: every relabel stands. Their
            settings (``relabel_floor``, ...) join ``config``.
        relabel_threshold: the margin ``p_max - p_label`` above which your rule
            relabels; the consistency view's control group (samples whose margin fell
            just below it) needs it (stored as ``config["delta"]``, SCN's name). Without
            it the view takes the smallest margin among the logged relabels.
        relabel_from_epoch: the first epoch your rule may relabel in, counted from 0 like
            every epoch in a log and its views (stored as ``config["relabel_epoch"]``,
            which counts from 1 as ``relabscope train --relabel-epoch`` does). Without it
            the views take the first epoch with a relabel.
        image_size: the side length of your model's input: Grad-CAM resizes the images to
            it (stored as ``config["image_size"]``; without it, 224).
        normalize: ``(mean, std)`` per channel, in 0..1 units as torchvision's
            ``Normalize`` takes them: your model's input normalisation, which Grad-CAM
            applies (stored as ``config["normalize"]``; without it, ImageNet's).
        model_factory: ``"module:function"`` that builds your model (a class works too),
            so every later report and dashboard can show Grad-CAM without being told
            (stored as ``config["model"]``; weights: the factory's, or ``--weights``).
        cam_layer: the layer Grad-CAM explains, dotted ("backbone.layer4").
        canaries: the fraction of training labels to move on purpose to another class,
            recorded as canaries (``relabscope.data.canaries``), so that
            ``run.suspect_quality()`` says how well a suspect ranking finds wrong labels
            without clean labels. The labels in effect start from them: train on
            :meth:`labels` (as every example here does) or the canaries measure nothing.
        canary_seed: the seed that chooses the canaries.

    Raises:
        DataError: labels or keys that do not fit together, a view setting out of range,
            or one that ``config`` gives otherwise.
        RelabscopeError: a ``guards`` value that is not one.
    """

    def __init__(
        self,
        path: str | Path,
        train_labels: ArrayLike,
        test_labels: ArrayLike | None = None,
        *,
        class_names: Iterable[str] | None = None,
        keys: Iterable[str] | None = None,
        clean_labels: ArrayLike | None = None,
        images: ImagesArg | None = None,
        embed_every: int = 1,
        config: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        guards: str | None = None,
        relabel_threshold: float | None = None,
        relabel_from_epoch: int | None = None,
        image_size: int | None = None,
        normalize: tuple[Sequence[float], Sequence[float]] | None = None,
        model_factory: str | None = None,
        cam_layer: str | None = None,
        canaries: float = 0.0,
        canary_seed: int = 0,
    ) -> None:
        path = Path(path)
        self.path = path if path.suffix == ".h5" else path / LOG_NAME
        self.samples = sample_table(train_labels, test_labels, keys=keys, clean_labels=clean_labels)
        self.num_train = int(self.samples.train_mask.sum())
        self.class_names = _class_names(class_names, torch.as_tensor(self.samples.given_label.astype(np.int64)))
        self.num_classes = len(self.class_names)
        if canaries:
            self._plant_canaries(canaries, canary_seed)
        given = torch.as_tensor(self.samples.given_label.astype(np.int64))
        self.images = images
        self.embed_every = embed_every
        #: the relabel guards' settings (all off unless ``guards`` switches some on)
        self.guard_settings = RelabelGuardSettings(**guard_settings(parse_guard(guards or NONE, "guards")))
        self._guard_names = guards_on(self.guard_settings)
        self.config = dict(config or {})
        if canaries:
            self.config["canaries"] = canaries
        if self._guard_names:
            self.config.update(dataclasses.asdict(self.guard_settings))
        self.config.update(view_settings(self.config, relabel_threshold=relabel_threshold,
                                         relabel_from_epoch=relabel_from_epoch, image_size=image_size,
                                         normalize=normalize, model_factory=model_factory, cam_layer=cam_layer))
        self.metadata = dict(metadata or {})
        #: the next epoch ``end_epoch`` commits
        self.epoch = 0
        #: the labels in effect and the guards (the trainer's core, ``training.relabelling``)
        self._relabelling = Relabelling(given[:self.num_train], self.num_classes, self.guard_settings)
        self._figures = EpochFigures(given[:self.num_train], self.num_classes)
        self.figures: dict[str, float] = {}
        self._test_labels = given[self.num_train:].clone()
        self._pending: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]] = []
        self._positions: torch.Tensor | None = None  # scratch: a training id's row in the batch
        self._tap: _LayerTap | None = None
        self._writer: RunLogWriter | None = None
        self._commit: Future[int] | None = None
        self._embed_dim: int | None = None
        self._resume_epochs: int | None = None
        self._rank, self._size = 0, 1
        self._held: list[_HostRecord] = []  # ranks other than 0: the epoch's batches, for rank 0
        self._chunks = {"train": BatchChunk(), "test": BatchChunk()}  # batches not yet made records (chunks.py)
        self._checked: set[str] = set()
        self._step = 0
        self._epoch_started = False  # the labels in effect saw this epoch's start (at its first training batch)
        self._opened = self._closed = False
        self._epoch_start = time.perf_counter()

    # ------------------------------------------------------------------ set-up
    def _plant_canaries(self, fraction: float, seed: int) -> None:
        """Move ``fraction`` of the training labels (``relabscope.data.canaries``); the
        labels from before go into the samples table."""
        try:
            planted, original = plant_canaries(self.samples.given_label[:self.num_train], fraction,
                                               self.num_classes, seed)
        except ValueError as exc:
            raise DataError(f"canaries: {exc}") from None
        self.samples.given_label[:self.num_train] = planted
        test = len(self.samples.given_label) - self.num_train
        self.samples.extras[CANARY_COLUMN] = np.concatenate([original, np.full(test, -1, np.int64)])

    def attach(self, model: torch.nn.Module, embedding_layer: str, embedding_io: EmbeddingIO = "output") -> None:
        """Take each batch's embeddings from a layer of ``model``, so it need not return
        them: the layer's output (or first input) of the batch's last forward pass,
        flattened to ``(B, D)``.

        Args:
            model: the model (or a module holding it).
            embedding_layer: the layer's dotted name in ``model`` ("backbone",
                "encoder.pool", as ``model.named_modules()`` lists them).
            embedding_io: "output" (what the layer returns) or "input" (what it receives,
                e.g. the classifier head's input).

        Raises:
            RelabscopeError: no such layer, or an ``embedding_io`` other than the two.
        """
        if embedding_io not in ("output", "input"):
            raise RelabscopeError(f"embedding_io must be 'output' or 'input', not {embedding_io!r}")
        try:
            layer = model.get_submodule(embedding_layer)
        except AttributeError:
            children = ", ".join(name for name, _ in model.named_children()) or "none"
            raise RelabscopeError(f"embedding_layer {embedding_layer!r}: {type(model).__name__} has no such layer "
                                  f"(its children: {children})") from None
        self.detach()
        self._tap = _LayerTap(layer, embedding_layer, embedding_io)

    def detach(self) -> None:
        """Remove the embedding hook (``close`` does it too)."""
        if self._tap is not None:
            self._tap.remove()
            self._tap = None

    def open(self) -> None:
        """Start logging: check the log path, or reopen the log when a checkpoint's state
        was loaded (:meth:`load_state_dict`), keeping the epochs that state had logged.
        The log itself is created at the first batch, when the embedding size is known.
        Under ``torch.distributed`` every rank calls it; rank 0 alone touches the file.

        Raises:
            RunDirError: a log is already there (and no state was loaded), or the state
                names epochs the log does not hold.
        """
        if self._opened:
            return
        if dist.is_available() and dist.is_initialized():
            self._rank, self._size = dist.get_rank(), dist.get_world_size()
        problem = self._open_log() if self._rank == 0 else None
        if self._size > 1:  # every rank fails alike, none waits for a rank that stopped
            box = [problem]
            dist.broadcast_object_list(box, src=0)
            problem = box[0]
        if problem:
            raise RunDirError(problem)
        self._opened = True
        self._epoch_start = time.perf_counter()

    def _open_log(self) -> str | None:
        keep = self._resume_epochs
        if keep is None:
            if self.path.exists():
                return f"{self.path}: a run log is already there (resume from a checkpoint of its run, " \
                       "or log to another path)"
            return None
        if not self.path.exists():
            return None if keep == 0 else \
                f"{self.path}: the checkpoint's state has {keep} logged epochs but there is no run log to resume"
        try:
            self._writer = RunLogWriter.resume(self.path, keep_epochs=keep, embed_every=self.embed_every,
                                               config=self.config or None, guards=self._guard_names)
        except ValueError as exc:  # the log holds fewer epochs than the state, or other guards
            return f"{self.path}: {exc}"
        self._embed_dim = self._writer.embed_dim
        return None

    # ------------------------------------------------------------------ the loop's calls
    def labels(self, sample_ids: ArrayLike | None = None, phase: Phase = "train") -> torch.Tensor:
        """The labels in effect of training ``sample_ids`` (positions in ``train_labels``;
        on their device), or of every training sample (a copy); with ``phase="test"``, the
        given labels of test (validation) samples, which relabelling never changes."""
        if phase not in ("train", "test"):
            raise DataError(f"phase must be 'train' or 'test', not {phase!r}")
        if sample_ids is None:
            return (self._relabelling.current if phase == "train" else self._test_labels).clone()
        ids = torch.as_tensor(sample_ids)
        self._state_on(ids.device)
        return self._labels_of(_batch_ids(ids, ids.device, phase), phase)

    def relabel(self, sample_ids: ArrayLike, new_labels: ArrayLike, probs: ArrayLike | None = None) -> None:
        """Give training samples of the batch being trained new labels: the one call a
        relabelling method makes. The labels take effect when the batch is logged
        (:meth:`log`), and each change becomes a relabel event with the probability of the
        old and the new label.

        Args:
            sample_ids: training positions, all of them in the current batch.
            new_labels: one class id per sample.
            probs: ``(len(sample_ids), K)`` the class probabilities the decision used,
                when they are not the softmax of the batch's logits; the events' p(old)
                and p(new) come from them.

        Raises:
            DataError: lengths or shapes that do not match.
        """
        ids = torch.as_tensor(sample_ids).detach().reshape(-1).long()
        new = torch.as_tensor(new_labels).detach().reshape(-1).long()
        if len(ids) != len(new):
            raise DataError(f"relabel: {len(ids)} sample ids but {len(new)} new labels")
        p = None
        if probs is not None:
            p = torch.as_tensor(probs).detach().float()
            if tuple(p.shape) != (len(ids), self.num_classes):
                raise DataError(f"relabel: probs have shape {tuple(p.shape)}, expected ({len(ids)}, {self.num_classes})")
        if len(ids):
            self._pending.append((ids, new, p))

    def log(self, sample_ids: ArrayLike, logits: torch.Tensor, embeddings: torch.Tensor | None = None, *,
            phase: Phase = "train") -> None:
        """Record one batch: its labels in effect (train) or given labels (test), logits,
        embeddings and per-sample loss; a training batch applies the relabels made since
        the last one. Returns after queueing copies (see ``RunLogWriter.log_batch``).

        Args:
            sample_ids: ``(B,)`` positions in ``train_labels`` ("train") or in
                ``test_labels`` ("test").
            logits: ``(B, K)``.
            embeddings: ``(B, ...)`` flattened to ``(B, D)``; default: the attached
                layer's, from the batch's forward pass.
            phase: "train" or "test".

        Raises:
            RelabscopeError: not open, no embeddings, or relabels of samples that are not
                in this training batch.
            DataError: ids, logits or embeddings that do not fit the samples or the batch.
        """
        if not self._opened or self._closed:
            raise RelabscopeError(f"{self.path}: RunCapture.log before open() or after close()")
        if phase not in ("train", "test"):
            raise DataError(f"phase must be 'train' or 'test', not {phase!r}")
        logits = logits.detach()
        ids = _batch_ids(sample_ids, logits.device, phase)
        emb = self._batch_embeddings(embeddings)
        self._check_batch(ids, logits, emb, phase)
        self._state_on(logits.device)
        used = self._labels_of(ids, phase)
        if phase == "train":
            if not self._epoch_started:
                self._relabelling.start_epoch(self._world)
                self._figures.start(self._relabelling.current)
                self._epoch_started = True
            self._relabelling.observe(ids, used, emb)
            new, decided = self._apply_relabels(ids, logits, emb)
            rows = ids
        else:
            new, decided, rows = None, None, ids + self.num_train
        step = -1
        if phase == "train":
            step, self._step = self._step, self._step + 1
        chunk = self._chunks[phase]
        chunk.add(step, rows, used, logits, emb, new, decided)
        if chunk.full():
            self._record(phase)

    def end_epoch(self, *, lr: float = float("nan"), save_embeddings: bool | None = None) -> None:
        """Close the epoch: under several ranks, gather their batches to rank 0 and share
        every rank's relabels; then commit it (class means, distances, test accuracy) in
        the background. Every rank calls it.

        Args:
            lr: the epoch's learning rate, for the record.
            save_embeddings: keep this epoch's embeddings (default: every ``embed_every``).

        Raises:
            RelabscopeError: no batch was logged before the first epoch's end.
        """
        if not self._opened or self._closed:
            raise RelabscopeError(f"{self.path}: RunCapture.end_epoch before open() or after close()")
        for phase in self._chunks:
            self._record(phase)
        self._relabelling.end_epoch(self._world)  # every rank: labels, guard state and vetoes merged
        vetoed, self._epoch_started = self._relabelling.vetoed, False
        #: the epoch's numbers for a framework's logger (``relabscope.integrations.figures``)
        self.figures = self._figures.end(self._relabelling.current, vetoed)
        if self._size > 1:
            self._exchange()
        now = time.perf_counter()
        if self._rank == 0:
            if self._writer is None:
                raise RelabscopeError(f"{self.path}: an epoch ended before any batch was logged")
            self._wait_for_commit()
            self._commit = self._writer.end_epoch(lr=lr, seconds=now - self._epoch_start,
                                                  save_embeddings=save_embeddings, vetoed=vetoed, wait=False)
        self.epoch += 1
        self._epoch_start = now

    def close(self, status: str = "finished") -> None:
        """Finish the last commit, record the run's status ("finished", "interrupted",
        "diverged") and close the log; removes the embedding hook. Batches logged since
        the last ``end_epoch`` are not committed."""
        if self._closed:
            return
        self._closed = True
        self.detach()
        if self._writer is not None:
            try:
                self._wait_for_commit()
            finally:
                self._writer.close(status)

    def __enter__(self) -> "RunCapture":
        self.open()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.close("finished" if exc_type is None else "interrupted")

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint keeps: the labels in effect, the epochs logged so far (waits
        for the last commit, so the log holds them) and the relabel guards' state."""
        self._wait_for_commit()
        core = self._relabelling.state_dict()
        state: dict[str, Any] = {"labels": core["labels"]["current"], "epochs": self.epoch, "step": self._step,
                                 "figures": self._figures.state_dict()}
        if "guards" in core:
            state["guards"] = core["guards"]
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from a checkpoint's state: its labels in effect, and :meth:`open`
        reopens the log keeping the epochs the state had logged (later ones go).

        Raises:
            DataError: the state's labels are for a different number of samples.
            RelabscopeError: called after ``open``.
        """
        if self._opened:
            raise RelabscopeError(f"{self.path}: load the checkpoint's state before logging starts")
        labels = torch.as_tensor(state["labels"]).long().cpu()
        if labels.shape != (self.num_train,):
            raise DataError(f"checkpoint state: labels for {labels.numel()} training samples, this run has "
                            f"{self.num_train}")
        missing = [name for name in self._guard_names if name not in state.get("guards", {})]
        if missing:
            raise RunDirError(f"{self.path}: the checkpoint's state holds no state of the relabel guard(s) "
                              f"{', '.join(missing)}; cannot resume with guards={self._guards_text()!r}")
        self._relabelling = Relabelling(self._relabelling.given.cpu(), self.num_classes, self.guard_settings)
        self._relabelling.load_state_dict({"labels": {"current": labels},
                                           **({"guards": state["guards"]} if self._guard_names else {})})
        self.epoch = self._resume_epochs = int(state["epochs"])
        self._step = int(state.get("step", 0))
        if "figures" in state:  # a checkpoint from before figures were kept counts flip-flops anew
            try:
                self._figures.load_state_dict(state["figures"])
            except ValueError as exc:
                raise DataError(f"checkpoint state: {exc}") from None

    # ------------------------------------------------------------------ helpers
    def layer_embeddings(self) -> torch.Tensor | None:
        """The attached layer's ``(B, D)`` embeddings of the last forward pass, once (None
        without a layer or a pass since): for integrations that log a batch later."""
        return None if self._tap is None else self._tap.take()

    def _batch_embeddings(self, given: torch.Tensor | None) -> torch.Tensor:
        if given is not None:
            if given.dim() < 2:
                raise DataError(f"embeddings of shape {tuple(given.shape)}: expected (B, D) or (B, ...)")
            return torch.flatten(given.detach(), 1).clone()  # kept until its chunk becomes a record
        emb = self.layer_embeddings()
        if emb is None:
            raise RelabscopeError("no embeddings for the batch: pass them to log(), or attach() an embedding layer "
                                  "(embedding_layer=) that the forward pass runs")
        return emb

    def _check_batch(self, ids: torch.Tensor, logits: torch.Tensor, emb: torch.Tensor, phase: str) -> None:
        """Shapes always; the ids' range once per phase on a device (one sync: enough to
        catch ids from the wrong split; a device asserts on an index out of range). On the
        host the labels' lookup checks the range for free (:meth:`_labels_of`)."""
        b = len(ids)
        if tuple(logits.shape) != (b, self.num_classes):
            raise DataError(f"{phase} batch: logits of shape {tuple(logits.shape)} for {b} sample ids and "
                            f"{self.num_classes} classes")
        if len(emb) != b:
            raise DataError(f"{phase} batch: {len(emb)} embeddings for {b} sample ids")
        if self._embed_dim is not None and emb.shape[1] != self._embed_dim:
            raise DataError(f"{phase} batch: embeddings of size {emb.shape[1]}, earlier batches {self._embed_dim}")
        n = self.num_train if phase == "train" else len(self._test_labels)
        if b and n == 0:
            raise DataError(f"a {phase} batch, but no {phase}_labels were given")
        if b and ids.device.type != "cpu" and phase not in self._checked:
            self._check_range(ids, phase, n)
            self._checked.add(phase)
        self._embed_dim = emb.shape[1]

    @staticmethod
    def _check_range(ids: torch.Tensor, phase: str, n: int) -> None:
        low, high = (int(v) for v in torch.aminmax(ids))
        if low < 0 or high >= n:
            raise DataError(f"{phase} sample ids must be positions 0..{n - 1} in the {phase} labels, got {low}..{high}")

    def _labels_of(self, ids: torch.Tensor, phase: str) -> torch.Tensor:
        """The labels the batch used: in effect (train) or given (test); ids out of range
        are reported as such (``_check_range``), not as an index error."""
        try:
            return self._relabelling[ids] if phase == "train" else torch.index_select(self._test_labels, 0, ids)
        except IndexError:
            self._check_range(ids, phase, self.num_train if phase == "train" else len(self._test_labels))
            raise

    @property
    def _world(self) -> World:
        return World(rank=self._rank, size=self._size)

    def _guards_text(self) -> str:
        return "+".join(self._guard_names) or NONE

    def _rows(self, ids: torch.Tensor) -> torch.Tensor:
        """A training id's row in the batch ``ids`` (indexed by sample id)."""
        if self._positions is None or self._positions.device != ids.device:
            self._positions = torch.zeros(self.num_train, dtype=torch.long, device=ids.device)
        self._positions[ids] = torch.arange(len(ids), device=ids.device)
        return self._positions

    def _apply_relabels(self, ids: torch.Tensor, logits: torch.Tensor,
                        emb: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Apply the relabels made for this batch (those the guards let stand); its new
        labels and, when a relabel brought its own, the probabilities the events report
        (else None: the softmax)."""
        if not self._pending:
            return None, None
        pending, self._pending = self._pending, []
        device = ids.device
        pids = torch.cat([p[0] for p in pending]).to(device)
        pnew = torch.cat([p[1] for p in pending]).to(device)
        inside = bool(torch.isin(pids, ids).all())  # one sync, in batches that relabel
        if not inside:
            raise RelabscopeError("relabel() named training samples that are not in the batch being logged: call it "
                                  "for the batch's own samples, before the batch is logged")
        if not bool(((pnew >= 0) & (pnew < self.num_classes)).all()):
            raise DataError(f"relabel: new labels must be class ids 0..{self.num_classes - 1}")
        old = self._relabelling[ids]
        proposed = old.clone()
        proposed[self._rows(ids)[pids]] = pnew
        now = self._relabelling.apply(Proposal(ids, old, proposed, logits, emb))
        decided = None
        if any(p[2] is not None for p in pending):
            decided = logits.float().softmax(dim=1)
            rows = self._rows(ids)
            for sample, _, probs in pending:
                if probs is not None:
                    decided[rows[sample.to(device)]] = probs.to(device)
        return now, decided

    def _record(self, phase: str) -> None:
        """The phase's batches since the last record, as one record: to the writer on
        rank 0, held for rank 0 on the others."""
        taken = self._chunks[phase].take()
        if taken is None:
            return
        step, record = taken
        if self._rank == 0:
            self._log_on_writer(phase, step, record)
        else:
            self._held.append(_HostRecord(phase, step, record))

    def _log_on_writer(self, phase: str, step: int, r: Mapping[str, Any]) -> None:
        writer = self._writer or self._create_writer(r["embeddings"].shape[1])
        writer.log_record({**r, "phase": phase, "step": step})

    def _create_writer(self, embed_dim: int) -> RunLogWriter:
        metadata = {**_default_metadata(self.samples, self._size), **self.metadata}
        try:
            self._writer = RunLogWriter.create(self.path, self.samples, self.class_names, embed_dim=embed_dim,
                                               config=self.config, metadata=metadata, embed_every=self.embed_every,
                                               images=self.images, guards=self._guard_names)
        except FileExistsError:
            raise RunDirError(f"{self.path}: a run log appeared there while this run started") from None
        return self._writer

    def _exchange(self) -> None:
        """Rank 0 gets every other rank's batches of the epoch (the labels in effect merged
        already: ``Relabelling.end_epoch``)."""
        held = [r.numpy() for r in self._held]
        self._held = []
        gathered: list[Any] | None = [None] * self._size if self._rank == 0 else None
        dist.gather_object(held, gathered, dst=0)
        if gathered is not None:
            for records in gathered[1:]:
                for r in records:
                    self._log_on_writer(r["phase"], r["step"], r)

    def _wait_for_commit(self) -> None:
        if self._commit is not None:
            commit, self._commit = self._commit, None
            commit.result()

    def _state_on(self, device: torch.device) -> None:
        if self._relabelling.device != device:
            self._relabelling.to(device)
            self._test_labels = self._test_labels.to(device)


class _LayerTap:
    """Keeps one layer's output (or first input) of the last forward pass, flattened to
    ``(B, D)``: a copy, so in-place operations after the layer cannot change it."""

    def __init__(self, layer: torch.nn.Module, name: str, io: EmbeddingIO) -> None:
        self.name, self.io = name, io
        self.value: torch.Tensor | None = None
        self._handle = layer.register_forward_hook(self._keep)

    def _keep(self, module: torch.nn.Module, args: tuple[Any, ...], output: Any) -> None:
        found = _first_tensor(args[0] if args else None) if self.io == "input" else _first_tensor(output)
        if found is None or found.dim() < 2:
            what = "no tensor" if found is None else f"a tensor of shape {tuple(found.shape)}"
            raise RelabscopeError(f"embedding_layer {self.name!r}: its {self.io} is {what}, not a batch (B, ...)")
        self.value = torch.flatten(found.detach(), 1).clone()

    def take(self) -> torch.Tensor | None:
        value, self.value = self.value, None
        return value

    def remove(self) -> None:
        self._handle.remove()


class _HostRecord:
    """One batch's tensors on their way to rank 0: copies into host memory started
    without waiting (pinned memory for CUDA tensors), complete by the epoch's end."""

    def __init__(self, phase: str, step: int, tensors: Mapping[str, torch.Tensor]) -> None:
        self.phase, self.step = phase, step
        self.tensors = {k: v.to("cpu", non_blocking=True) if v.is_cuda else v.clone() for k, v in tensors.items()}
        self.event: Any = None
        if any(v.is_cuda for v in tensors.values()):
            self.event = torch.cuda.current_stream().record_event()

    def numpy(self) -> dict[str, Any]:
        if self.event is not None:
            self.event.synchronize()
        out: dict[str, Any] = {k: v.numpy() for k, v in self.tensors.items()}
        out.update(phase=self.phase, step=self.step)
        return out


def _batch_ids(sample_ids: ArrayLike, device: torch.device, phase: str) -> torch.Tensor:
    """A batch's ids as a 1-D int64 tensor on ``device``: as given when they are one already
    (the common case costs no tensor call).

    Raises:
        DataError: ids that are not integers.
    """
    if isinstance(sample_ids, torch.Tensor) and sample_ids.dtype == torch.long and sample_ids.dim() == 1 \
            and sample_ids.device == device and not sample_ids.requires_grad:
        return sample_ids
    ids = torch.as_tensor(sample_ids).detach().reshape(-1).to(device)
    if ids.is_floating_point() or ids.dtype == torch.bool:
        raise DataError(f"{phase} sample ids must be integers, not {ids.dtype}")
    return ids.long()


def _first_tensor(value: Any) -> torch.Tensor | None:
    """A tensor, the first item of a tuple or list, or the first value of a mapping (a
    transformers ModelOutput)."""
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (tuple, list)) and value:
        return _first_tensor(value[0])
    if isinstance(value, Mapping) and value:
        return _first_tensor(next(iter(value.values())))
    return None


def view_settings(config: Mapping[str, Any], *, relabel_threshold: float | None = None,
                  relabel_from_epoch: int | None = None, image_size: int | None = None,
                  normalize: tuple[Sequence[float], Sequence[float]] | None = None,
                  model_factory: str | None = None, cam_layer: str | None = None) -> dict[str, Any]:
    """The config entries the views read, from RunCapture's first-class arguments (see
    :class:`RunCapture`): ``delta``, ``relabel_epoch`` (1-based), ``image_size``,
    ``normalize`` ({"mean": [...], "std": [...]}), ``model`` ({"factory", "layer"}). One
    line for a value out of range or one that ``config`` already gives otherwise."""
    out: dict[str, Any] = {}
    if cam_layer is not None and model_factory is None:
        raise DataError("cam_layer names a layer of the model_factory's model: give model_factory too")
    if model_factory is not None:
        try:
            out["model"] = ModelSpec(model_factory, layer=cam_layer).to_config()
        except RelabscopeError as exc:
            raise DataError(str(exc)) from None
    if relabel_threshold is not None:
        if not 0 <= float(relabel_threshold) <= 1:
            raise DataError(f"relabel_threshold must be a probability margin in [0, 1], got {relabel_threshold!r}")
        out["delta"] = float(relabel_threshold)
    if relabel_from_epoch is not None:
        if int(relabel_from_epoch) < 0:
            raise DataError(f"relabel_from_epoch counts from 0, got {relabel_from_epoch!r}")
        out["relabel_epoch"] = int(relabel_from_epoch) + 1
    if image_size is not None:
        if int(image_size) < 1:
            raise DataError(f"image_size must be a positive number of pixels, got {image_size!r}")
        out["image_size"] = int(image_size)
    if normalize is not None:
        mean, std = ([float(v) for v in part] for part in normalize)
        if len(mean) != len(std) or not mean or min(std) <= 0:
            raise DataError(f"normalize: (mean, std) with one value per channel and std > 0, got {normalize!r}")
        out["normalize"] = {"mean": mean, "std": std}
    clash = [k for k, v in out.items() if k in config and config[k] != v]
    if clash:
        raise DataError(f"config[{clash[0]!r}] = {config[clash[0]]!r} but the argument gives {out[clash[0]]!r}: "
                        "give it once")
    return out


def _class_ids(values: ArrayLike, name: str, unknown_ok: bool = False) -> np.ndarray:
    array = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
    if array.size == 0:
        return np.zeros(0, np.int64)
    if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
        raise DataError(f"{name}: expected a 1-D array of integer class ids, got {array.dtype} of shape {array.shape}")
    if array.min() < (-1 if unknown_ok else 0):
        raise DataError(f"{name}: class ids must be >= 0{' (-1: unknown)' if unknown_ok else ''}, got {array.min()}")
    return array.astype(np.int64)


def _class_names(names: Iterable[str] | None, given: torch.Tensor) -> list[str]:
    k = int(given.max()) + 1 if len(given) else 0
    if names is None:
        return [str(c) for c in range(max(k, 1))]
    out = [str(n) for n in names]
    if k > len(out):
        raise DataError(f"class_names: {len(out)} names, but the labels use class id {k - 1}")
    return out


def _default_metadata(samples: SampleTable, world_size: int) -> dict[str, Any]:
    train = int(samples.train_mask.sum())
    return {
        "created": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "relabscope_version": __version__,
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "dataset": "custom",
        "method": "custom",
        "writer": "capture",  # a model of the user's: the views ask for it instead of a checkpoint
        "num_train": train,
        "num_test": len(samples) - train,
        "world_size": world_size,
    }
