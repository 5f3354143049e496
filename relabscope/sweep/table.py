"""A sweep's results: the seed paper's Table 3 layout, and per-method relabel numbers.

``sweep_results`` reads every finished run of a sweep folder into one row per run;
``sweep_table`` aggregates them per (method, noise, guard) as mean and standard deviation
over seeds; ``accuracy_table`` lays test accuracy out as Table 3 does (methods down, noise
levels across, ``mean ± std``; a row per method and guard when the sweep has a guard
axis); ``relabel_table`` shows what relabelling did and what the guards refused. Test
accuracy is the LAST epoch's, the protocol of the seed paper and of RUL's noisy-label
experiments; ``epoch="best"`` reports the best epoch instead (what RUL's reference code
prints), for comparison only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from relabscope.analysis.compare import headline
from relabscope.analysis.run import Run
from relabscope.errors import RunDirError
from relabscope.methods.guards import NONE
from relabscope.sweep.manifest import Cell, manifest_cells, read_manifest

Select = Literal["last", "best"]
NUMBERS = ("test_acc", "flipflops", "relabel_events", "vetoed", "noisy_corrected", "clean_corrupted",
           "canaries_back", "others_away", "classes_emptied", "closer_to_new", "closer_vs_control",
           "compactness_ratio", "nearest_own", "compactness_raw")
#: numbers that only a run that relabels has (NaN otherwise; the canaries' also without canaries)
RELABEL_ONLY = ("closer_to_new", "closer_vs_control", "noisy_corrected", "clean_corrupted", "canaries_back",
                "others_away")
TABLE_NAME = "table"


def run_row(cell: Cell) -> dict:
    """One run's numbers: last and best test accuracy, flip-flops, relabel events and the
    relabels the guards vetoed (``Run.vetoes``), the shares of noisy labels corrected and
    of clean labels corrupted after the last epoch (``Run.noise_recovery``; NaN without
    clean labels), of canaries relabelled back and other labels moved (``Run.canary_recovery``;
    NaN without canaries), classes relabelling emptied, relabel consistency (share of relabels
    closer to the new class center once trained on it, and that share minus the matched
    control group's: ``Run.consistency``) and compactness: scale-free (own / nearest other
    center distance, share nearest their own center) and raw (mean distance to the own
    center, in the model's units). A missing run gives status "missing"; a run without a
    committed epoch its status and NaNs. Only finished runs enter :func:`sweep_table`."""
    row = {"method": cell.method, "noise": cell.noise, "guard": cell.guard, "seed": cell.seed,
           "run": str(cell.run_dir)}
    try:
        run = Run(cell.run_dir)
    except RunDirError:
        return {**row, "status": "missing", **{k: np.nan for k in (*NUMBERS, "test_acc_best")}}
    with run:
        if run.num_epochs == 0:  # just started (perhaps by another sweep process)
            return {**row, "status": run.status, "relabels": bool(run.relabels_at_all), "epochs": 0,
                    **{k: np.nan for k in (*NUMBERS, "test_acc_best")}}
        numbers = headline(run)
        acc = run.metrics()["test_acc"]
        relabels = bool(run.relabels_at_all)
        row.update(
            status=run.status,
            relabels=relabels,
            epochs=run.num_epochs,
            test_acc=numbers["test_acc"],
            test_acc_best=float(acc.max()) if len(acc) else np.nan,
            flipflops=numbers["flipflops"],
            relabel_events=numbers["relabel_events"],
            vetoed=float(run.vetoes()["vetoed"].sum()),
            classes_emptied=numbers["classes_emptied"],
            **{k: numbers.get(k, np.nan) if relabels else np.nan for k in RELABEL_ONLY},
            compactness_ratio=numbers["compactness_ratio"],
            nearest_own=numbers["nearest_own"],
            compactness_raw=numbers["compactness_raw"],
        )
    return row


def sweep_results(out: str | Path) -> pd.DataFrame:
    """One row per cell of the sweep in ``out`` (see :func:`run_row`)."""
    return pd.DataFrame([run_row(c) for c in manifest_cells(out)])


def sweep_table(results: pd.DataFrame | str | Path, epoch: Select = "last") -> pd.DataFrame:
    """Per (method, noise, guard): finished seeds, and mean and std over them of test
    accuracy (``epoch``: "last" or "best") and every other number of :func:`run_row`.
    Methods and guards keep the sweep's order; results without a guard column (read
    before the axis existed) are all ``none``."""
    if not isinstance(results, pd.DataFrame):
        results = sweep_results(results)
    results = results if "guard" in results else results.assign(guard=NONE)
    done = results[results["status"] == "finished"].copy()
    if epoch == "best":
        done["test_acc"] = done["test_acc_best"]
    rows = []
    for (method, noise, guard), group in done.groupby(["method", "noise", "guard"], sort=False):
        row = {"method": method, "noise": noise, "guard": guard, "seeds": len(group),
               "relabels": bool(group["relabels"].all())}
        for name in NUMBERS:
            values = group[name].astype(float) if name in group else pd.Series(np.nan, index=group.index)
            row[f"{name}_mean"] = values.mean()
            row[f"{name}_std"] = values.std(ddof=1) if len(values) > 1 else np.nan
        rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    for key in ("method", "guard"):
        table[key] = pd.Categorical(table[key], categories=list(dict.fromkeys(results[key])), ordered=True)
    table = table.sort_values(["method", "guard", "noise"]).reset_index(drop=True)
    return table.astype({"method": str, "guard": str})


def has_guard_axis(table: pd.DataFrame) -> bool:
    """Whether a :func:`sweep_table` compares relabel guards (any guard but ``none``)."""
    return "guard" in table and bool((table["guard"] != NONE).any())


def accuracy_table(table: pd.DataFrame) -> pd.DataFrame:
    """Table 3's layout: a row per method (per method and guard, a two-level index, when
    the sweep compares guards), a column per noise level, ``mean ± std`` of test accuracy
    in percent (std over seeds; shown as ± – with a single seed)."""
    cells = table.assign(cell=[_pm(m, s) for m, s in zip(table["test_acc_mean"], table["test_acc_std"])])
    rows = ["method", "guard"] if has_guard_axis(table) else ["method"]
    wide = cells.pivot(index=rows, columns="noise", values="cell")
    keys = table[rows].drop_duplicates()  # the table's order: the sweep's
    wide = wide.reindex(pd.MultiIndex.from_frame(keys) if len(rows) > 1 else pd.Index(keys["method"], name="method"))
    wide.columns = [f"noise {p:.0%}" for p in wide.columns]
    return wide.fillna("")


def relabel_table(table: pd.DataFrame) -> pd.DataFrame:
    """Per method and noise level (and guard, when the sweep compares guards): flip-flops,
    relabel events and the relabels the guards vetoed, noisy labels corrected and clean
    labels corrupted (shares of the noisy / clean training labels after the last epoch),
    with canaries the canaries relabelled back and the other labels moved (``Run.canary_recovery``),
    classes emptied, relabel consistency and compactness (means over seeds); methods that
    never relabel say so instead of showing zeros."""
    guards = has_guard_axis(table)
    canaries = "canaries_back_mean" in table and bool(table["canaries_back_mean"].notna().any())
    rows = []
    for _, r in table.iterrows():
        relabels = r["relabels"]
        rows.append({
            "method": r["method"],
            "noise": f"{r['noise']:.0%}",
            **({"guard": r["guard"]} if guards else {}),
            "seeds": int(r["seeds"]),
            "flip-flops": f"{r['flipflops_mean']:.1f}" if relabels else "no relabelling",
            "relabels": _count(r["relabel_events_mean"], relabels),
            "vetoed": _count(r["vetoed_mean"], relabels),
            "noisy labels corrected": _share(r["noisy_corrected_mean"], relabels),
            "clean labels corrupted": _share(r["clean_corrupted_mean"], relabels),
            **({"canaries relabelled back": _share(r["canaries_back_mean"], relabels),
                "other labels moved": _share(r["others_away_mean"], relabels)} if canaries else {}),
            "classes emptied": _count(r["classes_emptied_mean"], relabels, digits=2),
            "closer to new center": _share(r["closer_to_new_mean"], relabels),
            "relabelled − control": _share(r["closer_vs_control_mean"], relabels, signed=True),
            "own / nearest other center": f"{r['compactness_ratio_mean']:.3f}",
            "nearest center is own": f"{r['nearest_own_mean']:.1%}",
            "distance to own center (raw units)": f"{r['compactness_raw_mean']:.3g}",
        })
    return pd.DataFrame(rows)


def write_tables(out: str | Path, epoch: Select = "last") -> tuple[pd.DataFrame, str]:
    """Write ``table.csv`` (the numbers, one row per method and noise level) and
    ``table.md`` (both tables) into the sweep folder; returns the table and the Markdown."""
    out = Path(out)
    results = sweep_results(out)
    table = sweep_table(results, epoch=epoch)
    table.to_csv(out / f"{TABLE_NAME}.csv", index=False)
    results.to_csv(out / "runs.csv", index=False)
    markdown = render_markdown(out, results, table, epoch)
    (out / f"{TABLE_NAME}.md").write_text(markdown, encoding="utf-8")
    return table, markdown


def render_markdown(out: Path, results: pd.DataFrame, table: pd.DataFrame, epoch: Select) -> str:
    """Both tables with a line saying what they are and which runs are missing."""
    manifest = read_manifest(out)
    settings = ", ".join(f"{k}={v}" for k, v in sorted(manifest["settings"].items())) or "defaults"
    lines = [f"Sweep {out} ({settings}): {len(results)} runs, "
             f"{int((results['status'] == 'finished').sum())} finished."]
    unfinished = results[results["status"] != "finished"]
    if len(unfinished):
        lines.append("Not in the table: " + ", ".join(
            f"{r.method}/noise {r.noise:g}/seed {r.seed} ({r.status})" for r in unfinished.itertuples()) + ".")
    if table.empty:
        return "\n".join(lines + ["", "No finished run yet."]) + "\n"
    accuracy = accuracy_table(table)
    if has_guard_axis(table):  # a column per index level reads better than tuples
        accuracy = accuracy.reset_index().set_index("method")
    lines += ["", f"Test accuracy (%), {epoch} epoch, mean ± std over seeds:", "",
              accuracy.to_markdown(), "",
              "Flip-flops, relabels, noise recovery, classes emptied, relabel consistency and compactness "
              "(means over seeds):", "",
              relabel_table(table).to_markdown(index=False)]
    return "\n".join(lines) + "\n"


def _share(value: float, relabels: bool, *, signed: bool = False) -> str:
    """A fraction in percent ("+" first when ``signed``); "–" for a method that never
    relabels or a value that could not be measured."""
    if not relabels or pd.isna(value):
        return "–"
    return f"{value:+.1%}" if signed else f"{value:.1%}"


def _count(value: float, relabels: bool, *, digits: int = 1) -> str:
    """A mean count over seeds; "–" for a method that never relabels."""
    if not relabels or pd.isna(value):
        return "–"
    return f"{value:.{digits}f}"


def _pm(mean: float, std: float) -> str:
    if pd.isna(mean):
        return ""
    return f"{100 * mean:.2f} ± {100 * std:.2f}" if pd.notna(std) else f"{100 * mean:.2f} ± –"
