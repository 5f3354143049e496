"""The method's own view of a sample: the per-sample quantities it logs, over epochs.

Each method has its own notion of an ambiguous sample, worth reading next to its
flip-flops: SCN's importance weight alpha, RUL's uncertainty u (the harder sample of a
pair gets the larger share of the mixed feature), DMUE's weight s and its latent label
distribution (what the auxiliary branches think the sample could be instead).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from relabscope.plot._style import OTHER, class_colors, finish, note_figure, ordered_names, title

if TYPE_CHECKING:
    from relabscope.analysis.run import Run

FIELD_TITLES = {
    "weight": "importance weight (low: suppressed as uncertain)",
    "uncertainty": "uncertainty u (high: the harder sample of a pair)",
    "latent": "latent label distribution (0 at the given label)",
}


def method_fields(run: Run, sample_id: int) -> go.Figure:
    """One sample's logged method quantities over epochs (reads only that sample).

    Args:
        run: the run.
        sample_id: the sample.

    Returns:
        The figure, a panel per quantity (a note when the method logs none).

    Example:
        >>> import tempfile, relabscope as rs
        >>> run = rs.open_run(rs.example_run(tempfile.mkdtemp() + "/example"))
        >>> fig = rs.plot.method_fields(run, 0)
        >>> fig.layout.title.text, [a.text for a in fig.layout.annotations]
        ("scn-c's view of sample 0 — example", ['importance weight (low: suppressed as uncertain)'])
    """
    sid = int(sample_id)
    values = {name: run.field(name, sample_id=sid) for name in run.fields}
    return method_fields_figure(values, run.class_names, sample_id=sid, method=run.method, run_name=run.name)


def method_fields_figure(fields: Mapping[str, np.ndarray], class_names: Sequence[str], *,
                         sample_id: int | None = None, method: str | None = None,
                         run_name: str | None = None) -> go.Figure:
    """Draw :func:`method_fields` from one sample's values.

    Args:
        fields: name -> ``(epochs,)`` for a scalar quantity or ``(epochs, classes)`` for a
            distribution over classes (drawn as stacked areas).
        class_names: the classes, by class id.
        sample_id: the sample, for the title.
        method: the method's name, for the title.
        run_name: the run's name, for the title.

    Returns:
        The figure (a note without fields).
    """
    what = f"{method or 'The method'}'s view of sample {sample_id}" if sample_id is not None else "Method quantities"
    if not fields:
        return note_figure(f"{method or 'this method'} logs no per-sample quantity of its own "
                           "(SCN, RUL and DMUE do)", title(what, run_name))
    names = list(fields)
    fig = make_subplots(rows=len(names), cols=1, shared_xaxes=True, vertical_spacing=0.12,
                        subplot_titles=[FIELD_TITLES.get(n, n) for n in names])
    colours = class_colors(class_names)
    for row, name in enumerate(names, 1):
        values = np.asarray(fields[name], dtype=float)
        epochs = np.arange(values.shape[0])
        if values.ndim == 1:
            fig.add_trace(go.Scatter(x=epochs, y=values, mode="lines+markers", name=name, showlegend=False,
                                     line=dict(color=OTHER, width=2),
                                     hovertemplate="epoch %{x}: %{y:.3f}<extra>" + name + "</extra>"),
                          row=row, col=1)
            continue
        for cname in ordered_names(class_names):
            k = list(class_names).index(cname)
            fig.add_trace(go.Scatter(x=epochs, y=values[:, k], mode="lines", stackgroup=name, name=cname,
                                     line=dict(color=colours[cname], width=0.5), legendgroup=cname,
                                     hovertemplate="epoch %{x}: %{y:.3f}<extra>" + cname + "</extra>"),
                          row=row, col=1)
        fig.update_yaxes(range=[0, 1.02], row=row, col=1)
    fig.update_xaxes(title_text="epoch", row=len(names), col=1)
    return finish(fig, title(what, run_name), height=220 + 200 * len(names))
