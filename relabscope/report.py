"""``relabscope report``: every view of one run (or two runs and their comparison) as files.

Layout of the output folder::

    index.html                 key numbers at the top, then every figure and table, linked
    tables/key_numbers.csv     the key numbers (and .md)
    figures/plotly.min.js      plotly.js, written once: the HTML figures work offline
    figures/<run>__<view>.html interactive figure (and .png next to it unless png=False)
    tables/<run>__<table>.csv  every table as CSV, and as Markdown (.md)

A sweep folder (``relabscope sweep``) gets :func:`write_sweep_report` instead: the noise
table and relabel table inline, the results against noise as figures, and every method
side by side at the highest noise level.

``<run>`` is the run's folder name (``a-``/``b-`` prefixed when two runs share one) or
``compare`` for the comparison views. Views that cannot apply are not drawn as empty
charts: the index says why instead (a method that never relabels, a data set without clean
labels). A run without relabel guards gets no guard views at all (the vetoes figure and
table, and the key numbers' guard columns, appear only when a run had a guard on). A view
whose analysis raises is listed as failed in the index (``strict=True`` re-raises instead).

PNG export: plotly's ``fig.write_image`` through kaleido >= 1.0, which drives a headless
Chrome/Chromium it finds on the system; relabscope was set up and tested with Debian's
``chromium`` package (``apt-get install chromium``, found as ``/usr/bin/chromium``). All
figures go through one ``plotly.io.write_images`` call, i.e. one browser start (about 2 s)
for the whole report. Without a browser the report still writes everything else and says
in the index (and through ``log``) that the PNGs were skipped; ``--no-png`` skips them on
purpose.

Markdown tables come from ``DataFrame.to_markdown`` (needs ``tabulate``); long tables are
cut to their first rows in Markdown (the CSV has them all).
"""

from __future__ import annotations

import fnmatch
import html
import re
import time
import traceback
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

import numpy as np
import pandas as pd

import plotly.io as pio
from plotly.offline import get_plotlyjs

from relabscope import plot
from relabscope.analysis.compactness import overall
from relabscope.analysis.compare import compare, veto_counts
from relabscope.analysis.run import Run
from relabscope.atomic import write_atomic
from relabscope.diskspace import disk_full, is_disk_full
from relabscope.errors import LogDamagedError, RunDirError
from relabscope.models.spec import ModelSpec
from relabscope.plot import figure_note, select_flipflopping
from relabscope.sweep import accuracy_table, read_manifest, relabel_table, sweep_results, sweep_table

if TYPE_CHECKING:
    from relabscope.analysis.projection import ProjectionMethod

MARKDOWN_ROWS = 50
#: plotly.js, once per report folder, beside the figures that load it
PLOTLY_JS = "plotly.min.js"
PNG_WIDTH = 1000


@dataclass
class _Item:
    section: str
    key: str
    title: str
    kind: str                      # "figure" | "table"
    files: dict[str, str] = field(default_factory=dict)  # kind of file -> path relative to out_dir
    note: str | None = None        # why there is nothing to draw
    error: str | None = None       # the view failed
    rows: int | None = None
    inline: str | None = None      # small table rendered into the index


