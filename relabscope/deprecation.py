"""Old spellings kept for one release: the public API spells each concept one way
(American ``color``, ``normalize``, ``center``, as plotly and torch do), and a name that
changed still works, with a DeprecationWarning that names the new one."""

from __future__ import annotations

import functools
import warnings
from typing import Any, Callable, TypeVar

_F = TypeVar("_F", bound=Callable[..., Any])
#: the release that drops the old spellings
REMOVED_IN = "0.3"


def warn_renamed(old: str, new: str) -> None:
    """Warn, at the caller's caller, that ``old`` is now ``new``."""
    warnings.warn(f"{old} is deprecated and will be removed in relabscope {REMOVED_IN}: use {new}",
                  DeprecationWarning, stacklevel=3)


def renamed(func: _F, old: str) -> _F:
    """``func`` under its old name ``old``: the same call, with a DeprecationWarning."""

    @functools.wraps(func)
    def alias(*args: Any, **kwargs: Any) -> Any:
        warn_renamed(old, func.__name__)
        return func(*args, **kwargs)

    alias.__name__ = alias.__qualname__ = old
    alias.__doc__ = f"Deprecated spelling of :func:`{func.__name__}` (removed in relabscope {REMOVED_IN})."
    return alias  # type: ignore[return-value]
