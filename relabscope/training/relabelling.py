"""The labels in effect and the relabel guards: the one relabelling core that
``relabscope train``'s trainer and :class:`~relabscope.integrations.capture.RunCapture`
(and so the Lightning and transformers callbacks) share.

The data set keeps the labels it was given; :class:`Relabelling` keeps the labels the loss
uses now, in one tensor on the training device, indexed by training sample (not inside the
Dataset, which DataLoader workers copy: the label the loss uses is the label the log
records). A method's relabel proposals pass the guards switched on
(``relabscope.training.guards``) before they change it.

Per epoch: :meth:`Relabelling.start_epoch`, then per training batch :meth:`observe` (the
labels it trained on, its embeddings) and, when the method relabels, :meth:`apply`; then
:meth:`end_epoch`, which merges the state of every rank of a ``torch.distributed`` job.

**The rank-merge rule** (one, for the labels and every guard's per-sample state): each
training sample's state after the epoch is that of the lowest rank that trained it during
the epoch; a sample no rank trained keeps its state (the same on every rank). Under
``relabscope train`` each sample is trained by exactly one rank per epoch, so this is "every
rank's relabels"; a sampler that repeats samples to even out the ranks (PyTorch's
``DistributedSampler`` pads so) gets one deterministic answer instead of a sum of copies.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from relabscope.methods.settings import RelabelGuardSettings
from relabscope.training.distributed import SINGLE, World, merge_over_ranks
from relabscope.training.guards import Proposal, RelabelGuards, build_guards


class Relabelling:
    """Labels in effect of the training split and the guards on their changes.

    Args:
        given: ``(N,)`` the given training labels, on the training device.
        num_classes: K.
        guards: the guard settings (a ``TrainConfig`` or the settings alone); None for a
            method that does not relabel (no guards, whatever the settings say).
        embed_dim: the embedding size (the agree guard's means); when None the guards are
            built at the first :meth:`observe`, from its embeddings.
    """

    def __init__(self, given: torch.Tensor, num_classes: int, guards: RelabelGuardSettings | None,
                 embed_dim: int | None = None):
        self.given = given.long()
        self.current = self.given.clone()
        self.num_classes = num_classes
        self.settings = guards
        self.guards: RelabelGuards | None = None
        self._guard_state: Mapping[str, Any] | None = None  # a checkpoint's, until the guards are built
        self._built = guards is None
        self._world = SINGLE  # the epoch's, for guards built at its first batch
        self._seen = torch.zeros_like(self.given, dtype=torch.bool)  # trained by this rank this epoch
        if embed_dim is not None and not self._built:
            self._build(embed_dim)

    def __getitem__(self, ids: torch.Tensor) -> torch.Tensor:
        """The labels in effect of ``ids`` (1-D integer positions): ``index_select``, several
        times cheaper per batch on the host than advanced indexing. Out-of-range ids raise
        IndexError on the host (a device asserts)."""
        return torch.index_select(self.current, 0, _positions(ids))

    @property
    def device(self) -> torch.device:
        return self.current.device

    @property
    def vetoed(self) -> torch.Tensor | None:
        """The epoch's vetoes (guards x classes left), summed over the ranks after
        :meth:`end_epoch`; None without guards."""
        return self.guards.vetoed if self.guards is not None else None

    def to(self, device: torch.device) -> None:
        """Move the state to ``device`` (a loop that meets its first batch on the GPU)."""
        self.given, self.current, self._seen = self.given.to(device), self.current.to(device), self._seen.to(device)

    # ------------------------------------------------------------------ an epoch
    def start_epoch(self, world: World = SINGLE) -> None:
        """Before the epoch's training pass."""
        self._seen = torch.zeros_like(self._seen)
        if self.guards is not None:
            self.guards.start_epoch(self.current, world)
        self._world = world

    def observe(self, ids: torch.Tensor, labels: torch.Tensor, embedding: torch.Tensor) -> None:
        """Every training batch, relabelling or not: its sample ids, the labels it trained on
        and its embeddings (B x D)."""
        if not self._built:
            self._build(embedding.shape[1])
            if self.guards is not None:
                self.guards.start_epoch(self.current, self._world)
        if self._world.distributed:  # only the rank merge reads it
            self._seen.index_fill_(0, _positions(ids), True)
        if self.guards is not None:
            self.guards.observe(labels, embedding)

    def apply(self, p: Proposal) -> torch.Tensor:
        """Take a batch's proposals (``p.new``; equal to ``p.old`` where the method proposes
        nothing) through the guards into the labels in effect; returns the batch's labels
        now (no host sync)."""
        new = self.guards.apply(p) if self.guards is not None else p.new
        self.current[p.ids] = new
        return new

    def end_epoch(self, world: World = SINGLE) -> None:
        """After the pass: every rank's state merged by the rank-merge rule (module
        docstring), the guards' vetoes summed."""
        owned = self._owned(world)
        if world.distributed:
            self.current = merge_over_ranks(self.current, owned, world)
        if self.guards is not None:
            self.guards.end_epoch(owned, world)

    def _owned(self, world: World) -> torch.Tensor:
        """Per training sample: this rank decides its merged state (it is the lowest rank
        that trained it), or no rank trained it and every rank holds the same."""
        if not world.distributed:
            return torch.ones_like(self._seen)
        owner = torch.where(self._seen, world.rank, world.size).to(torch.int32)
        world.all_reduce_min(owner)
        return (owner == world.rank) | ((owner == world.size) & world.is_main)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """The labels in effect (``labels``) and the guards' state (``guards``)."""
        state: dict[str, Any] = {"labels": {"current": self.current.cpu().clone()}}
        if self.guards is not None:
            state["guards"] = {name: {k: v.cpu().clone() for k, v in part.items()}
                               for name, part in self.guards.state_dict().items()}
        elif self._guard_state is not None:
            state["guards"] = dict(self._guard_state)
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`'s state (guards not yet built take theirs when they are).

        Raises:
            ValueError: labels for another number of samples.
            RunDirError: guard state missing or of another shape.
        """
        current = state["labels"]["current"]
        if current.shape != self.current.shape:
            raise ValueError(f"checkpoint holds labels for {current.shape[0]} samples, the data has "
                             f"{self.current.shape[0]}")
        self.current = current.to(device=self.device, dtype=torch.long).clone()
        guards = state.get("guards", {})
        if self.guards is not None:
            self.guards.load_state_dict(guards)
        elif not self._built and guards:
            self._guard_state = dict(guards)

    def _build(self, embed_dim: int) -> None:
        assert self.settings is not None
        self.guards = build_guards(self.settings, self.given, self.num_classes, embed_dim)
        self._built = True
        if self.guards is not None and self._guard_state is not None:
            self.guards.load_state_dict(dict(self._guard_state))
        self._guard_state = None


def _positions(ids: torch.Tensor) -> torch.Tensor:
    """``ids`` as 1-D int64, without a tensor call when they are already (most batches: a
    call costs microseconds, and a small model's step is a few milliseconds)."""
    return ids if ids.dtype == torch.long and ids.dim() == 1 else ids.reshape(-1).long()
