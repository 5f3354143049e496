"""What a page is given, turned into checked values, and values turned into table cells.

A page's inputs come from a URL (``?run=...&sample=...``), a control (a number box, a
dropdown, a radio item) or a graph event (a click, a lasso), so every value is untrusted
and loosely typed: a string from a URL, a number or a list from a control, None when
cleared. The parsers here are the one place that says what each may hold; a bad value
raises ValueError with a one-line message that the page shows in an error card as it is
(tests assert these messages). Parsers of things a run decides (its epochs, classes,
samples) take the run's numbers; the vocabularies a page offers (projection methods,
label kinds) stay on the page and are passed in.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Collection, Sequence
from urllib.parse import parse_qs

import pandas as pd

if TYPE_CHECKING:
    from relabscope.analysis.run import Run

#: the epoch row that means "the last committed epoch"
LAST_EPOCH = -1


# ---------------------------------------------------------------------- URL
def parse_search(search: str | None) -> dict[str, str]:
    """``?a=1&b=2`` -> {"a": "1", "b": "2"} (first value of each key)."""
    if not search:
        return {}
    return {k: v[0] for k, v in parse_qs(search.lstrip("?"), keep_blank_values=False).items() if v}


# ---------------------------------------------------------------------- one value
def parse_sample(value: Any, num_samples: int) -> int:
    """A sample id from a URL or an input box; ValueError with a one-line message."""
    if isinstance(value, bool):
        raise ValueError("sample id must be an integer")
    if isinstance(value, (int, float)) and float(value).is_integer():
        sid = int(value)
    elif isinstance(value, str) and value.strip().isdigit():
        sid = int(value.strip())
    else:
        raise ValueError(f"sample id must be a non-negative integer, not {str(value)[:40]!r}")
    if not 0 <= sid < num_samples:
        raise ValueError(f"sample id {sid} out of range: the run has {num_samples} samples (0..{num_samples - 1})")
    return sid


def parse_choice(value: Any, choices: Collection[str], what: str) -> str:
    """``value`` when it is one of ``choices`` (``what`` names it in the error)."""
    if value not in choices:
        raise ValueError(f"{what} must be one of {', '.join(choices)}, not {str(value)[:40]!r}")
    return str(value)


def parse_method(value: Any, methods: Collection[str]) -> str:
    """A projection method of the embedding map (one of ``methods``)."""
    return parse_choice(value, methods, "projection method")


def parse_labels(value: Any, choices: Collection[str], run: Run) -> str:
    """Which labels give a sample its class (one of ``choices``); "clean" only for a run
    whose data set knows its clean labels."""
    labels = parse_choice(value, choices, "labels")
    if labels == "clean" and run.clean_labels is None:
        raise ValueError("clean labels are unknown for this run's data set")
    return labels


def _epoch_number(value: Any) -> int:
    """An int from a number or a numeric string (a bool is no epoch)."""
    if not isinstance(value, bool):
        try:
            return int(str(value).strip())
        except ValueError:
            pass
    raise ValueError(f"epoch must be an integer, not {str(value)[:40]!r}")


def parse_epoch(value: Any, num_epochs: int) -> int:
    """An epoch row (``LAST_EPOCH``: the last committed one); ValueError (one line) out of range."""
    if num_epochs == 0:
        raise ValueError("the run has no committed epoch yet")
    if value is None or value == "":
        return LAST_EPOCH
    e = _epoch_number(value)
    if not -num_epochs <= e < num_epochs:
        raise ValueError(f"epoch {e} out of range: the run has {num_epochs} committed epochs")
    return e


def parse_embedding_epoch(run: Run, value: Any) -> int:
    """The absolute epoch ``value`` names among the epochs that kept embeddings (None: the
    latest); ValueError (one line) otherwise."""
    kept = run.embedding_epochs()
    if not kept:
        raise ValueError("the run kept no embeddings yet (no committed epoch stored them)")
    if value is None or value == "":
        return kept[-1]
    e = _epoch_number(value)
    try:
        return run.embedding_epoch(e)
    except ValueError:
        raise ValueError(f"no embeddings kept for epoch {e}; epochs with embeddings: "
                         f"{', '.join(str(k) for k in kept)}") from None


# ---------------------------------------------------------------------- lists
def _listed(value: Any) -> list:
    """The items of ``0,2`` (a URL) or of a list (a multi-select control)."""
    return value.split(",") if isinstance(value, str) else list(value)


def _listed_int(item: Any, must: str) -> int:
    """One item of a list as an int; ``must`` says what it should have been."""
    try:
        return int(str(item).strip())
    except ValueError:
        raise ValueError(f"{must}, not {str(item)[:20]!r}") from None


def parse_epochs(value: Any, num_epochs: int) -> list[int] | None:
    """Epochs from ``3,5,-1`` or a list; None for "the default ones". Out-of-range epochs
    raise ValueError."""
    if value in (None, "", []):
        return None
    out = []
    for item in _listed(value):
        e = _listed_int(item, "epoch must be an integer")
        r = e + num_epochs if e < 0 else e
        if not 0 <= r < num_epochs:
            raise ValueError(f"epoch {e} out of range: the run has {num_epochs} committed epochs")
        if r not in out:
            out.append(r)
    return sorted(out)


def parse_classes(value: Any, class_names: Sequence[str]) -> list[int] | None:
    """Class ids from ``0,2`` or a list (None or empty: every class)."""
    if value in (None, "", []):
        return None
    out = []
    for item in _listed(value):
        c = _listed_int(item, "class must be a class id")
        if not 0 <= c < len(class_names):
            raise ValueError(f"class {c} out of range: the run has {len(class_names)} classes")
        if c not in out:
            out.append(c)
    return sorted(out)


# ---------------------------------------------------------------------- graph events
def cycle_from_click(click: Any, class_names: Sequence[str]) -> tuple[int, int] | None:
    """The (a, b) class ids of a clicked oscillation-matrix cell (y is A, x is B)."""
    try:
        point = click["points"][0]
        return class_names.index(point["y"]), class_names.index(point["x"])
    except (KeyError, IndexError, TypeError, ValueError):
        return None


def sample_from_bar_click(click: Any) -> int | None:
    """The sample id of a clicked Fig. 3 bar (its label reads ``#<id> A→B``)."""
    try:
        label = str(click["points"][0]["y"])
        return int(label.split()[0].lstrip("#"))
    except (KeyError, IndexError, TypeError, ValueError):
        return None


def selected_ids(selected: Any) -> list[int]:
    """Sample ids of the points a lasso / box selection of the embedding map holds
    (``customdata[0]`` of each point), sorted, without repeats.

    A figure whose ids are a number array is sent to the browser as a typed array, and a
    point's row of it comes back from plotly's events as ``{"0": id}`` (JSON of a typed
    array), not ``[id]``: both are read."""
    ids = set()
    for point in (selected or {}).get("points", []) if isinstance(selected, dict) else []:
        try:
            row = point["customdata"]
            ids.add(int(float(row["0"] if isinstance(row, dict) else row[0])))
        except (KeyError, IndexError, TypeError, ValueError):
            continue  # the legend's marker-only trace has no customdata
    return sorted(ids)


def sample_from_click(click: Any) -> int | None:
    """The sample id of a clicked point of the embedding map (``customdata[0]``), or None."""
    ids = selected_ids(click if isinstance(click, dict) else None)
    return ids[0] if ids else None


# ---------------------------------------------------------------------- table cells
def table_number(value: Any) -> float | None:
    """A float for a table cell (None for NaN, which JSON cannot carry)."""
    value = float(value)
    return None if math.isnan(value) else value


def mean_pm_std(mean: Any, std: Any) -> str:
    """``mean ± std`` to 4 significant digits; n/a without a mean."""
    return "n/a" if pd.isna(mean) else f"{float(mean):.4g} ± {float(std):.4g}"


def class_name(class_names: Sequence[str], label: Any) -> str:
    """The name of class id ``label``; "unknown" for an id outside the run's classes (-1:
    no clean label)."""
    i = int(label)
    return class_names[i] if 0 <= i < len(class_names) else "unknown"
