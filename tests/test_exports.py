"""The top-level exports of ``relabscope`` stay what they are, whatever was imported."""

from __future__ import annotations

import importlib
import pkgutil
import types

import relabscope as rs


def test_exports_are_not_shadowed_by_submodules() -> None:
    """Importing ``relabscope.x.y`` binds ``relabscope.x`` to the subpackage; an export of
    the same name would then turn into a module after first use (``rs.train`` once did)."""
    for info in pkgutil.walk_packages(rs.__path__, "relabscope."):
        if ".dashboard" not in info.name:  # the dashboard imports dash at module level
            importlib.import_module(info.name)
    for name in rs._EXPORTS:
        value = getattr(rs, name)
        assert not isinstance(value, types.ModuleType), name
        assert getattr(value, "__name__", name) == name
    assert callable(rs.train) and rs.train.__module__ == "relabscope.training.runner"
    assert isinstance(rs.plot, types.ModuleType)
