"""``relabscope sweep``: every method under every noise level and seed, and the seed
paper's noise table (its Table 3) for the result."""

from relabscope.sweep.grid import Cell, SweepResult, cells, is_sweep, manifest_cells, read_manifest, run_sweep
from relabscope.sweep.table import accuracy_table, relabel_table, sweep_results, sweep_table, write_tables

__all__ = [
    "Cell", "SweepResult", "accuracy_table", "cells", "is_sweep", "manifest_cells", "read_manifest",
    "relabel_table", "run_sweep", "sweep_results", "sweep_table", "write_tables",
]
