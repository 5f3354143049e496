"""A transformers ``Trainer`` callback that writes a relabscope run log of an image
classifier (``ViTForImageClassification``, ``ConvNextForImageClassification``, ...).

A Trainer callback sees events, not batches or outputs, so the callback hooks the model:

- a forward pre-hook takes each batch's sample ids out of the inputs (the model would
  refuse an unknown argument) and, in training, puts the labels in effect in place of
  ``labels``, so the model's own loss trains on them;
- a forward hook takes the logits (``outputs.logits``), and a hook on
  ``embedding_layer`` the embeddings (default: the input of ``classifier``, which is the
  pooled or [CLS] feature in transformers' image classifiers);
- train or test comes from ``model.training`` (the Trainer's evaluation runs in eval
  mode).

The pre-hook stays on the model after training (installed when the Trainer is built), so
``trainer.evaluate()`` and ``trainer.predict()`` work on the same data sets before and
after ``train()``; only batches of ``train()`` are logged.

What a script must set: each item of the training and evaluation data sets carries its
position in its split under ``"sample_id"`` (an int), and
``TrainingArguments(remove_unused_columns=False)`` keeps that column in the batches (the
Trainer drops inputs the model's ``forward`` does not name otherwise).

relabscope's numbers of each epoch (``relabscope.integrations.figures``: relabels, flip-flops
so far, guard vetoes, classes below half) go into the Trainer's log once the callback knows
its Trainer, which a Trainer callback is not given: ``callback.attach_to(trainer)`` (or
``RelabscopeTrainerCallback.of(trainer)`` finding it) makes them go through ``trainer.log``,
so the log history and every ``report_to`` logger (TensorBoard, W&B, MLflow) get them. A
callback that only sits in ``Trainer(callbacks=[...])`` puts them in
``trainer.state.log_history`` alone, and says so once when ``report_to`` names a logger.

Epochs: a training epoch is committed after the evaluation the Trainer runs at its end
(``eval_strategy="epoch"``), else at its end. A run that stops with an exception leaves the log as a killed run does: the
committed epochs, readable, status "running".

Resuming: each checkpoint the Trainer saves gets the callback's state beside it
(``checkpoint-N/relabscope.pt``: the labels in effect, the epochs logged, the relabel
guards' state), and ``trainer.train(resume_from_checkpoint=...)`` with a new callback on
the same log path continues the log from it (later epochs of the log go, as they do for
``relabscope train --resume``). Only a checkpoint saved at an epoch's end can be resumed
(``save_strategy="epoch"``): one saved inside an epoch holds relabels whose epoch the log
never committed, and resuming from it is refused in one line. The checkpoint must be in
``output_dir`` (where the Trainer saves them): a Trainer callback is not told which folder
``resume_from_checkpoint`` named.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import torch

try:
    from transformers import Trainer, TrainerCallback, TrainerControl, TrainerState, TrainingArguments
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
    from transformers.utils.generic import ModelOutput
except ImportError as exc:
    raise ImportError(f"relabscope.integrations.hf needs transformers: pip install 'relabscope[hf]' ({exc})") from exc

from relabscope.atomic import atomic_write
from relabscope.errors import RelabscopeError
from relabscope.integrations.capture import ArrayLike, CaptureOptions, EmbeddingIO, Phase, RunCapture

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing.Unpack of TypedDict keywords: Python 3.12

#: the callback's state in each checkpoint folder the Trainer saves
STATE_FILE = "relabscope.pt"


class RelabscopeTrainerCallback(TrainerCallback):
    """Logs every training and evaluation batch of a transformers ``Trainer`` to a
    relabscope run log, and holds the labels in effect: the model trains on them, and a
    relabelling method changes them with :meth:`relabel` (e.g. in an overridden
    ``Trainer.compute_loss``, which sees the batch's ``sample_id`` and the outputs).

    Args:
        path: a ``.h5`` file, or a directory to hold ``run.h5``; it must not hold a log,
            unless the Trainer resumes from a checkpoint of this run (module docstring).
        train_labels: ``(n_train,)`` the given label of each training sample.
        test_labels: ``(n_test,)`` the given label of each evaluation sample.
        embedding_layer: dotted name of the layer whose input (or output) is the
            embedding, in the model.
        embedding_io: "input" or "output" of that layer.
        id_key: the batch key holding the sample ids.
        replace_labels: train on the labels in effect (the batch's ``labels`` replaced
            by them); False leaves the batch's labels alone (only logging).
        log_figures: put relabscope's numbers of each epoch into the Trainer's log
            (module docstring) under ``relabscope/``.
        **options: :class:`~relabscope.integrations.capture.RunCapture`'s keyword
            arguments, as they are (``CaptureOptions``): the samples' names, clean labels
            and images, ``config``, ``metadata``, ``guards``, and what the views need of
            your method and model (docs/integrations.md, "What each view needs").
    """

    def __init__(
        self,
        path: str | Path,
        train_labels: ArrayLike,
        test_labels: ArrayLike | None = None,
        *,
        embedding_layer: str = "classifier",
        embedding_io: EmbeddingIO = "input",
        id_key: str = "sample_id",
        replace_labels: bool = True,
        log_figures: bool = True,
        **options: Unpack[CaptureOptions],
    ) -> None:
        options["metadata"] = {"framework": "transformers", **(options.get("metadata") or {})}
        self.capture = RunCapture(path, train_labels, test_labels, **options)
        self.embedding_layer = embedding_layer
        self.embedding_io = embedding_io
        self.id_key = id_key
        self.replace_labels = replace_labels
        self.log_figures = log_figures
        self._trainer: Trainer | None = None  # known through attach_to() or of(): the figures go through its log
        self._said_unbound = False  # warned that report_to loggers miss the figures
        self._model: torch.nn.Module | None = None  # the model the hooks are on
        self._active = False  # inside train(): batches are logged
        self._ids: torch.Tensor | None = None  # the batch in the model's forward pass
        self._phase: Phase = "train"
        self._staged: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None] | None = None
        self._epoch_over = False  # the training epoch ended; its evaluation may follow
        self._trained = False  # a training batch was logged since the last commit
        self._epochs = 0  # the Trainer's epochs, for "keep the last epoch's embeddings"

    # ------------------------------------------------------------------ the Trainer
    def attach_to(self, trainer: Trainer) -> RelabscopeTrainerCallback:
        """Join ``trainer``'s callbacks (if not one of them yet) and log relabscope's
        numbers of each epoch through ``trainer.log``, so its log history and every
        ``report_to`` logger get them. Returns the callback:
        ``log = RelabscopeTrainerCallback(...).attach_to(trainer)``."""
        if self not in trainer.callback_handler.callbacks:
            trainer.add_callback(self)
        self._trainer = trainer
        if trainer.model is not None:
            self._install(trainer.model)  # evaluate() before train() already meets sample ids
        return self

    @classmethod
    def of(cls, trainer: Trainer) -> RelabscopeTrainerCallback:
        """The trainer's RelabscopeTrainerCallback: how an overridden ``compute_loss``
        reaches it (``RelabscopeTrainerCallback.of(self)``); the callback then knows its
        Trainer too (:meth:`attach_to`).

        Raises:
            RelabscopeError: the trainer has none, or several.
        """
        found = [c for c in trainer.callback_handler.callbacks if isinstance(c, cls)]
        if len(found) != 1:
            raise RelabscopeError(f"RelabscopeTrainerCallback.of: the trainer has {len(found) or 'no'} "
                                  f"RelabscopeTrainerCallback{'s' if len(found) > 1 else ''}; pass exactly one "
                                  "in Trainer(callbacks=[...]) or call attach_to(trainer)")
        callback: RelabscopeTrainerCallback = found[0]
        return callback.attach_to(trainer)

    # ------------------------------------------------------------------ for the method
    def labels(self, sample_ids: ArrayLike | None = None, phase: Phase | None = None) -> torch.Tensor:
        """The labels of ``sample_ids`` (on their device) in ``phase``: "train", the labels
        in effect of training samples; "test", the given labels of evaluation samples
        (positions in ``test_labels``). By default the model's mode says which, so
        ``compute_loss`` reads the right ones in training and in evaluation alike (the
        Trainer evaluates in eval mode, and calls ``compute_loss`` then too). Without ids:
        every training sample's label in effect, unless ``phase="test"``."""
        if phase is None:
            phase = "train" if sample_ids is None or self._training() else "test"
        return self.capture.labels(sample_ids, phase=phase)

    def relabel(self, sample_ids: ArrayLike, new_labels: ArrayLike, probs: ArrayLike | None = None) -> None:
        """New labels for samples of the current training batch (``RunCapture.relabel``);
        they take effect from the next batch.

        Raises:
            RelabscopeError: called while the model evaluates (``compute_loss`` runs in
                ``trainer.evaluate()`` too: guard the rule with ``if model.training:``).
        """
        if not self._training():
            raise RelabscopeError("RelabscopeTrainerCallback.relabel() during evaluation: the Trainer calls "
                                  "compute_loss for evaluation batches too, whose ids are evaluation samples; "
                                  "relabel only when model.training is True")
        self.capture.relabel(sample_ids, new_labels, probs)

    # ------------------------------------------------------------------ the Trainer's events
    def on_init_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                    **kwargs: Any) -> None:
        self._install(kwargs["model"])

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                       **kwargs: Any) -> None:
        if args.remove_unused_columns:
            raise RelabscopeError(f"RelabscopeTrainerCallback: set TrainingArguments(remove_unused_columns=False), "
                                  f"or the Trainer drops the {self.id_key!r} column before the model sees it")
        model: torch.nn.Module = kwargs["model"]
        self._install(model)  # a callback added after the Trainer was built
        self.capture.attach(model, self.embedding_layer, self.embedding_io)
        self._epochs = math.ceil(state.num_train_epochs)
        if state.global_step > 0:  # the Trainer resumed from a checkpoint
            self._resume(args, state)
        self.capture.open()
        self._active = True

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                    **kwargs: Any) -> None:
        self._flush()

    def on_epoch_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                       **kwargs: Any) -> None:
        if self._epoch_over:  # no evaluation after the last epoch
            self._commit(args, state, kwargs.get("optimizer"))

    def on_epoch_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                     **kwargs: Any) -> None:
        self._flush()
        self._epoch_over = True
        if not control.should_evaluate:  # no evaluation follows at this epoch's end
            self._commit(args, state, kwargs.get("optimizer"))

    def on_evaluate(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                    **kwargs: Any) -> None:
        if self._epoch_over:
            self._commit(args, state, kwargs.get("optimizer"))

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                **kwargs: Any) -> None:
        """Put the state beside the checkpoint the Trainer just saved: an ended epoch is
        committed first, so the state names it; inside an epoch the file only says so."""
        if self._epoch_over:
            self._commit(args, state, kwargs.get("optimizer"))
        if not state.is_world_process_zero:
            return
        folder = _checkpoint_folder(args, state)
        saved: dict[str, Any] = {"mid_epoch": self._trained, "epoch": self.capture.epoch}
        if not self._trained:
            saved["capture"] = self.capture.state_dict()
        with atomic_write(folder / STATE_FILE) as fh:
            torch.save(saved, fh)

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                     **kwargs: Any) -> None:
        self._flush()
        if self._epoch_over:
            self._commit(args, state, kwargs.get("optimizer"))
        self._active = False
        self.capture.close("finished")

    # ------------------------------------------------------------------ the model's hooks
    def _install(self, model: torch.nn.Module) -> None:
        if self._model is not model:
            model.register_forward_pre_hook(self._before_forward, with_kwargs=True)
            model.register_forward_hook(self._after_forward)
            self._model = model

    def _before_forward(self, module: torch.nn.Module, args: tuple[Any, ...],
                        kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        ids = kwargs.pop(self.id_key, None)
        if not self._active:
            return args, kwargs
        self._flush()  # the previous training batch, with the relabels made for it
        if ids is None:
            raise RelabscopeError(f"RelabscopeTrainerCallback: the batch has no {self.id_key!r}: give every data set "
                                  f"item its position in its split as {self.id_key!r}, and set "
                                  "TrainingArguments(remove_unused_columns=False)")
        self._ids = torch.as_tensor(ids)
        self._phase = "train" if module.training else "test"
        if self._phase == "train" and self.replace_labels and kwargs.get("labels") is not None:
            kwargs["labels"] = self.capture.labels(self._ids).to(kwargs["labels"].device)
        return args, kwargs

    def _after_forward(self, module: torch.nn.Module, args: tuple[Any, ...], output: Any) -> None:
        if not self._active:
            return
        logits = output.get("logits") if isinstance(output, (ModelOutput, Mapping)) else output
        if not isinstance(logits, torch.Tensor):
            raise RelabscopeError(f"RelabscopeTrainerCallback: the model returned no logits ({type(output).__name__})")
        assert self._ids is not None  # set by the pre-hook of this forward pass
        batch = (self._ids, logits.detach(), self.capture.layer_embeddings())
        if self._phase == "train":
            self._staged = batch  # logged after the step: relabels for it may follow the forward pass
        else:
            self.capture.log(*batch, phase="test")

    # ------------------------------------------------------------------ helpers
    def _training(self) -> bool:
        """Whether the model trains now (the Trainer evaluates and predicts in eval mode);
        True before the callback has met the model."""
        return self._model is None or bool(self._model.training)

    def _resume(self, args: TrainingArguments, state: TrainerState) -> None:
        """Load the state saved with the checkpoint the Trainer resumed from."""
        folder = _checkpoint_folder(args, state)
        path = folder / STATE_FILE
        if not path.is_file():
            raise RelabscopeError(f"{folder}: the Trainer resumes from step {state.global_step} but this folder holds "
                                  f"no {STATE_FILE} (a checkpoint saved without the callback, or one outside "
                                  f"output_dir): cannot continue the log {self.capture.path}")
        saved = torch.load(path, weights_only=True)
        if saved["mid_epoch"]:
            raise RelabscopeError(f"{path}: saved inside epoch {saved['epoch'] + 1}, whose relabels the log never "
                                  "committed; resume from a checkpoint saved at an epoch's end "
                                  "(TrainingArguments(save_strategy='epoch'))")
        self.capture.load_state_dict(saved["capture"])

    def _flush(self) -> None:
        if self._staged is not None:
            staged, self._staged = self._staged, None
            self.capture.log(*staged, phase="train")
            self._trained = True

    def _commit(self, args: TrainingArguments, state: TrainerState, optimizer: Any) -> None:
        lr = float(optimizer.param_groups[0]["lr"]) if optimizer is not None else float("nan")
        last = self.capture.epoch + 1 >= self._epochs
        self.capture.end_epoch(lr=lr, save_embeddings=True if last else None)
        self._epoch_over = self._trained = False
        if self.log_figures:
            self._log_figures(args, state)

    def _log_figures(self, args: TrainingArguments, state: TrainerState) -> None:
        """The epoch's numbers into the Trainer's log: through ``Trainer.log`` (history
        and reporters) when the callback knows its Trainer, else into the history, saying
        once which ``report_to`` loggers miss them."""
        figures = dict(self.capture.figures)
        if self._trainer is not None:
            self._trainer.log(figures)
            return
        state.log_history.append({**figures, "epoch": state.epoch, "step": state.global_step})
        reporters = [r for r in (args.report_to or []) if r != "none"]
        if reporters and not self._said_unbound:
            self._said_unbound = True
            warnings.warn(f"RelabscopeTrainerCallback: relabscope's numbers reach report_to={reporters} only after "
                          "callback.attach_to(trainer); until then they are in trainer.state.log_history alone",
                          stacklevel=2)


def _checkpoint_folder(args: TrainingArguments, state: TrainerState) -> Path:
    """Where the Trainer saves (and, by default, resumes) the checkpoint of this step."""
    if args.output_dir is None:
        raise RelabscopeError("RelabscopeTrainerCallback: TrainingArguments has no output_dir to keep checkpoints in")
    return Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
