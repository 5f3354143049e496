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


def test_reading_a_run_does_not_import_torch(tiny_runs) -> None:
    """Opening and analysing a run needs h5py, numpy and pandas only: torch's import alone
    costs seconds (the open_run goal is < 0.5 s) and about a GiB of memory."""
    import subprocess
    import sys

    code = ("import sys, relabscope as rs; r = rs.open_run(sys.argv[1]); r.flipflops(); r.consistency(); "
            "r.compactness(); r.dynamics(); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(tiny_runs["scn"])], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"

