"""The paper's Fig. 6: per sample, the image and its Grad-CAM for the given label and for
the label in effect, side by side."""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from relabscope.plot._style import finish, note_figure, title


def gradcam(run, sample_ids: Iterable[int] | None = None, *, top: int = 4, **options) -> go.Figure:
    """Grad-CAM of the run's final model for ``sample_ids`` (default: the ``top`` most
    flip-flopping training samples), for their given label and their label in effect.
    ``options`` go to ``Run.gradcam`` (e.g. image_size, device)."""
    head = title("Grad-CAM: given label vs label in effect", run.name)
    if sample_ids is None:
        from relabscope.plot.relabelling import select_flipflopping

        sample_ids = select_flipflopping(run.flipflops(), top)["sample_id"].tolist()
        if not sample_ids:
            return note_figure("no sample was relabelled" if run.relabels_at_all else
                               f"{run.method} never relabels", head)
    ids = [int(i) for i in sample_ids]
    given = run.gradcam(ids, label="given", **options)
    effect = run.gradcam(ids, label="effect", **options)
    return gradcam_figure(
        given.images, given.overlays, effect.overlays, sample_ids=ids, given_labels=given.labels,
        effect_labels=effect.labels, class_names=run.class_names, probabilities=given.probabilities,
        title_text=head)


def gradcam_figure(images: np.ndarray, given_overlays: np.ndarray, effect_overlays: np.ndarray, *,
                   sample_ids: Sequence[int], given_labels: Sequence[int], effect_labels: Sequence[int],
                   class_names: Sequence[str], probabilities: np.ndarray | None = None,
                   title_text: str | None = None, run_name: str | None = None) -> go.Figure:
    """Rows: samples. Columns: the image, the CAM overlay for the given label, the CAM
    overlay for the label in effect. Images ``(n, H, W, 3)`` uint8."""
    head = title_text or title("Grad-CAM: given label vs label in effect", run_name)
    n = len(sample_ids)
    if n == 0:
        return note_figure("no samples to show", head)

    def p(i, label):
        return "" if probabilities is None else f" (p={float(probabilities[i][int(label)]):.2f})"

    titles = []
    for i, sid in enumerate(sample_ids):
        g, e = int(given_labels[i]), int(effect_labels[i])
        same = " = given" if g == e else ""
        titles += [f"sample {int(sid)}", f"given: {class_names[g]}{p(i, g)}",
                   f"in effect: {class_names[e]}{p(i, e)}{same}"]
    fig = make_subplots(rows=n, cols=3, subplot_titles=titles, horizontal_spacing=0.02,
                        vertical_spacing=min(0.08, 0.3 / n))
    for i in range(n):
        for col, img in enumerate((images[i], given_overlays[i], effect_overlays[i]), start=1):
            fig.add_trace(go.Image(z=np.asarray(img, dtype=np.uint8), hoverinfo="skip"), row=i + 1, col=col)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    for a in fig.layout.annotations:
        a.font = dict(size=12)
    return finish(fig, head, height=140 + 230 * n, width=720)
