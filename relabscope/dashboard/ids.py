"""Every component id the dashboard's shell and pages use, one constant each, grouped per page.

Dash wires callbacks to components by id strings, and the pages, the tests
(``tests/dashboard``, ``tests/browser``) and ``benchmarks/dashboard_load.py`` all name the
same components. Each of them imports the ids from here: a renamed id changes in one place,
and a stale name fails at import (AttributeError) instead of silently matching nothing (a
callback that never fires, a selector that finds nothing, a benchmark row that vanishes).

Ids built in a loop (one figure cell per entry of a page's ``FIGURES``) come from a
function, so the pattern also lives here only.
"""

from __future__ import annotations

# ---------------------------------------------------------------------- shell (app.py)
URL = "url"
PAGE = "page"
TOPNAV = "topnav"
RUNS_NAV = "runs-nav"
LIVE_VERSION = "live-version"
TICK = "tick"
#: the shell's components a page's callbacks may read besides the page's own
SHELL_INPUTS = frozenset({URL, LIVE_VERSION, TICK})

# ---------------------------------------------------------------------- overview (overview.py)
OV_ARGS = "ov-args"
OV_HEAD = "ov-head"
OV_NUMBERS = "ov-numbers"
OV_CONFIG = "ov-config"


def ov_figure(which: str) -> str:
    """The cell of overview figure ``which`` (an entry of ``overview.FIGURES``)."""
    return f"ov-{which}"


# ---------------------------------------------------------------------- flip-flops (flipflops.py)
FF_ARGS = "ff-args"
FF_CELL = "ff-cell"
FF_SELECTED = "ff-selected"
FF_MODE = "ff-mode"
FF_GIVEN = "ff-given"
FF_FINAL = "ff-final"
FF_CELL_CHIP = "ff-cell-chip"
FF_CLEAR = "ff-clear"
FF_COUNT = "ff-count"
FF_TABLE = "ff-table"
FF_DETAIL = "ff-detail"
FF_HEATMAP = "ff-heatmap"
FF_BARS = "ff-bars"
FF_LAG = "ff-lag"
FF_CONSISTENCY = "ff-consistency"
FF_CANARIES = "ff-canaries"

# ---------------------------------------------------------------------- sample inspector (sample.py)
SM_ARGS = "sm-args"
SM_INPUT = "sm-input"
SM_OPEN = "sm-open"
SM_FACTS = "sm-facts"
SM_TIMELINE = "sm-timeline"
SM_EPOCHS = "sm-epochs"
SM_SCALE = "sm-scale"
SM_DISTANCES = "sm-distances"
SM_PROBS = "sm-probs"
SM_METHOD = "sm-method"
SM_GRADCAM_GO = "sm-gradcam-go"
SM_GRADCAM = "sm-gradcam"

# ---------------------------------------------------------------------- embedding map (embedding_map.py)
MP_ARGS = "mp-args"
MP_METHOD = "mp-method"
MP_EPOCH = "mp-epoch"
MP_CLASSES = "mp-classes"
MP_COLOUR = "mp-colour"
MP_STATUS = "mp-status"
MP_POLL = "mp-poll"
MP_GRAPH = "mp-graph"
MP_TOOLTIP = "mp-tooltip"
MP_GRID = "mp-grid"
MP_COUNT = "mp-count"
MP_TABLE = "mp-table"
MP_CANARIES = "mp-canaries"

# ---------------------------------------------------------------------- compactness (compactness.py)
CM_ARGS = "cm-args"
CM_LABELS = "cm-labels"
CM_EPOCH = "cm-epoch"
CM_AGAINST = "cm-against"
CM_TABLE = "cm-table"
CM_TABLE_DATA = "cm-table-data"
CM_FIGURE = "cm-figure"

# ---------------------------------------------------------------------- compare (compare.py)
CP_ARGS = "cp-args"
CP_AGAINST = "cp-against"
CP_SUMMARY = "cp-summary"
CP_CORRECTIONS = "cp-corrections"
CP_SUMMARY_TABLE = "cp-summary-table"
CP_SAMPLE = "cp-sample"
CP_SAMPLE_VIEW = "cp-sample-view"


def cp_figure(which: str) -> str:
    """The cell of comparison figure ``which`` (an entry of ``compare.FIGURES``)."""
    return f"cp-{which}"


# ---------------------------------------------------------------------- review (review.py)
RV_ARGS = "rv-args"
RV_GIVEN = "rv-given"
RV_SUGGESTED = "rv-suggested"
RV_SIGNAL = "rv-signal"
RV_STATE = "rv-state"
RV_PREV = "rv-prev"
RV_NEXT = "rv-next"
RV_PAGE = "rv-page"
RV_COUNT = "rv-count"
RV_CANARIES = "rv-canaries"
RV_GRID = "rv-grid"
RV_NAME = "rv-name"
RV_REVIEWER = "rv-reviewer"
RV_KEYS = "rv-keys"
#: the ``type`` of the per-tile components (pattern-matching ids: one per sample shown)
RV_REQUEST = "rv-request"
RV_SHOWN = "rv-shown"
RV_BODY = "rv-body"


def rv_tile(kind: str, sample: object) -> dict:
    """The id of tile component ``kind`` (``RV_REQUEST``: the decision a key asks for,
    ``RV_SHOWN``: the seq of the decision the tile shows, ``RV_BODY``: its text) of sample
    ``sample`` (an int, or ``dash.MATCH`` in a callback)."""
    return {"type": kind, "sample": sample}
