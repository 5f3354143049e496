"""A loop's logged batches joined into a few large run-log records.

Why: a record costs the training thread about the same host time whatever its size (a
dozen small tensor operations, the copies, the hand-off to the writer's thread), and on a
small model that was a tenth of the step (``benchmarks/callback_overhead.py``). So
:class:`~relabscope.integrations.capture.RunCapture` keeps each batch's tensors as they
are and joins a phase's batches into one record every :data:`CHUNK_ROWS` samples and at
the epoch's end: the per-sample loss, the relabel probabilities and the relabel events'
batch numbers are computed or laid out per row there, the same numbers a record per
batch gave.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

#: samples a chunk gathers before it becomes a record (its tensors stay on their device)
CHUNK_ROWS = 4096


@dataclass
class _Batch:
    step: int
    rows: torch.Tensor  # the log's sample ids
    labels: torch.Tensor  # labels in effect (train) or given (test) the batch used
    logits: torch.Tensor
    embeddings: torch.Tensor
    new_labels: torch.Tensor | None  # after the batch's relabels, when it made some
    probs: torch.Tensor | None  # the probabilities a relabel decision brought, if not the softmax


@dataclass
class BatchChunk:
    """One phase's batches since the last record."""

    batches: list[_Batch] = field(default_factory=list)
    rows: int = 0

    def add(self, step: int, rows: torch.Tensor, labels: torch.Tensor, logits: torch.Tensor,
            embeddings: torch.Tensor, new_labels: torch.Tensor | None, probs: torch.Tensor | None) -> None:
        """Keep a batch. ``rows`` and ``logits`` are copied (a loop may reuse its buffers);
        ``embeddings`` must be the caller's own copy already."""
        self.batches.append(_Batch(step, rows.clone(), labels, logits.detach().clone(), embeddings, new_labels,
                                   probs))
        self.rows += len(rows)

    def full(self) -> bool:
        return self.rows >= CHUNK_ROWS

    def take(self) -> tuple[int, dict[str, torch.Tensor]] | None:
        """The batches as one record (``RunLogWriter.log_record``'s keys) and the last
        batch's step; None when there are none. Empties the chunk."""
        if not self.batches:
            return None
        batches, self.batches, self.rows = self.batches, [], 0
        logits = torch.cat([b.logits for b in batches])
        labels = torch.cat([b.labels for b in batches])
        with torch.no_grad():
            loss = F.cross_entropy(logits.float(), labels, reduction="none")
        record = {"sample_ids": torch.cat([b.rows for b in batches]), "labels": labels, "logits": logits,
                  "embeddings": torch.cat([b.embeddings for b in batches]), "loss": loss}
        if any(b.new_labels is not None for b in batches):
            record["new_labels"] = torch.cat([b.labels if b.new_labels is None else b.new_labels for b in batches])
            record["steps"] = torch.cat([torch.full_like(b.labels, b.step) for b in batches])
        if any(b.probs is not None for b in batches):
            record["relabel_probs"] = torch.cat([b.logits.float().softmax(dim=1) if b.probs is None else b.probs
                                                 for b in batches])
        return batches[-1].step, record
