"""The sweep's guard axis: relabel guards (``relabscope.training.guards``) compared as a grid
dimension, each grid value a named guard setting.

A value is ``none`` (every guard off) or guards joined by ``+``: ``floor=F``
(``--relabel-floor``), ``hysteresis=K`` (``--relabel-hysteresis``), ``agree``
(``--relabel-agree``), e.g. ``floor=0.5+agree``. Each value has one canonical spelling
(guards in the order floor, hysteresis, agree; numbers as ``%g`` prints them), so
``agree+floor=.5`` and ``floor=0.5+agree`` are one cell, and the manifest, the run
directories and the tables all use that spelling.

Only methods that read the guard settings (``config.applies``: SCN and SCN-C) are trained
under a guard other than ``none``; every other method would train the same run again.

Torch-free, like ``manifest``: the dashboard and the report read the axis without training.
"""

from __future__ import annotations

from typing import Any, Iterable

from relabscope.config import SPECS, applies
from relabscope.errors import RelabscopeError

#: the grid value with every guard off: the only one a sweep without the axis has
NONE = "none"
#: guard name -> the setting it switches on, in canonical order
GUARD_SETTINGS: dict[str, str] = {
    "floor": "relabel_floor",
    "hysteresis": "relabel_hysteresis",
    "agree": "relabel_agree",
}

_KIND = {int: "whole number", float: "number"}


def parse_guard(text: str) -> str:
    """The canonical spelling of one grid value; a one-line RelabscopeError naming the value
    when it is not one.

    >>> parse_guard(" agree + floor=.5 "), parse_guard("NONE"), parse_guard("hysteresis=1")
    ('floor=0.5+agree', 'none', 'hysteresis=1')
    """
    text = text.strip()
    if text.lower() == NONE:
        return NONE
    values: dict[str, Any] = {}
    for term in (t.strip() for t in text.split("+")):
        name, has_value, raw = (p.strip() for p in term.partition("="))
        if name not in GUARD_SETTINGS:
            raise RelabscopeError(f"--guards: unknown guard {name!r} in {text!r}; choose from none, floor=F, "
                                  "hysteresis=K, agree (join several with +)")
        if name in values:
            raise RelabscopeError(f"--guards: {name} is named twice in {text!r}")
        values[name] = _guard_value(name, raw if has_value else None, text)
    return "+".join(_spell(name, values[name]) for name in GUARD_SETTINGS if name in values)


def _guard_value(name: str, raw: str | None, text: str) -> Any:
    """The setting's value of one guard term, checked as ``relabscope train`` checks it; a
    value that switches the guard off is refused (that cell is ``none``)."""
    setting = GUARD_SETTINGS[name]
    spec = SPECS[setting]
    if spec.base is bool:
        if raw is not None:
            raise RelabscopeError(f"--guards: {name} takes no value (in {text!r})")
        return True
    if raw is None:
        raise RelabscopeError(f"--guards: {name} needs a value, e.g. {name}={'0.5' if spec.base is float else '1'} "
                              f"(in {text!r})")
    try:
        value = spec.base(raw)
    except ValueError:
        raise RelabscopeError(f"--guards: {name}={raw}: {setting} must be a {_KIND[spec.base]}") from None
    problem = spec.setting.check(value) if spec.setting.check else None
    if problem:
        raise RelabscopeError(f"--guards: {name}={raw}: {setting} {problem}")
    if not value:
        raise RelabscopeError(f"--guards: {name}={raw} switches the guard off; write none for no guard")
    return value


def _spell(name: str, value: Any) -> str:
    return name if value is True else f"{name}={value:g}"


def parse_guards(values: Iterable[str]) -> list[str]:
    """Canonical grid values, in the order given; a value listed twice is refused."""
    guards = [parse_guard(v) for v in values]
    twice = [g for i, g in enumerate(guards) if g in guards[:i]]
    if twice:
        raise RelabscopeError(f"--guards: {twice[0]} is listed twice")
    return guards


def guard_settings(guard: str) -> dict[str, Any]:
    """The train settings of a canonical grid value (``{}`` for ``none``).

    >>> guard_settings("floor=0.5+agree")
    {'relabel_floor': 0.5, 'relabel_agree': True}
    """
    if guard == NONE:
        return {}
    out: dict[str, Any] = {}
    for term in guard.split("+"):
        name, _, raw = term.partition("=")
        base = SPECS[GUARD_SETTINGS[name]].base
        out[GUARD_SETTINGS[name]] = True if base is bool else base(raw)
    return out


def reads_guards(method: str) -> bool:
    """Whether ``method`` reads the guard settings (a guarded cell would differ from ``none``)."""
    return all(applies(setting, method) for setting in GUARD_SETTINGS.values())


def guard_suffix(guard: str) -> str:
    """What a cell's ``noise-<pct>`` folder name gains under ``guard``: nothing for
    ``none`` (so a sweep without the axis keeps its layout), else ``_`` and the guards with
    ``-`` for ``=`` and ``_`` for ``+``, characters safe in a path and in a URL.

    >>> guard_suffix("none"), guard_suffix("floor=0.5+agree")
    ('', '_floor-0.5_agree')
    """
    return "" if guard == NONE else "_" + guard.replace("=", "-").replace("+", "_")
