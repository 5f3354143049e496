"""A Lightning callback that writes a relabscope run log of any LightningModule.

What it reads from each batch (the default convention; override the ``batch_*`` methods
for another):

- **sample ids**: ``batch["sample_id"]`` of a dict batch, or the last item of a tuple or
  list batch (``(x, y, sample_id)``); a training sample's id is its position in
  ``train_labels``, a validation sample's its position in ``test_labels``;
- **logits**: ``outputs["logits"]``, where ``outputs`` is what ``training_step`` and
  ``validation_step`` return (``return {"loss": loss, "logits": logits}``);
- **embeddings**: the output (or input) of the layer named by ``embedding_layer``, taken
  by a forward hook, or ``outputs["embeddings"]`` when the step returns them.

Epochs: a training epoch and the validation Lightning runs at its end make one logged
epoch (log row = ``trainer.current_epoch``). It is committed as soon as both are logged:
in ``on_validation_end`` of that validation, or in ``on_train_epoch_end`` in epochs without
one. Either way before a checkpoint of the epoch's end is saved (checkpoint callbacks run
last), so such a checkpoint always comes with its epoch in the log, and a fit resumed from
it (Lightning may run the epoch's ``on_train_epoch_end`` again) commits nothing twice.
Validation runs in the middle of an epoch (``val_check_interval`` < 1) overwrite each
other; the epoch keeps the last. Sanity-check batches and dataloaders other than the first
are not logged.

Under the DDP strategies exactly one process (global rank 0) writes; the other ranks send
their batches to it at each epoch's end, and every rank applies every rank's relabels.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import torch

try:
    import lightning.pytorch as pl
    from lightning.pytorch.utilities.types import STEP_OUTPUT
except ImportError as exc:
    raise ImportError(f"relabscope.integrations.lightning needs Lightning: pip install 'relabscope[lightning]' "
                      f"({exc})") from exc

from relabscope.errors import RelabscopeError
from relabscope.integrations.capture import ArrayLike, CaptureOptions, EmbeddingIO, Phase, RunCapture

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing.Unpack of TypedDict keywords: Python 3.12


class RelabscopeCallback(pl.Callback):
    """Logs every training and validation batch's sample ids, labels in effect, logits and
    embeddings to a relabscope run log, and holds the labels in effect that a relabelling
    method reads (:meth:`labels`) and changes (:meth:`relabel`) in its ``training_step``.

    Checkpoints keep the labels in effect and the logged epochs (``state_dict``): when
    ``Trainer.fit(ckpt_path=...)`` resumes, the log is reopened and cut back to the epochs
    that checkpoint had logged. A checkpoint saved in the middle of an epoch resumes with
    that epoch's earlier batches missing from the log (under DDP also other ranks'
    relabels of that epoch, which reach every rank at the epoch's end).

    Args:
        path: a ``.h5`` file, or a directory to hold ``run.h5``; it must not hold a log
            unless the fit resumes from a checkpoint of the run that wrote it.
        train_labels: ``(n_train,)`` the given label of each training sample.
        test_labels: ``(n_test,)`` the given label of each validation sample.
        embedding_layer: dotted name of the layer whose output (or input) is the
            embedding, in the LightningModule ("backbone", "model.head").
        embedding_io: "output" or "input" of that layer.
        log_figures: send relabscope's numbers of each epoch (relabels, flip-flops so far,
            guard vetoes, classes below half their given size:
            ``relabscope.integrations.figures``) to the trainer's loggers under
            ``relabscope/``, beside the module's own metrics (default on).
        **options: :class:`~relabscope.integrations.capture.RunCapture`'s keyword
            arguments, as they are (``CaptureOptions``): the samples' names, clean labels
            and images, ``config``, ``metadata``, ``guards``, and what the views need of
            your method and model (docs/integrations.md, "What each view needs").

    Example:
        >>> import relabscope.integrations.lightning as rl
        >>> log = rl.RelabscopeCallback("runs/mine", [0, 1, 1], [0, 1], embedding_layer="backbone")
        >>> log.labels().tolist()
        [0, 1, 1]
    """

    def __init__(
        self,
        path: str | Path,
        train_labels: ArrayLike,
        test_labels: ArrayLike | None = None,
        *,
        embedding_layer: str | None = None,
        embedding_io: EmbeddingIO = "output",
        log_figures: bool = True,
        **options: Unpack[CaptureOptions],
    ) -> None:
        self.log_figures = log_figures
        options["metadata"] = {"framework": "lightning", **(options.get("metadata") or {})}
        self.capture = RunCapture(path, train_labels, test_labels, **options)
        self.embedding_layer = embedding_layer
        self.embedding_io = embedding_io
        self._logging = False
        self._epoch_trained = False  # the current epoch's last training batch is logged

    # ------------------------------------------------------------------ for the module
    @classmethod
    def of(cls, trainer: pl.Trainer) -> RelabscopeCallback:
        """The trainer's RelabscopeCallback: how a LightningModule (in a file of its own)
        reaches it, ``RelabscopeCallback.of(self.trainer)`` in ``training_step``.

        Raises:
            RelabscopeError: the trainer has none, or several.
        """
        found = [c for c in trainer.callbacks if isinstance(c, cls)]  # type: ignore[attr-defined]
        if len(found) != 1:
            raise RelabscopeError(f"RelabscopeCallback.of: the trainer has {len(found) or 'no'} RelabscopeCallback"
                                  f"{'s' if len(found) > 1 else ''}; pass exactly one in Trainer(callbacks=[...])")
        callback: RelabscopeCallback = found[0]
        return callback

    def labels(self, sample_ids: ArrayLike | None = None) -> torch.Tensor:
        """The labels in effect of training ``sample_ids`` (on their device), or of all."""
        return self.capture.labels(sample_ids)

    def relabel(self, sample_ids: ArrayLike, new_labels: ArrayLike, probs: ArrayLike | None = None) -> None:
        """New labels for samples of the current training batch (``RunCapture.relabel``):
        call it in ``training_step``; they take effect from the next batch."""
        self.capture.relabel(sample_ids, new_labels, probs)

    # ------------------------------------------------------------------ where things are
    def batch_sample_ids(self, batch: Any) -> torch.Tensor:
        """The batch's sample ids (positions in their split's labels)."""
        if isinstance(batch, Mapping):
            if "sample_id" not in batch:
                raise RelabscopeError(f"RelabscopeCallback: the batch has no 'sample_id' (keys: {', '.join(batch)}); "
                                      "add it, or override batch_sample_ids")
            return torch.as_tensor(batch["sample_id"])
        if isinstance(batch, (tuple, list)) and len(batch) >= 3:
            return torch.as_tensor(batch[-1])
        raise RelabscopeError("RelabscopeCallback: cannot find sample ids in the batch: make it a dict with "
                              "'sample_id' or a tuple (inputs, labels, sample_id), or override batch_sample_ids")

    def batch_logits(self, outputs: STEP_OUTPUT, batch: Any) -> torch.Tensor:
        """The batch's ``(B, K)`` logits: ``outputs["logits"]``."""
        if isinstance(outputs, Mapping) and "logits" in outputs:
            logits: torch.Tensor = outputs["logits"]
            return logits
        raise RelabscopeError("RelabscopeCallback: training_step and validation_step must return a dict with "
                              "'logits' (return {'loss': loss, 'logits': logits}), or override batch_logits")

    def batch_embeddings(self, outputs: STEP_OUTPUT, batch: Any) -> torch.Tensor | None:
        """The batch's embeddings: ``outputs["embeddings"]`` if the step returns them, else
        None (the ``embedding_layer``'s)."""
        if isinstance(outputs, Mapping) and "embeddings" in outputs:
            embeddings: torch.Tensor = outputs["embeddings"]
            return embeddings
        return None

    # ------------------------------------------------------------------ Lightning's events
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.embedding_layer is not None:
            self.capture.attach(pl_module, self.embedding_layer, self.embedding_io)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # after the checkpoint's state is restored (some strategies restore after on_fit_start)
        self.capture.open()
        self._logging = True

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._epoch_trained = False

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: STEP_OUTPUT,
                           batch: Any, batch_idx: int) -> None:
        self._log(outputs, batch, "train")
        self._epoch_trained = batch_idx + 1 >= trainer.num_training_batches

    def on_validation_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: STEP_OUTPUT,
                                batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        if self._logging and not trainer.sanity_checking and dataloader_idx == 0:
            self._log(outputs, batch, "test")

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._logging and not trainer.sanity_checking and self._epoch_trained:
            self._commit(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._commit(trainer)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._logging = False
        self.capture.close("finished")

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._logging = False
        try:
            self.capture.close("interrupted")
        except Exception as exc:  # the fit's own exception is the one to raise
            warnings.warn(f"RelabscopeCallback: closing the run log failed too: {exc}", stacklevel=2)

    def state_dict(self) -> dict[str, Any]:
        return self.capture.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.capture.load_state_dict(state_dict)

    def _commit(self, trainer: pl.Trainer) -> None:
        """Commit the current epoch unless the log already holds it."""
        epoch = trainer.current_epoch
        if self.capture.epoch > epoch:
            return
        last = trainer.max_epochs is not None and 0 < trainer.max_epochs <= epoch + 1  # -1: no limit
        optimizers = trainer.optimizers
        lr = float(optimizers[0].param_groups[0]["lr"]) if optimizers else float("nan")
        self.capture.end_epoch(lr=lr, save_embeddings=True if last else None)
        if self.log_figures and trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.log_metrics({**self.capture.figures, "epoch": epoch}, step=trainer.global_step)

    def _log(self, outputs: STEP_OUTPUT, batch: Any, phase: Phase) -> None:
        self.capture.log(self.batch_sample_ids(batch), self.batch_logits(outputs, batch),
                         self.batch_embeddings(outputs, batch), phase=phase)