@dataclass
class _Report:
    out: Path
    strict: bool
    log: Callable[[str], None]
    items: list[_Item] = field(default_factory=list)
    figures: list[tuple[Any, Path]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    # ---------------------------------------------------------------- figures
    def figure(self, section: str, slug: str, key: str, make: Callable[[], Any], *, png: Any = True,
               describe: str | None = None) -> None:
        item = _Item(section, key, key.replace("_", " "), "figure")
        self.items.append(item)
        try:
            fig = make()
        except Exception as exc:  # a failing view must not cost the whole report
            self._failed(item, exc)
            return
        item.title = _plain(fig.layout.title.text or key)
        if describe:
            item.title += f" ({describe})"
        note = figure_note(fig)
        if note:
            item.note = note
            return
        name = f"{slug}__{key}"
        path = self.out / "figures" / f"{name}.html"
        write_atomic(path, fig.to_html(include_plotlyjs=PLOTLY_JS, full_html=True, config={
            "displaylogo": False, "toImageButtonOptions": {"format": "png", "filename": name}}))
        item.files["html"] = f"figures/{name}.html"
        if _wants_png(png, key):
            self.figures.append((fig, self.out / "figures" / f"{name}.png"))
            item.files["png"] = f"figures/{name}.png"

    # ---------------------------------------------------------------- tables
    def table(self, section: str, slug: str, key: str, make: Callable[[], pd.DataFrame | pd.Series], *,
              index: bool = False, inline: bool = False, title: str | None = None, note: str | None = None) -> None:
        item = _Item(section, key, title or key.replace("_", " "), "table")
        self.items.append(item)
        if note:
            item.note = note
            return
        try:
            df = make()
        except Exception as exc:
            self._failed(item, exc)
            return
        if isinstance(df, pd.Series):
            df = df.to_frame()
            index = True
        name = f"{slug}__{key}"
        write_atomic(self.out / "tables" / f"{name}.csv", df.to_csv(index=index))
        write_atomic(self.out / "tables" / f"{name}.md", _markdown(df, index=index, title=f"{item.title} ({slug})"))
        item.files = {"csv": f"tables/{name}.csv", "md": f"tables/{name}.md"}
        item.rows = len(df)
        if inline:
            item.inline = _format(df).to_html(index=index, border=0, classes="data", na_rep="n/a", escape=True)

    def _failed(self, item: _Item, exc: BaseException) -> None:
        if self.strict or isinstance(exc, LogDamagedError):
            raise exc  # a damaged log: one line, not a report of wrong or missing numbers
        item.error = f"{type(exc).__name__}: {exc}"
        where = traceback.extract_tb(exc.__traceback__)[-1]
        self.log(f"report: {item.section} / {item.key} failed: {item.error} "
                 f"({Path(where.filename).name}:{where.lineno})")

    # ---------------------------------------------------------------- PNG
    def write_pngs(self) -> None:
        if not self.figures:
            return
        figs = [f for f, _ in self.figures]
        paths = [p for _, p in self.figures]
        try:
            pio.write_images(figs, paths, width=[f.layout.width or PNG_WIDTH for f in figs],
                             height=[f.layout.height or 500 for f in figs])
        except Exception as exc:
            for p in paths:
                p.unlink(missing_ok=True)  # none half written
            if is_disk_full(exc):
                raise disk_full(self.out / "figures", None, "writing the report's PNG figures") from None
            if self.strict:
                raise
            reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
            msg = (f"PNG export skipped ({reason}). kaleido needs Chrome or Chromium "
                   "(Debian: apt-get install chromium); or pass --no-png.")
            self.notes.append(msg)
            self.log("report: " + msg)
            for item in self.items:
                item.files.pop("png", None)


# ==================================================================== public entry point
def write_report(runs: Sequence[Run | str | Path] | Run | str | Path, out_dir: str | Path, *,
                 png: bool | Iterable[str] = True, top: int = 20, samples: int = 3, gradcam_samples: int = 4,
                 projection: ProjectionMethod | None = "umap", max_points: int = 2000,
                 model: ModelSpec | None = None, strict: bool = False,
                 log: Callable[[str], None] | None = None) -> Path:
    """Write every view of one run, or of two runs plus comparison views, into ``out_dir``
    and return the path of its ``index.html``.

    ``png``: export every figure as PNG too (True), none (False), or only the views whose
    key matches one of the given ``fnmatch`` patterns (e.g. ``{"accuracy", "distances_*"}``).
    ``top``: samples in the flip-flop bars; ``samples``: samples that get their own distance
    bars, label timeline and probability trace (the most flip-flopping ones); ``gradcam_samples``
    for the Grad-CAM grid; ``projection``: "umap", "tsne", "pca" or None (no embedding map) of the
    last kept embedding epoch, at most ``max_points`` points. ``model``: the model
    Grad-CAM explains for runs of a model relabscope did not build (without it, the one the
    run recorded; else Grad-CAM is listed as not available). ``log`` receives one line per
    failed view or skipped export.
    """
    started = time.perf_counter()
    given = [runs] if isinstance(runs, (Run, str, Path)) else list(runs)
    if not 1 <= len(given) <= 2:
        raise ValueError(f"write_report takes one or two runs, not {len(given)}")
    opened = [r if isinstance(r, Run) else open_for_report(r) for r in given]
    out = _report_dir(out_dir)
    rep = _Report(out, strict, log or (lambda line: None))
    slugs = _slugs(opened)

    for run, slug in zip(opened, slugs):
        _run_views(rep, run, slug, png=png, top=top, samples=samples, gradcam_samples=gradcam_samples,
                   projection=projection, max_points=max_points,
                   model=model if model is not None and not run.trained_by_relabscope else None)
    if len(opened) == 2:
        _comparison_views(rep, opened, png=png)
    rep.write_pngs()
    headline = _headline(opened, slugs)
    write_atomic(out / "tables" / "key_numbers.csv", headline.to_csv(index=False))
    write_atomic(out / "tables" / "key_numbers.md", _markdown(headline, index=False, title="Key numbers"))
    index = out / "index.html"
    write_atomic(index, _index_html(rep, opened, slugs, headline, seconds=time.perf_counter() - started))
    return index


def write_sweep_report(sweep: str | Path, out_dir: str | Path, *, png: bool | Iterable[str] = True,
                       epoch: str = "last", strict: bool = False, log: Callable[[str], None] | None = None) -> Path:
    """The report of a ``relabscope sweep`` folder: the noise table (Table 3 layout) and the
    relabel table inline, accuracy, flip-flops and compactness against noise, and at the
    highest noise level the consistency and compactness of every method's first seed side
    by side. Returns the path of its ``index.html``."""
    started = time.perf_counter()
    sweep = Path(sweep)
    manifest = read_manifest(sweep)
    out = _report_dir(out_dir)
    rep = _Report(out, strict, log or (lambda line: None))
    results = sweep_results(sweep)
    table = sweep_table(results, epoch=epoch)  # type: ignore[arg-type]
    name = sweep.resolve().name
    sec = "sweep"
    rep.table(sec, sec, "accuracy", lambda: accuracy_table(table), index=True, inline=True,
              title=f"test accuracy (%), {epoch} epoch, mean ± std over seeds")
    rep.table(sec, sec, "relabelling", lambda: relabel_table(table), inline=True,
              title="flip-flops, relabel consistency and compactness (means over seeds)")
    rep.table(sec, sec, "numbers", lambda: table, title="every number, per method and noise level")
    rep.table(sec, sec, "runs", lambda: results, title="every run of the sweep")
    rep.figure(sec, sec, "accuracy_vs_noise", lambda: plot.sweep_accuracy_figure(table, name=name), png=png)
    rep.figure(sec, sec, "relabelling_vs_noise", lambda: plot.sweep_relabel_figure(table, name=name), png=png)
    finished = results[results["status"] == "finished"]
    runs: list[Run] = []
    if len(finished):
        top = finished[finished["noise"] == finished["noise"].max()]
        first = top[top["seed"] == top["seed"].min()]
        runs = [Run(path) for path in first["run"]]
        noise = f"noise {float(first['noise'].iloc[0]):.0%}, seed {int(first['seed'].iloc[0])}"
        sec2 = "highest-noise"
        rep.figure(sec2, sec2, "consistency", lambda: plot.consistency_summary(runs), png=png, describe=noise)
        rep.figure(sec2, sec2, "compactness", lambda: plot.compactness(runs), png=png, describe=noise)
        rep.figure(sec2, sec2, "accuracy", lambda: plot.accuracy_curves(runs), png=png, describe=noise)
    rep.write_pngs()
    for run in runs:
        run.close()
    settings = ", ".join(f"{k}={v}" for k, v in sorted(manifest["settings"].items())) or "default settings"
    e = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>relabscope sweep: {e(name)}</title>"
             f"<style>{_CSS}</style></head><body>",
             f"<h1>relabscope sweep: {e(name)}</h1>",
             f"<p class='muted'>{len(results)} runs ({len(finished)} finished): methods "
             f"{e(', '.join(manifest['methods']))}; noise {e(', '.join(f'{p:g}' for p in manifest['noise']))}; "
             f"seeds {e(', '.join(map(str, manifest['seeds'])))}; {e(settings)}. "
             f"Written in {time.perf_counter() - started:.0f} s on {time.strftime('%Y-%m-%d %H:%M')}.</p>"]
    parts += [f"<p class='note'>{e(msg)}</p>" for msg in rep.notes]
    parts.append(_section_html(rep, sec, "Results across noise levels"))
    if runs:
        parts.append(_section_html(rep, "highest-noise", f"Every method at {noise}"))
    parts.append("</body></html>")
    index = out / "index.html"
    write_atomic(index, "\n".join(parts))
    return index


