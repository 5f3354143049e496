"""The relabel guards, described once: :data:`GUARDS` is the table (name, train setting,
command-line flag, when the setting switches the guard on, the order they apply) and
:func:`floor_size` the floor's formula, which the trainer (``relabscope.training.guards``),
RunCapture, the sweep, the plots, the dashboard and the tests all derive from. Torch-free:
the dashboard and the report read it without training.

**One spelling.** A guards value is ``none`` (every guard off) or guards joined by ``+``:
``floor=F``, ``hysteresis=K``, ``agree``; that is the canonical spelling, the one the
sweep's ``--guards``, ``RunCapture(guards=...)``, the sweep's folder names and its tables
use. ``relabscope train``'s ``--relabel-floor F``, ``--relabel-hysteresis K`` and
``--relabel-agree`` are the train settings a value stands for (:func:`guard_settings` maps
a value to them, :func:`guard_value` a run's settings back). Each value is written one way:
guards in the order floor, hysteresis, agree (:data:`SPELLING_ORDER`, which the folder
names of existing sweeps use) and numbers as ``%g`` prints them, so ``agree+floor=.5`` and
``floor=0.5+agree`` are one value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, TypeVar

from relabscope.errors import RelabscopeError
from relabscope.methods.settings import RelabelGuardSettings
from relabscope.settings import specs

_SPECS = specs(RelabelGuardSettings)
_N = TypeVar("_N")


@dataclass(frozen=True)
class Guard:
    """One relabel guard: its ``name`` (a log's ``meta/guards``, the guards value, the
    views) and the train ``setting`` that switches it on (off at 0 or False)."""

    name: str
    setting: str

    @property
    def flag(self) -> str:
        """``relabscope train``'s option for the setting (``--relabel-agree``, not its
        ``--no-`` form)."""
        spec = _SPECS[self.setting]
        return spec.setting.flags[0].split("/")[0] if spec.setting.flags else spec.flag

    def is_on(self, value: Any) -> bool:
        """Whether the setting's ``value`` switches the guard on."""
        return bool(value)


#: every guard, in the order they apply: a frozen sample's proposal is the hysteresis
#: guard's veto, and the floor spends its budget only on relabels the others let through
#: (a log's ``meta/guards`` lists those switched on in this order)
GUARDS: tuple[Guard, ...] = (Guard("hysteresis", "relabel_hysteresis"), Guard("agree", "relabel_agree"),
                             Guard("floor", "relabel_floor"))
#: the guards by name
BY_NAME: dict[str, Guard] = {g.name: g for g in GUARDS}
#: the order of the guards in a value's canonical spelling
SPELLING_ORDER = ("floor", "hysteresis", "agree")
#: guard name -> the setting it switches on, in spelling order
GUARD_SETTINGS: dict[str, str] = {name: BY_NAME[name].setting for name in SPELLING_ORDER}
#: the value with every guard off (the only grid value of a sweep without the guard axis)
NONE = "none"


def guards_on(settings: Any) -> list[str]:
    """The names of the guards ``settings`` (a ``TrainConfig``, ``RelabelGuardSettings`` or
    a run's config dict) switches on, in the order they apply (a log's ``meta/guards``)."""
    get = settings.get if isinstance(settings, dict) else (lambda key, default=None: getattr(settings, key, default))
    return [g.name for g in GUARDS if g.is_on(get(g.setting, 0))]


def floor_size(given: _N, fraction: float) -> _N:
    """The smallest count a class given ``given`` training samples may reach under
    ``--relabel-floor fraction``: ``ceil(fraction x given)``, where a product that is a whole
    number up to rounding (0.3 x 10) counts as that number. Works on numbers, numpy arrays
    and torch tensors alike (floats; the caller casts).

    >>> floor_size(15.0, 0.5), floor_size(10.0, 0.3)
    (8.0, 3.0)
    """
    scaled: Any = given * fraction - 1e-9  # type: ignore[operator]
    result: _N = -((-scaled) // 1)
    return result

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


def guard_value(settings: Any) -> str:
    """The canonical guards value of a run's ``settings`` (the inverse of
    :func:`guard_settings`).

    >>> guard_value({"relabel_agree": True, "relabel_floor": 0.5, "relabel_hysteresis": 0})
    'floor=0.5+agree'
    """
    get = settings.get if isinstance(settings, dict) else (lambda key, default=None: getattr(settings, key, default))
    on = [name for name in SPELLING_ORDER if BY_NAME[name].is_on(get(BY_NAME[name].setting, 0))]
    return "+".join(_spell(name, get(BY_NAME[name].setting)) for name in on) or NONE


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
