"""Training methods, by the name the CLI accepts.

Each entry builds a :class:`~relabscope.methods.base.Method`; a name ending in ``-c``
adds the center loss on the method's embedding (the seed paper's fix).
"""

from __future__ import annotations

from functools import partial
from typing import Callable

from relabscope.methods.base import Method, StepOutput
from relabscope.methods.baseline import Baseline
from relabscope.methods.center_loss import CenterLoss
from relabscope.methods.dmue import DMUE
from relabscope.methods.rul import RUL
from relabscope.methods.scn import SCN

METHODS: dict[str, Callable[..., Method]] = {
    "baseline": partial(Baseline, with_center=False),
    "baseline-c": partial(Baseline, with_center=True),
    "scn": partial(SCN, with_center=False),
    "scn-c": partial(SCN, with_center=True),
    "rul": partial(RUL, with_center=False),
    "rul-c": partial(RUL, with_center=True),
    "dmue": partial(DMUE, with_center=False),
    "dmue-c": partial(DMUE, with_center=True),
}


def build_method(name: str, num_classes: int, cfg) -> Method:
    """Instantiate method ``name`` for ``num_classes`` classes under ``cfg``."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}")
    return METHODS[name](num_classes, cfg)


__all__ = ["METHODS", "CenterLoss", "Method", "StepOutput", "build_method"]