def _report_dir(out_dir: str | Path) -> Path:
    out = Path(out_dir)
    try:
        (out / "figures").mkdir(parents=True, exist_ok=True)
        (out / "tables").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        if is_disk_full(exc):
            raise disk_full(out, None, "creating the report folder") from None
        raise RunDirError(f"{out}: cannot create the report folder ({exc.strerror or exc})") from exc
    _write_plotly_js(out / "figures" / PLOTLY_JS)
    return out


def _write_plotly_js(path: Path) -> None:
    """plotly.js beside the figures, so they work offline: written atomically, and again
    whenever the file there is not plotly's own (a report cut short by a full disk once
    left a truncated copy that every later report kept, its figures blank)."""
    script = get_plotlyjs().encode("utf-8")
    try:
        if path.stat().st_size == len(script) and path.read_bytes() == script:
            return
    except OSError:
        pass
    write_atomic(path, script)


def open_for_report(path: str | Path) -> Run:
    """Open a run directory (or its run.h5); a path that is not a run raises RunDirError
    with one line (the reader's message)."""
    return Run(path)


# ==================================================================== the views
def _run_views(rep: _Report, run: Run, slug: str, *, png: Any, top: int, samples: int, gradcam_samples: int,
               projection: ProjectionMethod | None, max_points: int, model: ModelSpec | None = None) -> None:
    sec = slug
    relabels = run.relabels_at_all
    clean_known = run.clean_labels is not None
    no_relabel = plot.never_relabels(run.method)
    no_clean = "clean labels are unknown for this data set"

    # training
    rep.figure(sec, slug, "accuracy", lambda: plot.accuracy_curves(run), png=png)
    rep.figure(sec, slug, "class_accuracy", lambda: plot.class_accuracy(run), png=png)
    rep.figure(sec, slug, "confusion", lambda: plot.confusion(run), png=png)
    rep.figure(sec, slug, "relabels_per_epoch", lambda: plot.relabels_per_epoch(run), png=png)
    if run.guards:  # a run without guards gets no view of them: no empty chart, no empty table
        rep.figure(sec, slug, "vetoes", lambda: plot.vetoes(run), png=png)
        rep.table(sec, slug, "vetoes", lambda: _veto_table(run), index=True, inline=True,
                  title="relabels vetoed by the relabel guards, per guard and class they would have left")
    rep.table(sec, slug, "metrics", run.metrics)

    # class balance: did relabelling absorb a class?
    rep.figure(sec, slug, "class_counts", lambda: plot.class_counts(run), png=png)
    rep.figure(sec, slug, "label_flow", lambda: plot.label_flow(run), png=png)
    rep.table(sec, slug, "class_warnings", run.class_warnings, inline=bool(len(_class_warnings(run))),
              title="classes relabelling emptied or shrank below half their given size")
    rep.table(sec, slug, "class_counts", run.class_counts, title="class sizes per epoch under the labels in effect")
    rep.table(sec, slug, "label_flow", run.label_flow, index=True, title="given label → label after the last epoch")

    # relabel inconsistency
    rep.figure(sec, slug, "flipflops", lambda: plot.flipflops(run, top=top), png=png)
    rep.figure(sec, slug, "oscillations", lambda: plot.oscillation_heatmap(run), png=png)
    rep.table(sec, slug, "flipflops", run.flipflops, note=None if relabels else no_relabel,
              title="flip-flops per training sample")
    rep.table(sec, slug, "oscillation_matrix", run.oscillation_matrix, index=True,
              note=None if relabels else no_relabel, title="oscillation matrix (A → B → A)")

    # consistency (the paper's claim)
    rep.figure(sec, slug, "consistency", lambda: plot.consistency_summary(run), png=png)
    rep.figure(sec, slug, "consistency_by_lag", lambda: plot.consistency_by_lag(run), png=png)
    rep.figure(sec, slug, "gap_change", lambda: plot.gap_change_histogram(run), png=png)
    rep.figure(sec, slug, "consistency_scatter", lambda: plot.consistency_scatter(run), png=png)
    rep.table(sec, slug, "consistency", run.consistency, inline=relabels,
              note=None if relabels else no_relabel, title="relabel consistency (after: once trained on the new label)")
    rep.table(sec, slug, "consistency_by_lag", run.consistency_by_lag, inline=relabels,
              note=None if relabels else no_relabel,
              title="closer to the new class k epochs after the relabel, against the control group")
    rep.table(sec, slug, "consistency_events", run.consistency_events,
              note=None if relabels else no_relabel, title="relabel events with distances before and after")
    rep.table(sec, slug, "consistency_control", run.consistency_control,
              note=None if relabels else no_relabel,
              title="control group: samples not relabelled whose margin fell just below the threshold")

    # distances: Table 2 and Fig. 1/4 for a few samples
    rep.figure(sec, slug, "compactness", lambda: plot.compactness(run), png=png)
    rep.table(sec, slug, "compactness", run.compactness, index=True, inline=True,
              title="compactness (Table 2): distance to own class center")
    try:
        chosen, why = _chosen_samples(run, max(samples, gradcam_samples))
    except Exception as exc:
        chosen, why = [], ""
        rep._failed(_Item(sec, "sample choice", "sample choice", "figure"), exc)
    for sid in chosen[:samples]:
        rep.figure(sec, slug, f"distances_sample{sid}", partial(plot.distance_bars, run, sid), png=png,
                   describe=why)
        rep.figure(sec, slug, f"timeline_sample{sid}", partial(plot.label_timeline, run, sid), png=png)
        rep.figure(sec, slug, f"probabilities_sample{sid}", partial(plot.probability_trace, run, sid), png=png)

    # embeddings and attention
    if projection:
        rep.figure(sec, slug, "projection", lambda: plot.projection(
            run, method=projection, max_points=max_points), png=png)
        rep.figure(sec, slug, "projection_given", lambda: plot.projection(
            run, method=projection, max_points=max_points, color="given"), png=png)
        if relabels:
            rep.figure(sec, slug, "projection_flipflops", lambda: plot.projection(
                run, method=projection, max_points=max_points, color="flipflops"), png=png)
    if gradcam_samples and chosen:
        rep.figure(sec, slug, "gradcam", lambda: plot.gradcam(run, chosen[:gradcam_samples], model=model), png=png,
                   describe=why)

    # dynamics and noise
    rep.figure(sec, slug, "data_map", lambda: plot.data_map(run), png=png)
    rep.table(sec, slug, "dynamics", run.dynamics, title="training dynamics per sample")
    rep.figure(sec, slug, "noise_recovery", lambda: plot.noise_recovery(run), png=png)
    rep.table(sec, slug, "noise_recovery", run.noise_recovery,
              note=(no_clean if not clean_known else None if relabels else no_relabel + ": its labels stay as given"))
    rep.figure(sec, slug, "noise_detection", lambda: plot.noise_detection(run), png=png)
    rep.table(sec, slug, "noise_detection", run.noise_detection, inline=clean_known,
              note=None if clean_known else no_clean, title="noise detection (AUROC per score)")


