"""Training dynamics per sample: the data map (confidence vs variability), noise recovery
over epochs and noise detection scores (when clean labels are known), and one sample's
class probabilities over epochs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from relabscope.plot._style import (CLEAN, EFFECT, FAINT, GIVEN, NOISY, class_colors, finish, never_relabels,
                                    note, note_figure, ordered_names, title)

if TYPE_CHECKING:
    from relabscope.analysis.run import Run

NO_CLEAN = "clean labels are unknown for this data set"


# ---------------------------------------------------------------- data map
def data_map(run: Run, *, label: str = "given") -> go.Figure:
    """Swayamdipta et al.'s data map: mean p(label) vs its std over epochs, per training
    sample; noisy samples in red when clean labels are known.

    Args:
        run: the run.
        label: "given" or "effect": the label whose probability is mapped.

    Returns:
        The figure.

    Example:
        >>> import tempfile, relabscope as rs
        >>> run = rs.open_run(rs.example_run(tempfile.mkdtemp() + "/example"))
        >>> fig = rs.plot.data_map(run)
        >>> [trace.name for trace in fig.data]  # the example's two noisy labels
        ['clean (62)', 'noisy (given ≠ clean) (2)']
    """
    dyn = run.dynamics()
    noisy = None
    if run.clean_labels is not None:
        s = run.samples.set_index("sample_id")["noisy"]
        noisy = s.reindex(dyn["sample_id"].to_numpy())
    return data_map_figure(dyn, label=label, noisy=noisy, run_name=run.name)


def data_map_figure(dynamics: pd.DataFrame, *, label: str = "given", noisy: pd.Series | None = None,
                    run_name: str | None = None) -> go.Figure:
    """Draw :func:`data_map` from a table.

    Args:
        dynamics: ``Run.dynamics()`` (sample_id, confidence_<label>, variability_<label>).
        label: "given" or "effect".
        noisy: per sample (aligned with ``dynamics``), whether its given label is wrong;
            None when unknown.
        run_name: the run's name, for the title.

    Returns:
        The figure.
    """
    x = dynamics[f"variability_{label}"].to_numpy(float)
    y = dynamics[f"confidence_{label}"].to_numpy(float)
    ids = dynamics["sample_id"].to_numpy()
    word = "given label" if label == "given" else "label in effect"
    fig = go.Figure()
    if noisy is not None:
        flag = np.asarray(pd.array(np.asarray(noisy), dtype="boolean").fillna(False), dtype=bool)
        groups = [("clean", ~flag, FAINT), ("noisy (given ≠ clean)", flag, NOISY)]
    else:
        groups = [("samples", np.ones(len(ids), bool), "#4c78a8")]
    for name, mask, colour in groups:
        if not mask.any():
            continue
        fig.add_trace(go.Scattergl(
            x=x[mask], y=y[mask], mode="markers", name=f"{name} ({int(mask.sum())})",
            marker=dict(color=colour, size=6, opacity=0.7), customdata=ids[mask],
            hovertemplate="sample %{customdata}<br>variability %{x:.3f}<br>confidence %{y:.3f}<extra></extra>"))
    fig.update_xaxes(title_text=f"variability (std of p({word}))", rangemode="tozero")
    fig.update_yaxes(title_text=f"confidence (mean p({word}))", range=[-0.02, 1.02])
    if noisy is None:
        note(fig, NO_CLEAN + ": noisy samples not marked")
    return finish(fig, title(f"Data map against the {word}", run_name), height=540, width=680)


# ---------------------------------------------------------------- noise recovery
def noise_recovery(run: Run) -> go.Figure:
    """Per epoch: relabel precision and recall against clean labels, fraction of noisy
    samples corrected and of clean samples corrupted.

    Args:
        run: the run.

    Returns:
        The figure (a note without clean labels, or when the method never relabels).
    """
    head = title("Noise recovery", run.name)
    if run.clean_labels is None:
        return canary_recovery(run) if run.has_canaries else note_figure(NO_CLEAN, head)
    if not run.relabels_at_all:
        return note_figure(never_relabels(run.method) + ": its labels stay as given", head)
    return noise_recovery_figure(run.noise_recovery(), run_name=run.name)


def canary_recovery(run: Run) -> go.Figure:
    """Per epoch, without clean labels: the canaries relabelling returned to their label
    and the other samples it moved off their given one (``Run.canary_recovery``).

    Args:
        run: a run trained with canaries.

    Returns:
        The figure (a note without canaries, or when the method never relabels).
    """
    head = title("Is relabelling helping? Canaries", run.name)
    if not run.has_canaries:
        return note_figure("no canaries in this run: train it with --canaries 0.02", head)
    if not run.relabels_at_all:
        return note_figure(never_relabels(run.method) + ": its labels stay as given", head)
    return canary_recovery_figure(run.canary_recovery(), run_name=run.name)


def canary_recovery_figure(df: pd.DataFrame, *, run_name: str | None = None) -> go.Figure:
    """Draw :func:`canary_recovery` from ``Run.canary_recovery()`` (epoch, relabels,
    canaries_back, others_away)."""
    lines = [("canaries_back", "canaries relabelled back to their label (planted errors undone)", GIVEN, "solid"),
             ("others_away", "other samples moved off their given label (at most the corrupted)", NOISY, "solid")]
    return _recovery_figure(df, lines, title("Is relabelling helping? Canaries", run_name))


def noise_recovery_figure(df: pd.DataFrame, *, relabels_at_all: bool = True, method: str | None = None,
                          run_name: str | None = None) -> go.Figure:
    """Draw :func:`noise_recovery` from a table.

    Args:
        df: ``Run.noise_recovery()`` (epoch, relabels, relabel_precision,
            relabel_recall, noisy_corrected, clean_corrupted).
        relabels_at_all: whether the method can relabel (False: a note instead).
        method: the method's name, for that note.
        run_name: the run's name, for the title.

    Returns:
        The figure.
    """
    head = title("Noise recovery", run_name)
    if not relabels_at_all:
        return note_figure(never_relabels(method) + ": its labels stay as given", head)
    lines = [("relabel_precision", "relabel precision (new label = clean)", "#4c78a8", "solid"),
             ("relabel_recall", "recall (noisy samples ever relabelled to clean)", "#72b7b2", "dash"),
             ("noisy_corrected", "noisy samples now correct", GIVEN, "solid"),
             ("clean_corrupted", "clean samples now wrong", NOISY, "solid")]
    return _recovery_figure(df, lines, head)


def _recovery_figure(df: pd.DataFrame, lines: list[tuple[str, str, str, str]], head: str) -> go.Figure:
    """Relabel events per epoch as bars, and ``lines`` (column, name, colour, dash) as
    fractions over them."""
    # the counts' bars on the primary axis (drawn first, at the right), the fractions on the
    # overlaying one (drawn over the bars, at the left): bars over lines would hide them
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_trace(go.Bar(x=df["epoch"], y=df["relabels"], name="relabel events", marker_color="#d9d9d9",
                         hovertemplate="epoch %{x}: %{y} relabels<extra></extra>"), secondary_y=False)
    for col, name, colour, dash in lines:
        fig.add_trace(go.Scatter(x=df["epoch"], y=df[col], name=name, mode="lines+markers",
                                 line=dict(color=colour, dash=dash),
                                 hovertemplate="epoch %{x}: %{y:.1%}<extra>" + name + "</extra>"), secondary_y=True)
    # tickmode auto: an overlaying axis otherwise syncs its ticks to the other axis's grid
    fig.update_yaxes(title_text="fraction", tickformat=".0%", range=[-0.02, 1.02], side="left", tickmode="auto",
                     secondary_y=True)
    none_yet = not len(df) or int(df["relabels"].max()) == 0
    # counts start at 0; with no event yet plotly would centre the axis on 0 (-1 to 1)
    fig.update_yaxes(title_text="relabel events", showgrid=False, rangemode="tozero", side="right",
                     secondary_y=False, **(dict(range=[0, 1], dtick=1) if none_yet else {}))
    fig.update_xaxes(title_text="epoch", dtick=1 if len(df) <= 30 else None)
    fig.update_layout(legend=dict(orientation="h", y=-0.2, x=0))
    return finish(fig, head, height=480)


# ---------------------------------------------------------------- noise detection
def noise_detection(run: Run) -> go.Figure:
    """AUROC of each per-sample score for finding the samples whose given label is wrong.

    Args:
        run: the run.

    Returns:
        The figure (a note without clean labels).
    """
    head = title("Finding noisy labels: AUROC per score", run.name)
    if run.clean_labels is None:
        return note_figure(NO_CLEAN, head)
    return noise_detection_figure(run.noise_detection(), run_name=run.name)


def noise_detection_figure(df: pd.DataFrame, *, run_name: str | None = None) -> go.Figure:
    """Draw :func:`noise_detection` from a table.

    Args:
        df: ``Run.noise_detection()`` (score, auroc, direction).
        run_name: the run's name, for the title.

    Returns:
        The figure.
    """
    head = title("Finding noisy labels: AUROC per score", run_name)
    d = df.sort_values("auroc", ascending=True, na_position="first")
    text = [("n/a" if pd.isna(a) else f"{a:.3f}") for a in d["auroc"]]
    fig = go.Figure(go.Bar(
        y=d["score"], x=d["auroc"].fillna(0.0), orientation="h", marker_color="#4c78a8", text=text,
        textposition="outside", cliponaxis=False, customdata=d["direction"],
        hovertemplate="%{y}: AUROC %{x:.3f}<br>%{customdata} values point to noise<extra></extra>"))
    fig.add_vline(x=0.5, line_dash="dash", line_color="#777", annotation_text="chance", annotation_position="top")
    fig.update_xaxes(title_text="AUROC", range=[0, 1.08])
    return finish(fig, head, height=120 + 38 * len(d))


# ---------------------------------------------------------------- one sample
def probability_trace(run: Run, sample_id: int) -> go.Figure:
    """One sample's softmax probability of every class per epoch; the label in effect of
    each epoch is marked, the given label drawn thick.

    Args:
        run: the run.
        sample_id: the sample.

    Returns:
        The figure.
    """
    sid = int(sample_id)
    clean = run.clean_labels
    return probability_trace_figure(
        run.probabilities(sample_id=sid), run.class_names, given=int(run.given_labels[sid]),
        labels=run.labels()[:, sid], clean=None if clean is None else int(clean[sid]),
        sample_id=sid, run_name=run.name)


def probability_trace_figure(probs: np.ndarray, class_names: Sequence[str], *, given: int,
                             labels: Sequence[int] | np.ndarray | None = None, clean: int | None = None,
                             sample_id: int | None = None, run_name: str | None = None) -> go.Figure:
    """Draw :func:`probability_trace` from one sample's probabilities.

    Args:
        probs: ``(epochs, classes)``.
        class_names: the classes, by class id.
        given: the given label.
        labels: the label in effect per epoch (-1: not seen), marked on its curve.
        clean: the clean label, when known.
        sample_id: the sample, for the title.
        run_name: the run's name, for the title.

    Returns:
        The figure.
    """
    probs = np.asarray(probs, dtype=float)
    class_names = list(class_names)
    colours = class_colors(class_names)
    epochs = np.arange(probs.shape[0])
    fig = go.Figure()
    for name in ordered_names(class_names):
        k = class_names.index(name)
        tags = [" (given)" if k == given else "", " (clean)" if clean is not None and k == clean else ""]
        fig.add_trace(go.Scatter(
            x=epochs, y=probs[:, k], mode="lines", name=name + "".join(tags),
            line=dict(color=colours[name], width=4 if k == given else 1.8,
                      dash="dot" if clean is not None and k == clean and k != given else "solid"),
            hovertemplate="epoch %{x}: p=%{y:.3f}<extra>" + name + "</extra>"))
    if labels is not None:
        effect = np.asarray(labels, dtype=np.int64)
        ok = effect >= 0
        fig.add_trace(go.Scatter(
            x=epochs[ok], y=probs[ok, effect[ok]], mode="markers", name="label in effect",
            marker=dict(symbol="diamond", size=11, color=EFFECT, line=dict(color=CLEAN, width=1)),
            customdata=[class_names[v] for v in effect[ok]],
            hovertemplate="epoch %{x}: trained as %{customdata} (p=%{y:.3f})<extra></extra>"))
    fig.update_xaxes(title_text="epoch", dtick=1 if len(epochs) <= 30 else None)
    fig.update_yaxes(title_text="probability", range=[-0.02, 1.02])
    what = f"Class probabilities of sample {sample_id}" if sample_id is not None else "Class probabilities"
    return finish(fig, title(what, run_name), height=440)
