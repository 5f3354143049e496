"""Sweeps in the dashboard: a run trained by ``relabscope sweep`` knows its sweep folder,
its counterpart (SCN <-> SCN-C at the same noise and seed), and the compare page shows the
sweep's noise table (``relabscope.sweep.sweep_table``) above the two runs.

Serving a sweep folder (``relabscope serve OUT``) lists every run of the grid; nothing
here reads a file outside the registry's roots.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from dash import dcc, html
from dash.dash_table.DataTable import DataTable

from relabscope.dashboard.context import Context
from relabscope.sweep.manifest import SWEEP_FILE
from relabscope.sweep.table import accuracy_table, relabel_table, sweep_table


def sweep_folder(ctx: Context, run_id: str) -> Path | None:
    """The sweep folder holding run ``run_id`` (its ``<method>/noise-P/seed-S`` parent
    with a ``sweep.toml``), if it lies inside the run's registry root."""
    entry = ctx.registry.entry(run_id)
    folder = entry.path.parent.parent.parent
    try:
        folder.relative_to(entry.root)
    except ValueError:
        return None
    return folder if (folder / SWEEP_FILE).is_file() else None


def counterpart(ctx: Context, run_id: str) -> str | None:
    """The run with the other half of a method pair (``scn`` <-> ``scn-c``) at the same
    noise level and seed of the same sweep, when it is registered."""
    entry = ctx.registry.entry(run_id)
    if sweep_folder(ctx, run_id) is None:
        return None
    method = entry.path.parent.parent.name
    other = method[:-2] if method.endswith("-c") else method + "-c"
    target = entry.path.parent.parent.parent / other / entry.path.parent.name / entry.path.name
    for rid in ctx.registry.ids():
        if ctx.registry.entry(rid).path == target.resolve():
            return rid
    return None


def sweep_tables(ctx: Context, folder: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The accuracy table (Table 3 layout) and the relabel table of a sweep, cached until
    one of its run logs changes."""
    stamp = max((p.stat().st_mtime_ns for p in folder.glob("*/noise-*/seed-*/run.h5")), default=0)

    def compute() -> tuple[pd.DataFrame, pd.DataFrame]:
        table = sweep_table(folder)
        if table.empty:
            return table, table
        return accuracy_table(table).reset_index(), relabel_table(table)

    return ctx.results.get(("sweep", str(folder), stamp), compute)


def sweep_section(ctx: Context, run_id: str) -> Any:
    """The compare page's sweep card, or None for a run outside any sweep."""
    folder = sweep_folder(ctx, run_id)
    if folder is None:
        return None
    root = ctx.registry.entry(run_id).root
    name = folder.relative_to(root).as_posix()
    accuracy, relabel = sweep_tables(ctx, folder)
    if accuracy.empty:
        body: Any = html.Div("No run of this sweep has finished yet.", className="muted")
    else:
        body = html.Div([
            html.Div([html.H4("Test accuracy (%), last epoch, mean ± std over seeds"), _table(accuracy)],
                     className="cell"),
            html.Div([html.H4("Flip-flops, relabel consistency, compactness"), _table(relabel)], className="cell"),
        ], className="grid2")
    pair = counterpart(ctx, run_id)
    link = (dcc.Link(f"compare with {pair}", href=ctx.href("compare", run_id, against=pair))
            if pair else None)
    return html.Div([html.H3(f"Sweep {name or '.'}"), body, link], className="cell")


def _table(df: pd.DataFrame) -> DataTable:
    return DataTable(
        data=df.to_dict("records"), columns=[{"name": str(c), "id": str(c)} for c in df.columns], page_size=50,
        style_table={"overflowX": "auto"}, style_header={"fontWeight": "600"},
        style_cell={"fontSize": 13, "padding": "2px 8px", "textAlign": "right"})