def _comparison_views(rep: _Report, runs: list[Run], *, png: Any) -> None:
    sec, slug = "compare", "compare"
    rep.figure(sec, slug, "accuracy", lambda: plot.accuracy_curves(runs), png=png)
    rep.figure(sec, slug, "relabels_per_epoch", lambda: plot.relabels_per_epoch(runs), png=png)
    if any(r.guards for r in runs):
        rep.figure(sec, slug, "vetoes", lambda: plot.vetoes(runs), png=png)
    rep.figure(sec, slug, "compactness", lambda: plot.compactness(runs), png=png)
    rep.figure(sec, slug, "consistency", lambda: plot.consistency_summary(runs), png=png)
    rep.figure(sec, slug, "consistency_by_lag", lambda: plot.consistency_by_lag(runs), png=png)
    rep.figure(sec, slug, "gap_change", lambda: plot.gap_change_histogram(runs), png=png)
    rep.figure(sec, slug, "flipflop_totals", lambda: plot.flipflop_totals(runs), png=png)
    rep.figure(sec, slug, "class_counts", lambda: plot.class_counts(runs), png=png)
    rep.figure(sec, slug, "label_flow", lambda: plot.label_flow(runs), png=png)
    comp = compare(runs[0], runs[1])
    try:
        geometry = comp.geometry_note()
    except Exception:
        geometry = None  # the compactness view that needs it says why it failed
    if geometry:
        rep.notes.append(geometry)
    rep.table(sec, slug, "class_counts", comp.class_counts, index=True,
              title="class sizes: given, after the last epoch and smallest, of both runs")
    rep.table(sec, slug, "summary", lambda: comp.summary(warn=False), index=True, inline=True, title="headline numbers, B − A")
    if any(r.config.get("corrections") for r in runs):
        rep.table(sec, slug, "correction_round", lambda: _required(comp.correction_round()), inline=True,
                  title="correction round: what the reviewers' decisions did (train --corrections)")
    rep.table(sec, slug, "compactness", comp.compactness, index=True, title="compactness of both runs")
    rep.table(sec, slug, "consistency", comp.consistency, index=True, title="relabel consistency of both runs")
    rep.table(sec, slug, "metrics", comp.metrics, title="per-epoch metrics of both runs")
    rep.table(sec, slug, "samples", comp.samples, title="training samples of both runs, aligned by key")


