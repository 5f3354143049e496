"""The run log: one HDF5 file per run, its writer, its reader and its layout."""

from relabscope.runlog.reader import RunLogReader, find_log
from relabscope.runlog.schema import SCHEMA_VERSION, SampleTable
from relabscope.runlog.writer import RunLogWriter

__all__ = ["SCHEMA_VERSION", "RunLogReader", "RunLogWriter", "SampleTable", "find_log"]
