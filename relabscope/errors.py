"""User-facing errors.

Anything a user can cause (a wrong path, a malformed label file, an out directory that
already holds a run, a diverging loss) raises :class:`RelabscopeError` with a message of
one line that names the file and the problem. The CLI prints that line and exits non-zero;
library callers can catch the class. Programming errors stay ordinary exceptions so their
tracebacks remain useful.
"""

from __future__ import annotations

from pathlib import Path


class RelabscopeError(Exception):
    """An error caused by input or state the user controls; its message is one line."""

    exit_code = 1


class DataError(RelabscopeError):
    """A data set, label file or noise file that is missing or malformed."""


class RunDirError(RelabscopeError):
    """A run directory that cannot be created, resumed or read."""


class LogDamagedError(RunDirError):
    """A run log that cannot be read through: a checksum does not match, or HDF5's
    structure is broken. Its message names the dataset (and the epoch, for per-epoch data);
    ``relabscope check RUN`` lists every damaged place and the intact epochs."""


class RunLockedError(RunDirError):
    """Another process is training into the run directory."""


class WriteError(RunDirError):
    """A run file could not be written (a full disk, a lost mount); the files as they were
    before the failed write are kept."""


class NotApplicable(RelabscopeError):
    """A view that cannot apply to this run, and what would make it apply (Grad-CAM of a
    model relabscope did not build, without the model): the report lists it as not
    applicable and the dashboard's card says why, never as a failure."""


class DivergedError(RelabscopeError):
    """Training produced a non-finite loss; the last good checkpoint and log are kept."""


class StoppedError(RelabscopeError):
    """SIGTERM or Ctrl-C stopped training at a safe point; the log and checkpoint keep the
    complete epochs and ``--resume`` continues. Its exit code is 128 + the signal."""

    exit_code = 143


def missing(path: Path | str, what: str = "file") -> DataError:
    """The standard error for a required file or folder that is not there."""
    return DataError(f"{path}: {what} not found")


def bad_line(path: Path | str, line_no: int, problem: str) -> DataError:
    """The standard error for one malformed line of a text or CSV file (1-based line)."""
    return DataError(f"{path}:{line_no}: {problem}")