def _required(table: pd.DataFrame | None) -> pd.DataFrame:
    """A table the caller checked exists (the report's views take DataFrames only)."""
    if table is None:
        raise ValueError("no table")
    return table


def _veto_table(run: Run) -> pd.DataFrame:
    """``Run.vetoes()`` summed over the epochs: one row per guard on, one column per class
    (display order) and the total; the per-epoch rows go to the figure."""
    table = run.vetoes()
    classes = plot.ordered_names(run.class_names)
    wide = (table.pivot_table(index="guard", columns="class_name", values="vetoed", aggfunc="sum")
            .reindex(index=run.guards, columns=classes).fillna(0).astype(np.int64))
    wide["total"] = wide.sum(axis=1)
    wide.columns.name = None
    return wide


def _class_warnings(run: Run) -> list[str]:
    """The run's class-balance warnings, or none when they cannot be computed (the view
    that failed says why)."""
    try:
        return list(run.class_warnings()["message"])
    except Exception:
        return []


def _chosen_samples(run: Run, n: int) -> tuple[list[int], str]:
    """Samples worth a closer look: the most flip-flopping ones when the method relabels,
    else the training samples with the lowest area under the margin of their given label."""
    if run.relabels_at_all:
        ids = select_flipflopping(run.flipflops(), n)["sample_id"].astype(int).tolist()
        if ids:
            return ids, "most flip-flopping"
    dyn = run.dynamics().sort_values(["aum_given", "sample_id"], na_position="last", kind="stable")
    return dyn["sample_id"].head(n).astype(int).tolist(), "lowest AUM of the given label"


