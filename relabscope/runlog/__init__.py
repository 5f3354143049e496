"""The run log: one HDF5 file per run, its writer, its reader and its layout.

The writer (which needs torch) loads on first use, so reading a log, e.g. ``open_run`` in
a notebook or the dashboard, does not pay torch's import time.
"""

from __future__ import annotations

from relabscope.lazy import lazy_exports
from relabscope.runlog.reader import RunLogReader, find_log
from relabscope.runlog.schema import SCHEMA_VERSION, SampleTable

__all__ = ["SCHEMA_VERSION", "RunLogReader", "RunLogWriter", "SampleTable", "find_log"]
__getattr__, __dir__ = lazy_exports(__name__, {"RunLogWriter": "relabscope.runlog.writer"})
