"""A tiny LightningModule that relabels, trained with RelabscopeCallback: imported by the
tests (one process) and run as a script for DDP and kill -9 (``python lightning_run.py
LOG --epochs N --devices 2``). Under DDP each rank writes the relabels it made to
``LOG.rank<r>.json``, with the training ids it saw each epoch."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Mapping

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository, when run as a script

from relabscope.integrations.lightning import RelabscopeCallback  # noqa: E402
from tests.integrations.tiny import K, TinyData, make_data, relabel_rule  # noqa: E402


class TinyNet(pl.LightningModule):
    """A 2-layer CNN on 8x8 images; ``backbone`` gives the 16-d embedding. It reaches the
    callback as a module in a file of its own does: ``RelabscopeCallback.of(self.trainer)``."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
                                            torch.nn.Linear(4 * 64, 16), torch.nn.ReLU())
        self.head = torch.nn.Linear(16, K)
        self.made: list[tuple[int, list[int], list[int]]] = []  # (epoch, ids, new labels) it relabelled
        self.train_embeddings: dict[int, torch.Tensor] = {}  # id -> backbone output, latest training pass
        self.seen: dict[int, list[int]] = {}  # epoch -> training ids this process trained on

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))

    def training_step(self, batch, batch_idx):
        x, _, ids = batch
        relabscope = RelabscopeCallback.of(self.trainer)
        labels = relabscope.labels(ids)
        emb = self.backbone(x)
        logits = self.head(emb)
        relabel_ids, new = relabel_rule(ids, logits, labels, self.current_epoch)
        if len(relabel_ids):
            relabscope.relabel(relabel_ids, new)
            self.made.append((self.current_epoch, relabel_ids.tolist(), new.tolist()))
        self.seen.setdefault(self.current_epoch, []).extend(ids.tolist())
        for i, e in zip(ids.tolist(), emb.detach()):
            self.train_embeddings[i] = e.clone()
        return {"loss": F.cross_entropy(logits, labels), "logits": logits}

    def validation_step(self, batch, batch_idx):
        x, _, _ = batch
        return {"logits": self.head(self.backbone(x))}

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def loaders(data: TinyData, batch_size: int = 16) -> tuple[DataLoader, DataLoader]:
    train = TensorDataset(data.x_train, data.y_train, torch.arange(len(data.y_train)))
    test = TensorDataset(data.x_test, data.y_test, torch.arange(len(data.y_test)))
    return DataLoader(train, batch_size=batch_size, shuffle=True), DataLoader(test, batch_size=batch_size)


def fit(log: Path, epochs: int, *, devices: int = 1, strategy: str = "auto", ckpt_path: str | None = None,
        checkpoints: Path | None = None, extra_callbacks: list[pl.Callback] | None = None,
        data: TinyData | None = None, callback_options: Mapping[str, Any] | None = None,
        **trainer_options) -> tuple[TinyNet, RelabscopeCallback, pl.Trainer]:
    """Train TinyNet on ``data`` (default: ``make_data()``) for ``epochs``, logged to ``log``;
    ``callback_options`` go to RelabscopeCallback (e.g. ``keys``, ``images``)."""
    pl.seed_everything(0, verbose=False)
    data = data or make_data()
    callback = RelabscopeCallback(log, data.y_train, data.y_test, class_names=["a", "b", "c"],
                                  embedding_layer="backbone", clean_labels=data.clean, metadata={"method": "tiny"},
                                  **(callback_options or {}))
    model = TinyNet()
    callbacks: list[pl.Callback] = [callback, *(extra_callbacks or [])]
    if checkpoints is not None:
        callbacks.append(pl.callbacks.ModelCheckpoint(checkpoints, filename="{epoch}", save_top_k=-1))
    trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", devices=devices, strategy=strategy,
                         callbacks=callbacks, logger=trainer_options.pop("logger", False),
                         enable_checkpointing=checkpoints is not None,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=1,
                         **trainer_options)
    train, test = loaders(data)
    trainer.fit(model, train, test, ckpt_path=ckpt_path)
    return model, callback, trainer


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("log", type=Path)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--devices", type=int, default=1)
    ap.add_argument("--guards", default=None, help="RelabscopeCallback's guards, e.g. floor=0.9+hysteresis=1")
    args = ap.parse_args()
    torch.set_num_threads(1)
    model, _, trainer = fit(args.log, args.epochs, devices=args.devices,
                            strategy="ddp" if args.devices > 1 else "auto", callback_options={"guards": args.guards})
    Path(f"{args.log}.rank{trainer.global_rank}.json").write_text(json.dumps({"made": model.made, "seen": model.seen}))


if __name__ == "__main__":
    main()
