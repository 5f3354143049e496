"""relabscope's per-epoch numbers for a framework's own logger (TensorBoard, W&B, MLflow, a
CSV file): what relabelling did in the epoch, computed from the labels in effect at its
start and its end, on the device, read once per epoch.

- ``relabscope/relabels``: training samples whose label in effect changed in the epoch;
- ``relabscope/flipflops``: flip-flops so far, returns of a sample to a label it held
  before (its given label included), as the flip-flop views count them;
- ``relabscope/vetoed``: relabels the relabel guards refused in the epoch (0 without guards);
- ``relabscope/classes_below_half``: classes with fewer than half their given training
  samples under the labels in effect.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn.functional as F

#: the prefix of every number relabscope logs through a framework's logger
PREFIX = "relabscope/"


class EpochFigures:
    """Follows the labels in effect from epoch to epoch (``start`` before, ``end`` after);
    its state (labels each sample has held, flip-flops so far) goes into checkpoints, so a
    resumed run keeps counting where it stopped."""

    def __init__(self, given: torch.Tensor, num_classes: int) -> None:
        self.num_classes = num_classes
        self.given_counts = torch.bincount(given.long(), minlength=num_classes)
        self._held = F.one_hot(given.long(), num_classes).bool()  # (N, K): labels each sample has held
        self._flipflops = 0
        self._start: torch.Tensor | None = None

    def start(self, labels: torch.Tensor) -> None:
        self._start = labels.clone()

    def end(self, labels: torch.Tensor, vetoed: torch.Tensor | None) -> dict[str, float]:
        """The epoch's numbers, under :data:`PREFIX`; ``labels`` the labels in effect now."""
        start = self._start if self._start is not None else labels
        held = self._held.to(labels.device)
        changed = labels != start
        rows = torch.arange(len(labels), device=labels.device)
        back = changed & held[rows, labels]
        held[rows, labels] |= changed
        self._held, self._start = held, None
        self._flipflops += int(back.sum())
        counts = torch.bincount(labels, minlength=self.num_classes).cpu()
        return {PREFIX + "relabels": float(changed.sum()), PREFIX + "flipflops": float(self._flipflops),
                PREFIX + "vetoed": float(vetoed.sum()) if vetoed is not None else 0.0,
                PREFIX + "classes_below_half": float(((counts * 2) < self.given_counts).sum())}


    def state_dict(self) -> dict[str, Any]:
        return {"held": self._held.cpu(), "flipflops": self._flipflops}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        held = torch.as_tensor(state["held"]).bool()
        if held.shape != self._held.shape:
            raise ValueError(f"flip-flop state for {tuple(held.shape)} samples x classes, this run has "
                             f"{tuple(self._held.shape)}")
        self._held, self._flipflops = held, int(state["flipflops"])
