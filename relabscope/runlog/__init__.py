"""The run log: one HDF5 file per run, its writer, its reader and its layout.

The writer (which needs torch) loads on first use, so reading a log, e.g. ``open_run`` in
a notebook or the dashboard, does not pay torch's import time.
"""

from __future__ import annotations

from typing import Any

from relabscope.runlog.reader import RunLogReader, find_log
from relabscope.runlog.schema import SCHEMA_VERSION, SampleTable

__all__ = ["SCHEMA_VERSION", "RunLogReader", "RunLogWriter", "SampleTable", "find_log"]


def __getattr__(name: str) -> Any:
    if name == "RunLogWriter":
        from relabscope.runlog.writer import RunLogWriter

        return RunLogWriter
    raise AttributeError(f"module 'relabscope.runlog' has no attribute {name!r}")
