"""Figures: one function per view, returning a ``plotly.graph_objects.Figure``.

Each view comes twice: ``name(run, ...)`` takes a :class:`relabscope.Run` (or several, for
comparisons), calls its analysis methods and hands the tables to ``name_figure(...)``,
which takes plain DataFrames / arrays and only draws. Nothing here opens a run log or
computes an analysis itself.

One look throughout: the ``relabscope`` plotly template, one colour per class *name*
(the same in every figure and every data set), the paper's role colours in distance bars
(given label green, label in effect amber, others blue, clean label outlined), titles that
name the run, and epochs as the 0-based rows the Run API uses. Views that cannot apply say
why (``note_figure``): a method that never relabels, a data set without clean labels.

This package imports plotly; training code never imports it.
"""

from relabscope.plot._style import (class_colors, class_colours, display_order, figure_note, never_relabels, note_figure,
                                    ordered_names)
from relabscope.plot.class_balance import (class_counts, class_counts_figure, floor_counts, label_flow,
                                           label_flow_figure)
from relabscope.plot.consistency import (consistency_by_lag, consistency_by_lag_figure, consistency_scatter,
                                         consistency_scatter_figure, consistency_summary,
                                         consistency_summary_figure, gap_change_histogram,
                                         gap_change_histogram_figure)
from relabscope.plot.distances import compactness, compactness_figure, distance_bars, distance_bars_figure
from relabscope.plot.dynamics import (canary_recovery, canary_recovery_figure, data_map, data_map_figure,
                                      noise_detection, noise_detection_figure,
                                      noise_recovery, noise_recovery_figure, probability_trace,
                                      probability_trace_figure)
from relabscope.plot.relabelling import (flipflops, flipflops_figure, flipflop_totals, flipflop_totals_figure,
                                       flipflop_totals_table, label_timeline, label_timeline_figure,
                                       oscillation_heatmap, oscillation_heatmap_figure, select_flipflopping)
from relabscope.plot.attention import gradcam, gradcam_figure
from relabscope.plot.embedding_maps import projection_figure, projection
from relabscope.plot.guards import vetoes, vetoes_figure
from relabscope.plot.method_view import method_fields, method_fields_figure
from relabscope.plot.sweep import sweep_accuracy_figure, sweep_relabel_figure
from relabscope.plot.training import (accuracy_curves, accuracy_curves_figure, class_accuracy,
                                      class_accuracy_figure, confusion, confusion_figure, relabels_per_epoch,
                                      relabels_per_epoch_figure)

__all__ = [
    "accuracy_curves", "accuracy_curves_figure", "relabels_per_epoch", "relabels_per_epoch_figure",
    "class_accuracy", "class_accuracy_figure", "confusion", "confusion_figure",
    "flipflops", "flipflops_figure", "select_flipflopping", "label_timeline", "label_timeline_figure",
    "oscillation_heatmap", "oscillation_heatmap_figure", "flipflop_totals", "flipflop_totals_figure",
    "flipflop_totals_table",
    "distance_bars", "distance_bars_figure", "compactness", "compactness_figure",
    "class_counts", "class_counts_figure", "floor_counts", "label_flow", "label_flow_figure",
    "vetoes", "vetoes_figure",
    "consistency_summary", "consistency_summary_figure", "gap_change_histogram", "gap_change_histogram_figure",
    "consistency_scatter", "consistency_scatter_figure", "consistency_by_lag", "consistency_by_lag_figure",
    "projection", "projection_figure",
    "gradcam", "gradcam_figure", "method_fields", "method_fields_figure",
    "sweep_accuracy_figure", "sweep_relabel_figure",
    "data_map", "data_map_figure", "noise_recovery", "noise_recovery_figure", "noise_detection",
    "canary_recovery", "canary_recovery_figure",
    "noise_detection_figure", "probability_trace", "probability_trace_figure",
    "class_colors", "class_colours", "display_order", "ordered_names", "note_figure", "figure_note", "never_relabels",
]
