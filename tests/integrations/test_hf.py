"""RelabscopeTrainerCallback with the transformers Trainer on a tiny randomly initialised
ViT (nothing downloaded): the log holds the relabels, the model trains on the labels in
effect, and the embeddings are the classifier's input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

transformers = pytest.importorskip("transformers")

import relabscope as rs  # noqa: E402
from relabscope.errors import RelabscopeError  # noqa: E402
from relabscope.integrations.hf import RelabscopeTrainerCallback  # noqa: E402
from tests.integrations.tiny import K, make_data, relabel_rule  # noqa: E402

EPOCHS = 3


class Items(torch.utils.data.Dataset):
    """Dict items as an image processor would give them, plus their position."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> dict:
        return {"pixel_values": self.x[i], "labels": int(self.y[i]), "sample_id": i}


class RelabellingTrainer(transformers.Trainer):
    """A relabelling method: decides from the outputs in compute_loss, reports relabel()."""

    def __init__(self, *args, guarded: bool = True, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.guarded = guarded  # the rule runs only when model.training (as the docs show)
        self.made: list[tuple[int, list[int], list[int]]] = []
        self.loss_gaps: list[tuple[float, float]] = []  # |loss - CE(labels in effect)|, |loss - CE(given)|
        self.eval_labels: list[bool] = []  # in evaluation: labels(ids) == the batch's given labels

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss, outputs = super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)
        relabscope = RelabscopeTrainerCallback.of(self)  # as the docs show: no global, no argument
        if not model.training:
            self.eval_labels.append(torch.equal(relabscope.labels(inputs["sample_id"]), inputs["labels"]))
        if model.training or not self.guarded:
            ids, given = inputs["sample_id"], inputs["labels"]
            effect = relabscope.labels(ids)
            if (effect != given).any():
                self.loss_gaps.append(((loss - F.cross_entropy(outputs.logits, effect)).abs().item(),
                                       (loss - F.cross_entropy(outputs.logits, given)).abs().item()))
            epoch = relabscope.capture.epoch
            relabel_ids, new = relabel_rule(ids, outputs.logits, effect, epoch)
            if len(relabel_ids):
                relabscope.relabel(relabel_ids, new)
                self.made.append((epoch, relabel_ids.tolist(), new.tolist()))
        return (loss, outputs) if return_outputs else loss


def _train(tmp_path, remove_unused_columns: bool = False, epochs: int = EPOCHS, guarded: bool = True,
           callback_options: dict | None = None, trainer_class: type = RelabellingTrainer, **arguments):
    data = make_data(size=16, channels=3)
    config = transformers.ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                                    image_size=16, patch_size=4, num_channels=3, num_labels=K)
    torch.manual_seed(0)
    model = transformers.ViTForImageClassification(config)
    callback = RelabscopeTrainerCallback(tmp_path / "run.h5", data.y_train, data.y_test, class_names=["a", "b", "c"],
                                         clean_labels=data.clean, **(callback_options or {}))
    args = transformers.TrainingArguments(
        **{"output_dir": str(tmp_path / "out"), "num_train_epochs": epochs, "per_device_train_batch_size": 16,
           "per_device_eval_batch_size": 16, "learning_rate": 1e-3, "eval_strategy": "epoch", "save_strategy": "no",
           "logging_strategy": "no", "report_to": "none", "use_cpu": True, "disable_tqdm": True,
           "dataloader_num_workers": 0, "remove_unused_columns": remove_unused_columns, "seed": 0, **arguments})
    extra = {"guarded": guarded} if trainer_class is RelabellingTrainer else {}
    trainer = trainer_class(model=model, args=args, train_dataset=Items(data.x_train, data.y_train),
                            eval_dataset=Items(data.x_test, data.y_test), callbacks=[callback], **extra)
    return trainer, callback, data


def test_trainer_run_logs_relabels_labels_in_effect_and_classifier_inputs(tmp_path) -> None:
    trainer, callback, data = _train(tmp_path)
    trainer.train()
    with rs.open_run(tmp_path / "run.h5") as run:
        assert run.num_epochs == EPOCHS and run.status == "finished" and run.meta["framework"] == "transformers"
        events = run.relabel_events()
        made = sorted((e, i, n) for e, ids, new in trainer.made for i, n in zip(ids, new))
        assert sorted(zip(events["epoch"], events["sample_id"], events["new"])) == made and len(made) > 10
        first = events[events["epoch"] == 1]
        assert (run.labels()[2, first["sample_id"]] == first["new"]).all()
        np.testing.assert_array_equal(callback.labels().numpy(), run.final_labels()[:96])

        model = trainer.model.eval()
        with torch.no_grad():  # the last evaluation ran with the final weights
            cls = model.vit(data.x_test).last_hidden_state[:, 0].numpy()
            pred = model(pixel_values=data.x_test).logits.argmax(1).numpy()
        emb = run.embeddings(EPOCHS - 1)
        assert emb.shape == (96 + 48, 32) and np.isfinite(emb).all()
        np.testing.assert_allclose(emb[96:], cls, rtol=5e-3, atol=5e-3)
        np.testing.assert_array_equal(run.predictions()[-1, 96:], pred)
        assert run.metrics()["test_acc"].iloc[-1] == pytest.approx(np.mean(pred == data.y_test.numpy()))
        assert len(run.flipflops()) == 96 and len(run.dynamics()) == 96
    # the model's own loss trained on the labels in effect, not on the batch's given labels
    assert trainer.loss_gaps and all(effect < 1e-5 < given for effect, given in trainer.loss_gaps)
    assert "eval_loss" in trainer.evaluate()  # the sample_id column still works after training