# ==================================================================== index
def _headline(runs: list[Run], slugs: list[str]) -> pd.DataFrame:
    rows = []
    for run, slug in zip(runs, slugs):
        row: dict[str, Any] = {"run": run.name, "method": run.method, "dataset": run.meta.get("dataset", "?"),
                               "epochs": run.num_epochs, "status": run.status}
        try:
            m = run.metrics()
            row["final test accuracy"] = float(m["test_acc"].iloc[-1]) if len(m) else np.nan
        except Exception:
            row["final test accuracy"] = np.nan
        if run.relabels_at_all:
            try:
                ff = run.flipflops()
                row["relabel events"] = int(ff["changes"].sum())
                row["relabelled samples"] = int((ff["changes"] > 0).sum())
                row["flip-flops"] = int(ff["flipflops"].sum())
            except Exception:
                pass
            try:
                cons = run.consistency()
                row["closer to new (consistency)"] = float(cons["closer_to_new"])
                row["relabelled − control"] = float(cons["closer_vs_control"])
            except Exception:
                pass
        else:
            row["relabel events"] = row["relabelled samples"] = row["flip-flops"] = "never relabels"
            row["closer to new (consistency)"] = row["relabelled − control"] = "—"
        if any(r.guards for r in runs):  # only then: a report of runs without guards stays as it was
            row.update(_veto_numbers(run))
        try:
            comp = overall(run.compactness())
            row["own / nearest other center (scale-free)"] = comp["ratio"]
            row["nearest center is own"] = comp["nearest_own"]
            row["distance to own center (raw units)"] = comp["mean"]
        except Exception:
            pass
        try:
            kinds = run.class_warnings()["kind"]
            row["classes emptied"] = int((kinds == "emptied").sum())
            row["classes below half"] = int((kinds == "shrunk").sum())
        except Exception:
            pass
        rows.append(row)
    table = pd.DataFrame(rows)
    guard_columns = [c for c in ("relabel guards", "relabels vetoed") if c in table]
    if guard_columns and "relabel events" in table:  # the vetoes next to the relabel events
        rest = [c for c in table.columns if c not in guard_columns]
        at = rest.index("relabel events") + 1
        table = table[rest[:at] + guard_columns + rest[at:]]
    return table


