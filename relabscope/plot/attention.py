"""The paper's Fig. 6: per sample, the image and its Grad-CAM for the given label and for
the label in effect, side by side."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from relabscope.errors import NotApplicable
from relabscope.plot._style import finish, note_figure, title
from relabscope.plot.relabelling import select_flipflopping

if TYPE_CHECKING:
    from relabscope.analysis.run import Run


def gradcam(run: Run, sample_ids: Iterable[int] | None = None, *, top: int = 4, **options: Any) -> go.Figure:
    """Paper Fig. 6: Grad-CAM of the run's final model for its given label and for its
    label in effect, per sample: does the model look at the face where the relabel points?
    Needs the run's checkpoint and images (torch and captum).

    Args:
        run: the run.
        sample_ids: the samples; default: the ``top`` most flip-flopping training samples.
        top: how many samples by default.
        **options: passed to ``Run.gradcam`` (e.g. image_size, device, and for a model
            of your own ``model``: a module, a factory or a ``ModelSpec``).

    Returns:
        The figure (a note when no sample was relabelled, or when the run is of a model
        of your own and none was named or recorded).
    """
    head = title("Grad-CAM: given label vs label in effect", run.name)
    if sample_ids is None:
        sample_ids = select_flipflopping(run.flipflops(), top)["sample_id"].tolist()
        if not sample_ids:
            return note_figure("no sample was relabelled" if run.relabels_at_all else
                               f"{run.method} never relabels", head)
    ids = [int(i) for i in sample_ids]
    try:
        given = run.gradcam(ids, label="given", **options)
    except NotApplicable as exc:
        return note_figure(str(exc), head)
    effect = run.gradcam(ids, label="effect", **options)
    return gradcam_figure(
        given.images, given.overlays, effect.overlays, sample_ids=ids, given_labels=given.labels,
        effect_labels=effect.labels, class_names=run.class_names, probabilities=given.probabilities,
        title_text=head)


def gradcam_figure(images: np.ndarray, given_overlays: np.ndarray, effect_overlays: np.ndarray, *,
                   sample_ids: Sequence[int], given_labels: Sequence[int] | np.ndarray,
                   effect_labels: Sequence[int] | np.ndarray,
                   class_names: Sequence[str], probabilities: np.ndarray | None = None,
                   title_text: str | None = None, run_name: str | None = None) -> go.Figure:
    """Draw :func:`gradcam` from images: a row per sample; columns the image, the CAM
    overlay for the given label and the CAM overlay for the label in effect.

    Args:
        images: ``(n, H, W, 3)`` uint8.
        given_overlays: ``(n, H, W, 3)`` uint8, the CAM for the given label over the image.
        effect_overlays: the same for the label in effect.
        sample_ids: the samples, for the panel titles.
        given_labels: the given label per sample.
        effect_labels: the label in effect per sample.
        class_names: the classes, by class id.
        probabilities: ``(n, classes)``, shown next to each label.
        title_text: the title; default "Grad-CAM: given label vs label in effect" and the
            run's name.
        run_name: the run's name, for the default title.

    Returns:
        The figure (a note without samples).

    Example:
        >>> import numpy as np, relabscope as rs
        >>> images = np.zeros((2, 8, 8, 3), np.uint8)
        >>> fig = rs.plot.gradcam_figure(images, images, images, sample_ids=[3, 7], given_labels=[0, 1],
        ...                              effect_labels=[0, 0], class_names=["neutral", "happiness"])
        >>> len(fig.data)  # 2 samples x (image, CAM for the given label, CAM for the label in effect)
        6
        >>> [a.text for a in fig.layout.annotations][3:]
        ['sample 7', 'given: happiness', 'in effect: neutral']
    """
    head = title_text or title("Grad-CAM: given label vs label in effect", run_name)
    n = len(sample_ids)
    if n == 0:
        return note_figure("no samples to show", head)

    def p(i: int, label: int) -> str:
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