def test_evaluation_between_epochs_reads_evaluation_labels_and_refuses_relabels(tmp_path) -> None:
    """The Trainer calls compute_loss in evaluation too (eval mode, evaluation samples'
    ids): labels(ids) there are those samples' given labels, not training labels; a rule
    that relabels without checking model.training is stopped in one line at the first
    evaluation where it would relabel, not at a later training batch with a misleading one."""
    trainer, _, _ = _train(tmp_path / "guarded", epochs=2)
    trainer.train()
    assert len(trainer.eval_labels) >= 2 * 3 and all(trainer.eval_labels)  # 48 eval samples: 3 batches per evaluation
    trainer, _, _ = _train(tmp_path / "unguarded", epochs=2, guarded=False)
    with pytest.raises(RelabscopeError, match=r"relabel\(\) during evaluation.*relabel only when model.training"):
        trainer.train()


def test_trainer_without_remove_unused_columns_false_is_refused(tmp_path) -> None:
    trainer, _, _ = _train(tmp_path, remove_unused_columns=True)
    with pytest.raises(RelabscopeError, match="remove_unused_columns=False"):
        trainer.train()


def _figures(history: list[dict]) -> list[dict]:
    return [entry for entry in history if "relabscope/relabels" in entry]


def _expected_figures(run) -> dict[str, list[float]]:
    """Each epoch's relabscope numbers, recomputed from the run log."""
    epochs = range(run.num_epochs)
    events = run.relabel_events()
    vetoes = run.vetoes()
    counts = run.class_counts()
    last = counts[counts["epoch"] == run.num_epochs]
    return {"relabels": events.groupby("epoch")["sample_id"].nunique().reindex(epochs, fill_value=0).tolist(),
            "vetoed": vetoes.groupby("epoch")["vetoed"].sum().reindex(epochs, fill_value=0).tolist(),
            "flipflops_at_end": float(run.flipflops()["flipflops"].sum()),
            "classes_below_half_at_end": float((2 * last["count"] < last["given"]).sum())}


def test_relabscopes_numbers_reach_the_log_history_and_tensorboard(tmp_path, monkeypatch) -> None:
    """A callback the Trainer knows (``of(trainer)`` in compute_loss) sends each epoch's
    numbers through Trainer.log: they are in the log history and in the TensorBoard event
    file report_to="tensorboard" writes (under HF's train/ prefix), equal to the run log's."""
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    monkeypatch.setenv("TENSORBOARD_LOGGING_DIR", str(tmp_path / "tb"))
    epochs = 7  # long enough for samples to return to a label (relabel_rule picks each every 5 epochs)
    trainer, _, _ = _train(tmp_path, epochs=epochs, callback_options={"guards": "floor=0.9"},
                           report_to=["tensorboard"])
    trainer.train()
    history = _figures(trainer.state.log_history)
    assert [entry["epoch"] for entry in history] == [float(e) for e in range(1, epochs + 1)]
    with rs.open_run(tmp_path / "run.h5") as run:
        expected = _expected_figures(run)
    assert [entry["relabscope/relabels"] for entry in history] == expected["relabels"]
    assert [entry["relabscope/vetoed"] for entry in history] == expected["vetoed"]
    assert history[-1]["relabscope/flipflops"] == expected["flipflops_at_end"] > 0
    assert history[-1]["relabscope/classes_below_half"] == expected["classes_below_half_at_end"]
    assert sum(expected["relabels"]) > 0 and sum(expected["vetoed"]) > 0

    board = event_accumulator.EventAccumulator(str(tmp_path / "tb"))
    board.Reload()
    for name in ("relabels", "flipflops", "vetoed", "classes_below_half"):
        scalars = board.Scalars(f"train/relabscope/{name}")
        assert [s.value for s in scalars] == [entry[f"relabscope/{name}"] for entry in history]
        assert [s.step for s in scalars] == [entry["step"] for entry in history]


