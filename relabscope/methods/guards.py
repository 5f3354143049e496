"""The relabel guards as settings: their one spelling, ``floor=0.5+agree``, and the train
settings it stands for (``relabel_floor``, ``relabel_hysteresis``, ``relabel_agree``:
:class:`~relabscope.methods.settings.RelabelGuardSettings`).

A value is ``none`` (every guard off) or guards joined by ``+``: ``floor=F``
(``--relabel-floor``), ``hysteresis=K`` (``--relabel-hysteresis``), ``agree``
(``--relabel-agree``). Each value has one canonical spelling (guards in the order floor,
hysteresis, agree; numbers as ``%g`` prints them), so ``agree+floor=.5`` and
``floor=0.5+agree`` are one value. The sweep's guard axis (``relabscope.sweep.guards``)
and ``RunCapture(guards=...)`` both read it. Torch-free: the dashboard and the report read
the axis without training.
"""

from __future__ import annotations

from typing import Any, Iterable

from relabscope.errors import RelabscopeError
from relabscope.methods.settings import RelabelGuardSettings
from relabscope.settings import specs

_SPECS = specs(RelabelGuardSettings)

#: the value with every guard off (the only grid value of a sweep without the guard axis)
NONE = "none"
#: guard name -> the setting it switches on, in canonical order
GUARD_SETTINGS: dict[str, str] = {
    "floor": "relabel_floor",
    "hysteresis": "relabel_hysteresis",
    "agree": "relabel_agree",
}

_KIND = {int: "whole number", float: "number"}


def parse_guard(text: str, where: str = "--guards") -> str:
    """The canonical spelling of one guards value; a one-line RelabscopeError naming the
    value (and ``where`` it was given) when it is not one.

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
            raise RelabscopeError(f"{where}: unknown guard {name!r} in {text!r}; choose from none, floor=F, "
                                  "hysteresis=K, agree (join several with +)")
        if name in values:
            raise RelabscopeError(f"{where}: {name} is named twice in {text!r}")
        values[name] = _guard_value(name, raw if has_value else None, text, where)
    return "+".join(_spell(name, values[name]) for name in GUARD_SETTINGS if name in values)


def _guard_value(name: str, raw: str | None, text: str, where: str) -> Any:
    """The setting's value of one guard term, checked as ``relabscope train`` checks it; a
    value that switches the guard off is refused (that cell is ``none``)."""
    setting = GUARD_SETTINGS[name]
    spec = _SPECS[setting]
    if spec.base is bool:
        if raw is not None:
            raise RelabscopeError(f"{where}: {name} takes no value (in {text!r})")
        return True
    if raw is None:
        raise RelabscopeError(f"{where}: {name} needs a value, e.g. {name}={'0.5' if spec.base is float else '1'} "
                              f"(in {text!r})")
    try:
        value = spec.base(raw)
    except ValueError:
        raise RelabscopeError(f"{where}: {name}={raw}: {setting} must be a {_KIND[spec.base]}") from None
    problem = spec.setting.check(value) if spec.setting.check else None
    if problem:
        raise RelabscopeError(f"{where}: {name}={raw}: {setting} {problem}")
    if not value:
        raise RelabscopeError(f"{where}: {name}={raw} switches the guard off; write none for no guard")
    return value


def _spell(name: str, value: Any) -> str:
    return name if value is True else f"{name}={value:g}"


def parse_guards(values: Iterable[str]) -> list[str]:
    """Canonical guards values, in the order given (a sweep's axis); a value listed twice is
    refused."""
    guards = [parse_guard(v) for v in values]
    twice = [g for i, g in enumerate(guards) if g in guards[:i]]
    if twice:
        raise RelabscopeError(f"--guards: {twice[0]} is listed twice")
    return guards


def guard_settings(guard: str) -> dict[str, Any]:
    """The train settings of a canonical guards value (``{}`` for ``none``).

    >>> guard_settings("floor=0.5+agree")
    {'relabel_floor': 0.5, 'relabel_agree': True}
    """
    if guard == NONE:
        return {}
    out: dict[str, Any] = {}
    for term in guard.split("+"):
        name, _, raw = term.partition("=")
        base = _SPECS[GUARD_SETTINGS[name]].base
        out[GUARD_SETTINGS[name]] = True if base is bool else base(raw)
    return out
