"""The labels in effect: one tensor on the training device, indexed by sample.

The data set keeps the labels it was given; this keeps the labels the loss uses now. They
differ after relabelling. Holding them in one place (not inside the Dataset, which
DataLoader workers copy) means the label the loss uses is the label the log records.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch


class LabelState:
    """Labels in effect for the training split, on ``device``."""

    def __init__(self, given: np.ndarray, device: torch.device):
        self.given = torch.as_tensor(np.asarray(given), dtype=torch.long, device=device)
        self.current = self.given.clone()

    def __getitem__(self, ids: torch.Tensor) -> torch.Tensor:
        return self.current[ids]

    def update(self, ids: torch.Tensor, labels: torch.Tensor) -> None:
        """Set the labels in effect of samples ``ids`` (no host sync)."""
        self.current[ids] = labels

    def merge(self, mine: torch.Tensor, reduce_sum: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """Under torchrun, at an epoch's end: every rank's labels of the samples it saw
        (``mine`` here), so every rank holds every rank's relabels (:func:`merge_owned`)."""
        self.current.copy_(merge_owned(self.current, mine, reduce_sum))

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"current": self.current.cpu().clone()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        current = state["current"]
        if current.shape != self.current.shape:
            raise ValueError(
                f"checkpoint holds labels for {current.shape[0]} samples, the data has {self.current.shape[0]}"
            )
        self.current.copy_(current.to(self.current.device))


def merge_owned(values: torch.Tensor, mine: torch.Tensor,
                reduce_sum: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Per-sample state (first axis: training samples) merged over the ranks of a torchrun
    job at an epoch's end: each rank contributes the rows of the samples it saw (``mine``).
    Each sample was seen by exactly one rank, so a sum over the ranks of "my rows, 0
    elsewhere" is the merged state. Returns a new tensor of ``values``' dtype (booleans are
    summed as integers)."""
    summed = torch.int64 if values.dtype == torch.bool else values.dtype
    owned = torch.zeros(values.shape, dtype=summed, device=values.device)
    owned[mine] = values[mine].to(summed)
    return reduce_sum(owned).to(values.dtype)
