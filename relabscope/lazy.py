"""Package facades that name their exports without importing them: the one helper every
relabscope package with heavy members uses (``relabscope``, ``integrations``, ``models``,
``methods``, ``data``, ``runlog``, ``sweep``, ``training``).

``import relabscope`` loads no torch, dash or plotly (about 1.5 s and 250 MB for torch
alone): the CLI, the config and the dashboard read registries and settings without them.
A facade lists where each export lives and hands its module ``__getattr__`` and
``__dir__`` from :func:`lazy_exports`; the export's module is imported on first access::

    __getattr__, __dir__ = lazy_exports(__name__, {"RunCapture": "relabscope.integrations.capture"})

tests/test_architecture.py reads :data:`FACADES` to check that every export resolves and
that importing a facade imports none of them.
"""

from __future__ import annotations

import sys
from importlib import import_module
from typing import Any, Callable, Mapping

#: package name -> {export: module it lives in}, for every facade made by :func:`lazy_exports`
FACADES: dict[str, dict[str, str]] = {}


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A module ``__getattr__`` and ``__dir__`` for ``package`` that import each export's
    module (``exports``: name -> module path; a name that is the module's own last part
    and maps to itself is the submodule) on first access."""
    FACADES[package] = dict(exports)

    def __getattr__(name: str) -> Any:
        if name in exports:
            module = import_module(exports[name])
            return module if exports[name] == f"{package}.{name}" else getattr(module, name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *exports})

    return __getattr__, __dir__