def _veto_numbers(run: Run) -> dict[str, Any]:
    """The key numbers of the relabel guards: which were on, and the relabels they vetoed
    (each guard's count in brackets); "none" / "no guard" for a run without one."""
    if not run.guards:
        return {"relabel guards": "none", "relabels vetoed": "no guard"}
    try:
        counts = veto_counts(run)
    except Exception:
        return {"relabel guards": ", ".join(run.guards)}
    by = ", ".join(f"{k.removeprefix('vetoed_by_')} {int(v):,}" for k, v in counts.items() if k.startswith("vetoed_by_"))
    return {"relabel guards": ", ".join(run.guards),
            "relabels vetoed": f"{int(counts['relabels_vetoed']):,} ({by})"}


_CSS = """
body{font-family:Inter,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1180px;color:#222;padding:0 1em}
h1{margin-bottom:.2em} h2{border-bottom:2px solid #eee;padding-bottom:.2em;margin-top:2em}
.muted{color:#666} .note{color:#555;font-style:italic} .error{color:#b00020}
.warn{border:1px solid #e8c26e;background:#fff9e8;border-radius:6px;padding:.5em 1em;margin:1em 0;color:#5a3b00}
table.data{border-collapse:collapse;margin:.5em 0 1em} table.data th,table.data td{padding:.25em .7em;
border-bottom:1px solid #e5e5e5;text-align:right} table.data th:first-child,table.data td:first-child{text-align:left}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(340px,1fr));gap:1.2em}
.card{border:1px solid #e5e5e5;border-radius:6px;padding:.6em .8em;background:#fafafa}
.card img{width:100%;border:1px solid #eee;background:white} .card .t{font-size:.92em;margin-bottom:.4em}
ul.tables li{margin:.2em 0} .scroll{overflow-x:auto;max-width:100%}
"""


def _index_html(rep: _Report, runs: list[Run], slugs: list[str], headline: pd.DataFrame, *, seconds: float) -> str:
    e = html.escape
    names = " vs ".join(r.name for r in runs)
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>relabscope report: {e(names)}</title>"
             f"<style>{_CSS}</style></head><body>",
             f"<h1>relabscope report: {e(names)}</h1>",
             f"<p class='muted'>{len([i for i in rep.items if i.kind == 'figure' and i.files])} figures, "
             f"{len([i for i in rep.items if i.kind == 'table' and i.files])} tables, written in {seconds:.0f} s "
             f"on {time.strftime('%Y-%m-%d %H:%M')}. Epochs are 0-based rows as in the run log.</p>",
             "<h2 id='key-numbers'>Key numbers</h2>",
             _key_numbers_html(headline),
             "<p><a href='tables/key_numbers.csv'>CSV</a> · <a href='tables/key_numbers.md'>Markdown</a></p>"]
    for msg in rep.notes:
        parts.append(f"<p class='note'>{e(msg)}</p>")
    balance = [f"{run.name}: {m}" if len(runs) > 1 else m for run in runs for m in _class_warnings(run)]
    if balance:
        parts.append("<div class='warn'><b>Relabelling changed the class balance</b><ul>"
                     + "".join(f"<li>{e(m)}</li>" for m in balance) + "</ul></div>")
    failed = [i for i in rep.items if i.error]
    if failed:
        parts.append("<p class='error'>Views that failed: " + ", ".join(
            f"{e(i.section)} / {e(i.key)}" for i in failed) + " (details below).</p>")
    sections = [(slug, f"{run.name} ({run.method}, {run.meta.get('dataset', '?')}, {run.num_epochs} epochs)")
                for run, slug in zip(runs, slugs)]
    if len(runs) == 2:
        sections.insert(0, ("compare", f"Comparison: {runs[0].name} (A) vs {runs[1].name} (B)"))
    parts.append("<p>" + " · ".join(f"<a href='#{e(s)}'>{e(t.split(' (')[0])}</a>" for s, t in sections) + "</p>")
    for sec, heading in sections:
        parts.append(_section_html(rep, sec, heading))
    parts.append("</body></html>")
    return "\n".join(parts)


