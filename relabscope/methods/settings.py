"""The settings each method reads beyond the shared ones, one dataclass per method family.

``relabscope.methods.METHODS`` names, per method, which of these it reads; ``TrainConfig``
is the union of the shared settings and all of these. A method that does not read a
setting ignores it, and a sweep does not compare it between a stored run of that method and
the grid (``config.readers``, derived from the registry). The help texts are the CLI's;
the methods' papers and the choices behind each default are in docs/methods.md.

Torch-free on purpose: the CLI and the config read these without loading the networks.
"""

from __future__ import annotations

from dataclasses import dataclass

from relabscope.settings import between, non_negative, positive, positive_whole, setting


@dataclass
class CenterLossSettings:
    """The "-C" center loss (Wen et al.), read by baseline-c, scn-c, rul-c and dmue-c."""

    gamma: float = setting(0.01, "Center-loss weight of -c methods.", check=non_negative)
    center_lr: float = setting(0.5, "Center update rate (alpha of Wen et al.; the SGD lr of --center-update sgd).",
                               check=positive)
    center_update: str = setting(
        "wen", "How centers move after each step: wen (Wen et al.'s rule, about alpha of the gap per step) or sgd "
               "(the PyTorch port's: centers trained by SGD, gamma divided out; 3-16x slower at batch 64).",
        choices=("wen", "sgd"), introduced="wen")


@dataclass
class SCNSettings:
    """SCN's relabel rule and rank regularisation (read by scn and scn-c; when it starts to
    relabel and the guards are :class:`RelabelSettings`)."""

    delta: float = setting(0.2, "Relabel when p_max - p_label > delta.", check=non_negative)
    relabel_scope: str = setting(
        "all", "Relabel any sample (reference code) or only the low-importance group (SCN paper).",
        choices=("all", "low"))
    rr: bool = setting(True, "SCN's rank regularisation (default on).")
    rr_margin: float = setting(0.15, "SCN's margin_1 between the high- and low-importance groups' mean weights.",
                               check=non_negative)
    rr_beta: float = setting(0.7, "SCN's share of each batch in the high-importance group (default 0.7).",
                             check=between(0, 1, closed_low=False))


def _fraction(value: float) -> str | None:
    return None if 0 <= value <= 1 else f"must be in [0, 1], got {value!r}"


@dataclass
class RelabelGuardSettings:
    """Guards on relabelling, read by every relabelling method (through
    :class:`RelabelSettings`) and by ``RunCapture(guards=...)``; each is off by default and
    at the value runs written before it existed read as (``introduced``).
    ``relabscope.training.guards`` applies them, in the order hysteresis, agree, floor;
    docs/methods.md ("Relabel guards") says why each works as it does."""

    relabel_floor: float = setting(
        0.0, "Relabel guard: no relabel takes a class below F x its given size (its training samples' given "
             "labels). Each step grants the relabels out of a class largest margin (p_new - p_old) first while "
             "the class stays at or above the floor; under torchrun each rank spends its share of the budget "
             "the epoch started with (0: off).", check=_fraction, metavar="F", introduced=0.0)
    relabel_hysteresis: int = setting(
        0, "Relabel guard: a sample that has returned K times to a label it held before keeps the label it "
           "returned to (its label in effect) for the rest of training (0: off).", check=non_negative,
        metavar="K", introduced=0)
    relabel_agree: bool = setting(
        False, "Relabel guard: relabel only when the sample's embedding is also nearer the new class's mean than "
               "the old one's (the class means of the training embeddings under the labels in effect in the "
               "epoch before, as the log's class_mean; none in the first epoch, so it relabels nothing there).",
        flags=("--relabel-agree/--no-relabel-agree",), introduced=False)


@dataclass
class RelabelSettings(RelabelGuardSettings):
    """When relabelling starts, and the guards on it: the settings group every method the
    registry marks ``relabels`` reads (``MethodEntry.reads``), so the trainer, the sweep's
    guard axis and resume treat every relabelling method alike."""

    relabel_epoch: int = setting(10, "First epoch (1-based) in which a relabelling method (SCN) relabels.",
                                 check=positive_whole)


@dataclass
class DMUESettings:
    """DMUE's latent-label branches and uncertainty (read by dmue and dmue-c)."""

    dmue_ramp: float = setting(6.0, "DMUE's a: epochs over which the target loss ramps up (default 6).",
                               check=positive)
    dmue_temperature: float = setting(1.2, "DMUE's sharpening temperature T (default 1.2).", check=positive)
    dmue_sp_weight: float = setting(1000.0, "Weight of DMUE's structure-preserving loss (default 1000).",
                                    check=non_negative)
    dmue_train_uncertainty: bool = setting(
        True, "Train DMUE's s-MLP (default) or leave it at init, as the reference code does.",
        flags=("--dmue-train-uncertainty/--dmue-frozen-uncertainty",))
    dmue_train_neck: bool = setting(
        False, "Train the BN neck's scale (the reference's optimiser never holds it, so it stays 1: default off).",
        introduced=True)
    dmue_mask_absent: bool = setting(
        True, "A class absent from the batch carries no evidence in the pairwise similarities (default); off: "
              "it reads as the least similar class (the min-max scaling's 0), as before.",
        flags=("--dmue-mask-absent/--dmue-absent-as-least",), introduced=False)


@dataclass
class DMUECenterSettings:
    """DMUE-C's own: how its center loss starts (read by dmue-c only)."""

    dmue_center_ramp: bool = setting(
        True, "DMUE-C: ramp the center loss up with the target branch's losses (default), or give it full "
              "weight from the first step.",
        flags=("--dmue-center-ramp/--dmue-center-full",), introduced=False)
    dmue_center_on: str = setting(
        "feature", "DMUE-C: the vector the center loss pulls: feature (the pooled target feature, which it can "
                   "shrink freely), neck (the BN neck's output: scale fixed by normalisation) or normalized "
                   "(the L2-normalised feature).",
        choices=("feature", "neck", "normalized"), introduced="feature")


__all__ = ["CenterLossSettings", "DMUECenterSettings", "DMUESettings", "RelabelGuardSettings", "RelabelSettings",
           "SCNSettings"]