def test_a_callback_the_trainer_does_not_know_fills_the_log_history_and_says_so(tmp_path) -> None:
    """Only in Trainer(callbacks=[...]) and never reached with of(): the numbers go into the
    log history alone, and a report_to logger that cannot get them is named once."""
    pytest.importorskip("tensorboard")
    trainer, _, _ = _train(tmp_path, epochs=2, trainer_class=transformers.Trainer, report_to=["tensorboard"])
    with pytest.warns(UserWarning, match=r"reach report_to=\['tensorboard'\] only after callback.attach_to"):
        trainer.train()
    history = _figures(trainer.state.log_history)
    assert [entry["epoch"] for entry in history] == [1.0, 2.0]
    assert all(entry["relabscope/relabels"] == 0 for entry in history)  # nothing relabels here


def test_attach_to_adds_the_callback_once_and_of_finds_exactly_one(tmp_path) -> None:
    trainer, callback, _ = _train(tmp_path, epochs=1)
    assert callback.attach_to(trainer) is callback
    assert trainer.callback_handler.callbacks.count(callback) == 1
    assert RelabscopeTrainerCallback.of(trainer) is callback
    trainer.remove_callback(callback)
    with pytest.raises(RelabscopeError, match="the trainer has no RelabscopeTrainerCallback"):
        RelabscopeTrainerCallback.of(trainer)


def test_resuming_a_trainer_continues_the_log(tmp_path) -> None:
    """Stopped after seven epochs (checkpoints at each epoch's end), resumed from the last
    for two more: one log of nine epochs whose first seven are the first run's, training on
    from the labels in effect the checkpoint kept, and counting flip-flops on from the
    checkpoint's count and the labels each sample held before the stop (epoch 6 returns
    samples epoch 1 moved, epochs 7 and 8 those of epochs 2 and 3)."""
    first, total = 7, 9
    trainer, callback, _ = _train(tmp_path, epochs=first, save_strategy="epoch")
    trainer.train()
    kept = callback.labels()
    with rs.open_run(tmp_path / "run.h5") as run:
        before = run.relabel_events()
        first_labels = run.labels()
    steps = trainer.state.global_step
    assert (tmp_path / "out" / f"checkpoint-{steps}" / "relabscope.pt").is_file()

    trainer, callback, _ = _train(tmp_path, epochs=total, save_strategy="epoch")
    seen = []
    original = callback.capture.open
    callback.capture.open = lambda: (seen.append(callback.labels()), original())[1]
    trainer.train(resume_from_checkpoint=str(tmp_path / "out" / f"checkpoint-{steps}"))
    assert torch.equal(seen[0], kept)  # the labels in effect the checkpoint kept
    with rs.open_run(tmp_path / "run.h5") as run:
        assert run.num_epochs == total and run.status == "finished"
        events = run.relabel_events()
        assert events[events["epoch"] < first].reset_index(drop=True).equals(before)
        assert set(events["epoch"]) >= {first, first + 1}  # the resumed epochs relabel too
        np.testing.assert_array_equal(run.labels()[:first], first_labels)
        made = sorted((e, i, n) for e, ids, new in trainer.made for i, n in zip(ids, new))
        assert sorted(zip(events["epoch"], events["sample_id"], events["new"]))[len(before):] == made
        expected = _expected_figures(run)
    # the history holds every epoch once; the flip-flop count goes on from the checkpoint's
    history = _figures(trainer.state.log_history)
    assert [entry["relabscope/relabels"] for entry in history] == expected["relabels"]
    assert history[first - 1]["relabscope/flipflops"] > 0  # before the stop
    assert history[-1]["relabscope/flipflops"] == expected["flipflops_at_end"] > history[first - 1]["relabscope/flipflops"]


def test_resuming_from_a_checkpoint_inside_an_epoch_is_one_line(tmp_path) -> None:
    trainer, _, _ = _train(tmp_path, epochs=1, save_strategy="steps", save_steps=2)  # 6 steps an epoch
    trainer.train()
    trainer, _, _ = _train(tmp_path, epochs=2, save_strategy="steps", save_steps=2)
    with pytest.raises(RelabscopeError, match=r"relabscope.pt: saved inside epoch 1, whose relabels the log never "
                                              r"committed; resume from a checkpoint saved at an epoch's end"):
        trainer.train(resume_from_checkpoint=str(tmp_path / "out" / "checkpoint-4"))
    trainer, _, _ = _train(tmp_path, epochs=2)
    (tmp_path / "out" / "checkpoint-2" / "relabscope.pt").unlink()
    with pytest.raises(RelabscopeError, match=r"checkpoint-2: the Trainer resumes from step 2 but this folder holds "
                                              r"no relabscope.pt"):
        trainer.train(resume_from_checkpoint=str(tmp_path / "out" / "checkpoint-2"))
