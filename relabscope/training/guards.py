"""Relabel guards: limits on what a relabelling method may change, applied by the trainer.

A relabelling method proposes new labels for a batch (``Method.relabel``); before they
reach the label state, the guards switched on (``RelabelGuardSettings``) may refuse some.
A refused relabel leaves the sample's label in effect as it was, and counts as a veto of
the first guard that refused it, against the class the relabel would have left. Each guard
answers one way relabelling goes wrong on noisy data:

- ``hysteresis`` (``--relabel-hysteresis K``): flip-flops. A sample that has returned K
  times to a label it held before is frozen at the label it returned to (its label in
  effect) for the rest of training. Not the given label: the return was itself a relabel
  the method proposed and the log recorded, so freezing never changes a label on its own,
  and every change in the log stays a relabel event with its probabilities.
- ``agree`` (``--relabel-agree``): relabels the embedding does not support. A relabel
  stands only when the sample's embedding is nearer the new class's mean than the old
  one's (the seed paper's embedding proximity, used as a gate). The means are those of the
  epoch before: the training embeddings averaged per label in effect, the definition of
  the log's ``epochs/class_mean``, so the gate and the views measure one distance; fixed
  through an epoch, so the order of the batches and the number of ranks do not matter.
  A class without a mean is infinitely far: nothing relabels into it, and nothing is
  relabelled in the first epoch.
- ``floor`` (``--relabel-floor F``): emptied classes. No relabel takes a class below
  ``ceil(F x given size)`` training samples. Within a step, the relabels out of a class are
  granted largest margin ``p_new - p_old`` first while the class stays at or above its
  floor; relabels into a class raise its room from the next step on.

They apply in that order (a frozen sample's proposal is the hysteresis guard's veto; the
floor spends its budget only on relabels the others let through), and to every method
whose ``relabel`` proposes labels for the trainer's label state.

Under torchrun each rank relabels its share of every batch, and the labels in effect merge
at the epoch's end. The floor stays exact without a collective per step: each rank spends
its share of each class's room above the floor as it stood at the epoch's start (the
shares add up to the room), so the merged counts cannot fall below the floor; a rank
whose share is used up refuses what one process might have granted. Hysteresis state
merges like the labels; the agree guard's means are summed over the ranks.

All of it runs on the device without host syncs (no boolean-mask indexing, counts by
``index_add_``), as the training step requires.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, ClassVar

import torch
import torch.nn.functional as F

from relabscope.errors import RunDirError
from relabscope.methods.guards import GUARDS, floor_size, guards_on
from relabscope.training.distributed import World, merge_over_ranks

if TYPE_CHECKING:
    from relabscope.methods.settings import RelabelGuardSettings

#: every guard, in the order they apply (``relabscope.methods.guards.GUARDS``)
GUARD_ORDER = tuple(g.name for g in GUARDS)


@dataclass
class Proposal:
    """One training step's relabel proposals: ``ids`` (B) training-sample ids, ``old`` (B)
    the labels in effect the step trained on, ``new`` (B) the labels the method proposes
    (equal to ``old`` where it proposes nothing), and the step's ``logits`` (B x K) and
    ``embedding`` (B x D)."""

    ids: torch.Tensor
    old: torch.Tensor
    new: torch.Tensor
    logits: torch.Tensor
    embedding: torch.Tensor


# ---------------------------------------------------------------------- the rules, as pure functions
def class_counts(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Samples per class (K,), int64, without a host sync (``bincount`` reads the max back)."""
    return torch.zeros(num_classes, dtype=torch.long, device=labels.device).index_add_(
        0, labels, torch.ones_like(labels))


def floor_sizes(given_counts: torch.Tensor, fraction: float) -> torch.Tensor:
    """The smallest count each class may reach (``methods.guards.floor_size``), int64.

    >>> floor_sizes(torch.tensor([16, 15, 10]), 0.5).tolist(), floor_sizes(torch.tensor([10]), 0.3).tolist()
    ([8, 8, 5], [3])
    """
    return floor_size(given_counts.double(), fraction).long()


