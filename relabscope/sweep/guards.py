"""The sweep's guard axis: relabel guards (``relabscope.training.guards``) compared as a grid
dimension, each grid value a named guard setting.

A value is spelled as ``relabscope.methods.guards`` says (``none``, ``floor=0.5+agree``,
...), one canonical spelling per value, so the manifest, the run directories and the
tables all use that spelling.

Only methods that relabel (the registry's ``relabels``: SCN and SCN-C) are trained under a
guard other than ``none``; every other method would train the same run again.

Torch-free, like ``manifest``: the dashboard and the report read the axis without training.
"""

from __future__ import annotations

from relabscope.methods import METHODS
from relabscope.methods.guards import NONE


def reads_guards(method: str) -> bool:
    """Whether ``method`` relabels, and so reads the guard settings (the registry's
    ``relabels``): only then would a guarded cell differ from ``none``."""
    entry = METHODS.get(method)
    return entry is not None and entry.relabels


def guard_suffix(guard: str) -> str:
    """What a cell's ``noise-<pct>`` folder name gains under ``guard``: nothing for
    ``none`` (so a sweep without the axis keeps its layout), else ``_`` and the guards with
    ``-`` for ``=`` and ``_`` for ``+``, characters safe in a path and in a URL.

    >>> guard_suffix("none"), guard_suffix("floor=0.5+agree")
    ('', '_floor-0.5_agree')
    """
    return "" if guard == NONE else "_" + guard.replace("=", "-").replace("+", "_")