def _section_html(rep: _Report, sec: str, heading: str) -> str:
    """One section of the index: its inline tables, figure cards and table links."""
    e = html.escape
    items = [i for i in rep.items if i.section == sec]
    parts = []
    parts.append(f"<h2 id='{e(sec)}'>{e(heading)}</h2>")
    inline = [i for i in items if i.kind == "table" and i.inline]
    for i in inline:
        parts.append(f"<h3>{e(i.title)}</h3><div class='scroll'>{i.inline}</div>")
    parts.append("<div class='grid'>")
    parts += [_figure_card(i) for i in items if i.kind == "figure"]
    parts.append("</div><h3>Tables</h3><ul class='tables'>")
    parts += [_table_entry(i) for i in items if i.kind == "table"]
    parts.append("</ul>")
    return "\n".join(parts)


def _figure_card(i: _Item) -> str:
    """A figure's card on the index: its PNG linking to the interactive HTML, or why it
    is not there."""
    e = html.escape
    if i.error or i.note:
        return f"<div class='card'><div class='t'>{e(i.title)}</div><p>{_status_html(i)}</p></div>"
    img = (f"<a href='{e(i.files['html'])}'><img src='{e(i.files['png'])}' alt='{e(i.title)}'></a>"
           if "png" in i.files else "")
    links = f"<a href='{e(i.files['html'])}'>interactive</a>"
    if "png" in i.files:
        links += f" · <a href='{e(i.files['png'])}'>PNG</a>"
    return f"<div class='card'><div class='t'>{e(i.title)}</div>{img}<div>{links}</div></div>"


def _key_numbers_html(headline: pd.DataFrame) -> str:
    """The key numbers on the index: one row per figure, one column per run (fourteen
    figures side by side ran wider than the page; the CSV keeps a row per run)."""
    shown = _format(_percent(headline, ["final test accuracy", "closer to new (consistency)",
                                        "relabelled − control", "nearest center is own"]))
    table = shown.set_index("run").T.to_html(index=True, border=0, classes="data", na_rep="n/a", escape=True)
    return f"<div class='scroll'>{table}</div>"


def _table_entry(i: _Item) -> str:
    """A table's line on the index: its CSV and Markdown files, or why it is not there."""
    e = html.escape
    if i.error or i.note:
        return f"<li>{e(i.title)}: {_status_html(i)}</li>"
    return (f"<li>{e(i.title)} ({i.rows} rows): <a href='{e(i.files['csv'])}'>CSV</a> · "
            f"<a href='{e(i.files['md'])}'>Markdown</a></li>")


def _status_html(item: _Item) -> str:
    """Why a view shows nothing: it failed, or it cannot apply (its note)."""
    if item.error:
        return f"<span class='error'>failed: {html.escape(item.error)}</span>"
    return f"<span class='note'>{html.escape(item.note or '')}</span>"


# ==================================================================== helpers
def _wants_png(png: Any, key: str) -> bool:
    if isinstance(png, bool):
        return png
    if isinstance(png, str):
        png = [png]
    return any(fnmatch.fnmatchcase(key, pattern) for pattern in png)


def _slugs(runs: list[Run]) -> list[str]:
    base = [re.sub(r"[^A-Za-z0-9._-]+", "-", r.name).strip("-.") or "run" for r in runs]
    if len(set(base)) < len(base) or "compare" in base:
        base = [f"{chr(ord('a') + i)}-{b}" for i, b in enumerate(base)]
    return base


def _plain(text: str) -> str:
    return re.sub(r"<[^>]+>", " ", str(text)).strip()


def _format(df: pd.DataFrame) -> pd.DataFrame:
    """Floats to 4 significant digits for display (tables in files keep full precision)."""
    out = df.copy()
    for col in out.columns:
        if pd.api.types.is_float_dtype(out[col]):
            out[col] = out[col].map(lambda v: "n/a" if pd.isna(v) else f"{v:.4g}")
        elif out[col].dtype == object:
            out[col] = out[col].map(lambda v: f"{v:.4g}" if isinstance(v, float) and not pd.isna(v) else v)
    return out


def _percent(df: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    out = df.copy()
    for col in columns:
        if col in out:
            out[col] = out[col].map(lambda v: f"{v:.1%}" if isinstance(v, (float, np.floating)) and not pd.isna(v)
                                    else "n/a" if isinstance(v, float) else v)
    return out


def _markdown(df: pd.DataFrame, *, index: bool, title: str) -> str:
    shown = df.head(MARKDOWN_ROWS)
    cut = f"\n\nFirst {MARKDOWN_ROWS} of {len(df)} rows; the CSV next to this file has them all.\n" \
        if len(df) > MARKDOWN_ROWS else "\n"
    return f"# {title}\n\n" + _format(shown).to_markdown(index=index) + cut