def relabel_margin(logits: torch.Tensor, old: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
    """``p_new - p_old`` under the softmax of ``logits``: SCN's eq. 1 margin for its proposals."""
    probs = logits.float().softmax(dim=1)
    return (probs.gather(1, new.unsqueeze(1)) - probs.gather(1, old.unsqueeze(1))).squeeze(1)


def within_budget(source: torch.Tensor, margin: torch.Tensor, standing: torch.Tensor,
                  budget: torch.Tensor) -> torch.Tensor:
    """Which standing proposals the floor grants: per source class, at most ``budget[c]``
    of them, largest ``margin`` first (ties: batch order).

    >>> within_budget(torch.tensor([0, 0, 0, 1]), torch.tensor([0.1, 0.9, 0.5, 0.2]),
    ...               torch.tensor([True, True, True, False]), torch.tensor([2, 0])).tolist()
    [False, True, True, False]
    """
    k = budget.shape[0]
    bucket = torch.where(standing, source, torch.full_like(source, k))  # the rest: a bucket of its own
    order = torch.argsort(margin, descending=True, stable=True)
    order = order[torch.argsort(bucket[order], stable=True)]  # by class, largest margin first within
    sorted_bucket = bucket[order]
    sizes = class_counts(bucket, k + 1)
    starts = torch.cumsum(sizes, 0) - sizes
    rank = torch.arange(len(source), device=source.device) - starts[sorted_bucket]
    allowance = torch.cat([budget.clamp(min=0), budget.new_zeros(1)])
    granted = torch.empty_like(standing)
    granted[order] = rank < allowance[sorted_bucket]
    return granted & standing


def rank_share(room: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """This rank's share of each class's room above the floor; the shares add up to ``room``.

    >>> [rank_share(torch.tensor([5, 1]), r, 2).tolist() for r in (0, 1)]
    [[3, 1], [2, 0]]
    """
    room = room.clamp(min=0)
    return room // world_size + (rank < room % world_size).long()


def nearer_new(embedding: torch.Tensor, means: torch.Tensor, old: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
    """Whether each embedding (B x D) is strictly nearer ``means[new]`` than ``means[old]``
    (Euclidean); a class without a mean (a NaN row) is infinitely far.

    >>> means = torch.tensor([[0.0, 0.0], [4.0, 0.0], [float("nan")] * 2])
    >>> nearer_new(torch.tensor([[3.0, 0.0], [1.0, 0.0], [3.0, 0.0]]), means,
    ...            torch.tensor([0, 0, 0]), torch.tensor([1, 1, 2])).tolist()
    [True, False, False]
    """
    x = embedding.float()
    inf = float("inf")
    d_new = torch.nan_to_num((x - means[new]).norm(dim=1), nan=inf)
    d_old = torch.nan_to_num((x - means[old]).norm(dim=1), nan=inf)
    return d_new < d_old


# ---------------------------------------------------------------------- the guards
class Guard:
    """One guard. ``refuse`` says which standing proposals it refuses; ``commit`` sees the
    relabels granted in the end (``granted``: B, bool); the epoch hooks keep state across a
    run (``end_epoch`` merges it over the ranks); ``state_dict`` is what a resumed run needs."""

    name: ClassVar[str] = ""

    def observe(self, labels: torch.Tensor, embedding: torch.Tensor) -> None:
        """Every training step (relabelling or not): the labels it trained on, its embeddings."""

    def start_epoch(self, labels: torch.Tensor, world: World) -> None:
        """Before an epoch's training pass; ``labels``: every training sample's label in effect."""

    def refuse(self, p: Proposal, standing: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def commit(self, p: Proposal, granted: torch.Tensor) -> None:
        """After every guard decided: ``granted`` marks the relabels that take effect."""

    def end_epoch(self, owned: torch.Tensor, world: World) -> None:
        """After the pass; ``owned``: (N,) bool, the training samples whose merged state this
        rank gives (``relabscope.training.relabelling``'s rank-merge rule)."""

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        pass


class HysteresisGuard(Guard):
    """Freezes a sample once it has returned ``limit`` times to a label it held before."""

    name = "hysteresis"

    def __init__(self, limit: int, given: torch.Tensor, num_classes: int):
        self.limit = limit
        self.held = F.one_hot(given, num_classes).bool()  # (N, K): labels each sample has held
        self.returns = torch.zeros_like(given, dtype=torch.int32)  # (N,)

    @property
    def frozen(self) -> torch.Tensor:
        """Per training sample: whether it keeps its label for the rest of training."""
        return self.returns >= self.limit

    def refuse(self, p: Proposal, standing: torch.Tensor) -> torch.Tensor:
        return standing & (self.returns[p.ids] >= self.limit)

    def commit(self, p: Proposal, granted: torch.Tensor) -> None:
        back = granted & self.held[p.ids, p.new]
        self.returns[p.ids] += back.int()
        self.held[p.ids, p.new] = self.held[p.ids, p.new] | granted

    def end_epoch(self, owned: torch.Tensor, world: World) -> None:
        if world.distributed:
            self.held = merge_over_ranks(self.held, owned, world)
            self.returns = merge_over_ranks(self.returns, owned, world)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"held": self.held, "returns": self.returns}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.held = _restored(state["held"], self.held)
        self.returns = _restored(state["returns"], self.returns)


class AgreeGuard(Guard):
    """Lets a relabel stand only when the embedding is nearer the new class's mean (the
    epoch before's) than the old class's."""

    name = "agree"

    def __init__(self, num_classes: int, embed_dim: int, device: torch.device):
        self.means = torch.full((num_classes, embed_dim), float("nan"), device=device)
        self._sums = torch.zeros(num_classes, embed_dim, dtype=torch.float64, device=device)
        self._counts = torch.zeros(num_classes, dtype=torch.float64, device=device)

    def observe(self, labels: torch.Tensor, embedding: torch.Tensor) -> None:
        self._sums.index_add_(0, labels, embedding.detach().double())
        self._counts.index_add_(0, labels, torch.ones_like(labels, dtype=torch.float64))

    def refuse(self, p: Proposal, standing: torch.Tensor) -> torch.Tensor:
        return standing & ~nearer_new(p.embedding, self.means, p.old, p.new)

    def end_epoch(self, owned: torch.Tensor, world: World) -> None:
        both = world.all_reduce_sum(torch.cat([self._counts.unsqueeze(1), self._sums], dim=1))
        counts, sums = both[:, :1], both[:, 1:]
        self.means = torch.where(counts > 0, sums / counts.clamp(min=1), float("nan")).float()
        self._sums.zero_()
        self._counts.zero_()

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"means": self.means}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.means = _restored(state["means"], self.means)


class FloorGuard(Guard):
    """Keeps every class at or above ``ceil(fraction x given size)``."""

    name = "floor"

    def __init__(self, fraction: float, given: torch.Tensor, num_classes: int):
        self.num_classes = num_classes
        self.minimum = floor_sizes(class_counts(given, num_classes), fraction)
        self.room = class_counts(given, num_classes) - self.minimum  # outflows this rank may still grant

    def start_epoch(self, labels: torch.Tensor, world: World) -> None:
        room = class_counts(labels, self.num_classes) - self.minimum
        self.room = rank_share(room, world.rank, world.size)

    def refuse(self, p: Proposal, standing: torch.Tensor) -> torch.Tensor:
        margin = relabel_margin(p.logits, p.old, p.new)
        return standing & ~within_budget(p.old, margin, standing, self.room)

    def commit(self, p: Proposal, granted: torch.Tensor) -> None:
        moved = granted.long()
        self.room.index_add_(0, p.old, -moved)
        self.room.index_add_(0, p.new, moved)


class RelabelGuards:
    """The guards switched on, applied in :data:`GUARD_ORDER`; counts their vetoes per
    epoch, guard and class left (``vetoed``: G x K, int64, the epoch's global count after
    ``end_epoch``)."""

    def __init__(self, guards: list[Guard], num_classes: int, device: torch.device):
        self.guards = guards
        self.names = tuple(g.name for g in guards)
        self.vetoed = torch.zeros(len(guards), num_classes, dtype=torch.long, device=device)

    def observe(self, labels: torch.Tensor, embedding: torch.Tensor) -> None:
        for g in self.guards:
            g.observe(labels, embedding)

    def start_epoch(self, labels: torch.Tensor, world: World) -> None:
        self.vetoed = torch.zeros_like(self.vetoed)  # a new tensor: the last epoch's may still be on its way to the log
        for g in self.guards:
            g.start_epoch(labels, world)

    def apply(self, p: Proposal) -> torch.Tensor:
        """The labels in effect after the step: the proposals every guard let stand, the
        old labels elsewhere."""
        standing = p.new != p.old
        for g, guard in enumerate(self.guards):
            refused = guard.refuse(p, standing)
            self.vetoed[g].index_add_(0, p.old, refused.long())
            standing = standing & ~refused
        for guard in self.guards:
            guard.commit(p, standing)
        return torch.where(standing, p.new, p.old)

    def end_epoch(self, owned: torch.Tensor, world: World) -> None:
        """Merge the guards' state and the epoch's vetoes over the ranks."""
        for g in self.guards:
            g.end_epoch(owned, world)
        world.all_reduce_sum(self.vetoed)

    def state_dict(self) -> dict[str, dict[str, torch.Tensor]]:
        return {g.name: g.state_dict() for g in self.guards}

    def load_state_dict(self, state: dict[str, dict[str, torch.Tensor]]) -> None:
        missing = [name for name in self.names if name not in state]
        if missing:
            raise RunDirError(f"the checkpoint holds no state of the relabel guard(s) {', '.join(missing)}; "
                              "cannot resume")
        for g in self.guards:
            g.load_state_dict(state[g.name])


def build_guards(cfg: RelabelGuardSettings, given: torch.Tensor, num_classes: int,
                 embed_dim: int) -> RelabelGuards | None:
    """The guards ``cfg`` (a ``TrainConfig``, or the guard settings alone) switches on, for
    training labels ``given`` (on the training device); None when none is on (the trainer
    then applies the proposals as they come)."""
    makers: dict[str, Callable[[], Guard]] = {
        "hysteresis": lambda: HysteresisGuard(cfg.relabel_hysteresis, given, num_classes),
        "agree": lambda: AgreeGuard(num_classes, embed_dim, given.device),
        "floor": lambda: FloorGuard(cfg.relabel_floor, given, num_classes),
    }
    guards = [makers[name]() for name in guards_on(cfg)]
    return RelabelGuards(guards, num_classes, given.device) if guards else None


def _restored(saved: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    if saved.shape != like.shape:
        raise RunDirError(f"the checkpoint holds relabel-guard state of shape {tuple(saved.shape)}, "
                          f"this run needs {tuple(like.shape)}; cannot resume")
    return saved.to(device=like.device, dtype=like.dtype)
