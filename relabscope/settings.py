"""What a training setting is: a typed spec, declared once, next to the code that reads it.

A setting is a field of a small dataclass made with :func:`setting`: its annotation is its
type, and the spec (:class:`Setting`) holds its help text, allowed values, validation and
how it behaves on ``--resume`` and in sweeps. The shared settings are declared in
``relabscope/config.py``; each method's own in ``relabscope/methods/settings.py``.
Everything else is derived from those declarations: ``TrainConfig`` (their union),
``config.validate``, the command-line options of ``train`` and ``sweep``, which methods read
which setting (``config.readers``), what a resumed run or a sweep may change
(``config.HOW_TO_RUN``, ``config.RESUMABLE``), the value older runs read as
(``config.INTRODUCED``) and the table in docs/settings.md. Adding a setting is one
:func:`setting` line (plus its test).

This module needs nothing but the standard library: the CLI and the dashboard read specs
without importing torch.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from typing import Any, Callable, Literal, Mapping, Union

#: A check returns what is wrong with a value (completing "<name> ..."), or None.
Check = Callable[[Any], Union[str, None]]
#: what a setting decides: the result ("what"), only where and how it is computed ("how":
#: a resumed run or a sweep may change it), or how long the run trains ("length")
Role = Literal["what", "how", "length"]


class _Missing:
    def __repr__(self) -> str:
        return "NOT_INTRODUCED"


#: ``introduced`` of a setting every stored run already has
NOT_INTRODUCED: Any = _Missing()


@dataclass(frozen=True)
class Setting:
    """A setting's spec (the dataclass field carries its name, type and default).

    ``choices``: the allowed values; ``registry``: a registry (``relabscope.data.DATASETS``,
    ``relabscope.methods.METHODS``) whose names are the allowed values, so a new data set or
    method needs no edit here; ``check``: further validation, called for values other than None; ``flags``: command-line declarations when
    not the plain ``--name`` (``--name/--no-name`` for booleans); ``path``: the value is a
    file or folder; ``introduced``: the value that describes runs written before the
    setting existed.
    """

    help: str
    choices: tuple[Any, ...] | None = None
    registry: Mapping[str, Any] | None = None
    check: Check | None = None
    flags: tuple[str, ...] = ()
    metavar: str | None = None
    path: bool = False
    role: Role = "what"
    introduced: Any = NOT_INTRODUCED


def setting(default: Any = None, help: str = "", *, factory: Callable[[], Any] | None = None,
            **spec: Any) -> Any:
    """A dataclass field holding ``default`` (or ``factory()``) and its :class:`Setting`."""
    meta = {"setting": Setting(help=help, **spec)}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclass(frozen=True)
class Spec:
    """One setting as declared: name, type, default and its :class:`Setting`."""

    name: str
    type: Any
    default: Any
    setting: Setting
    owner: type

    @property
    def optional(self) -> bool:
        """Whether None is allowed (annotated ``X | None``)."""
        return type(None) in typing.get_args(self.type) and _is_union(self.type)

    @property
    def base(self) -> Any:
        """The type without ``| None``: int, float, bool, str, list[int], dict[str, Any], ..."""
        if _is_union(self.type):
            args = [a for a in typing.get_args(self.type) if a is not type(None)]
            return args[0]
        return self.type

    @property
    def flag(self) -> str:
        """The plain command-line flag: ``--batch-size`` for batch_size."""
        return "--" + self.name.replace("_", "-")


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (Union, types.UnionType)


def specs(cls: type) -> dict[str, Spec]:
    """The settings of a dataclass (its fields made with :func:`setting`), in field order."""
    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        if "setting" not in f.metadata:
            raise TypeError(f"{cls.__name__}.{f.name} is not declared with relabscope.settings.setting()")
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        owner = next(c for c in cls.__mro__ if f.name in getattr(c, "__annotations__", {}))
        out[f.name] = Spec(f.name, hints[f.name], default, f.metadata["setting"], owner)
    return out


def type_name(tp: Any) -> str:
    """How an error message names a type: int, float, bool, str, list[int], dict."""
    origin = typing.get_origin(tp)
    if origin is None:
        return tp.__name__
    if origin is dict:
        return "dict"
    return f"{origin.__name__}[{', '.join(type_name(a) for a in typing.get_args(tp))}]"


def coerce(spec: Spec, value: Any) -> Any:
    """``value`` checked against the setting's type (ints are accepted for floats, lists
    for tuples); raises ValueError completing "<name> ..." when it does not fit."""
    if value is None and spec.optional:
        return None
    tp = spec.base
    origin = typing.get_origin(tp)
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, (list, tuple)) or not all(_fits(v, item) for v in value):
            raise ValueError(f"must be a list of {_plural(item)}, got {value!r}")
        return [float(v) if item is float else v for v in value]
    if origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f"must be dict, got {value!r}")
        return value
    if not _fits(value, tp):
        raise ValueError(f"must be {type_name(tp)}, got {value!r}")
    return float(value) if tp is float else value


def _fits(value: Any, tp: Any) -> bool:
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, tp)


def _plural(tp: Any) -> str:
    return {int: "whole numbers", float: "numbers", str: "strings"}.get(tp, type_name(tp))


# ---------------------------------------------------------------------- checks
def positive(value: Any) -> str | None:
    return None if value > 0 else "must be positive"


def non_negative(value: Any) -> str | None:
    return None if value >= 0 else "must be >= 0"


def positive_whole(value: Any) -> str | None:
    return None if value >= 1 else f"must be a positive whole number, got {value!r}"


def at_least(low: int, why: str = "") -> Check:
    """``value >= low``; the message says ``why`` when given."""

    def check(value: Any) -> str | None:
        if value >= low:
            return None
        return f"must be at least {low}" + (f" ({why})" if why else f", got {value!r}")

    return check


def between(low: float, high: float, *, closed_low: bool = True) -> Check:
    """``low <= value < high`` (``low < value`` when ``closed_low`` is False)."""

    def check(value: Any) -> str | None:
        above = value >= low if closed_low else value > low
        if above and value < high and value == value:  # value == value: not NaN
            return None
        return f"must be in {'[' if closed_low else '('}{low:g}, {high:g}){', got ' + repr(value) if closed_low else ''}"

    return check


def increasing_positive(value: list[int]) -> str | None:
    if all(v >= 1 for v in value) and value == sorted(set(value)):
        return None
    return f"must be increasing positive epoch counts, got {value}"
