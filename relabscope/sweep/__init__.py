"""``relabscope sweep``: every method under every noise level and seed (the relabelling
methods also under every relabel-guard setting asked: ``guards``), and the seed paper's
noise table (its Table 3) for the result.

``manifest`` (the folder's layout) and ``table`` (its results) read a sweep without torch,
for the dashboard and the report; ``run_sweep`` and ``SweepResult`` (``grid``, which trains)
load on first use, as ``relabscope.runlog.RunLogWriter`` does.
"""

from __future__ import annotations

from relabscope.lazy import lazy_exports
from relabscope.sweep.manifest import Cell, cells, is_sweep, manifest_cells, read_manifest
from relabscope.sweep.table import accuracy_table, relabel_table, sweep_results, sweep_table, write_tables

__getattr__, __dir__ = lazy_exports(__name__, {"run_sweep": "relabscope.sweep.grid", "SweepResult": "relabscope.sweep.grid"})


__all__ = [
    "Cell", "SweepResult", "accuracy_table", "cells", "is_sweep", "manifest_cells", "read_manifest",
    "relabel_table", "run_sweep", "sweep_results", "sweep_table", "write_tables",
]
