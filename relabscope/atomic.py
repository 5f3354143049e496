"""Whole-file replacement: readers, and a crash, see the old file or the new, never half.

The temporary file gets a unique name in the target's folder (same file system, so the
final rename is atomic), so several processes may write the same file at once, as two
sweep processes sharing one grid do with ``sweep.toml``: the last rename wins and no
writer trips over another's temporary file. (Checkpoints keep one fixed temporary name:
their run directory has one writer, and a killed writer's leftover is overwritten next
time instead of piling up.)

``mkstemp`` creates its file readable by the owner only (mode 0600); the new file gets the
mode an ``open()`` would have given it (0666 less the umask), so a report, a table or
``corrections.csv`` can be read by the group that shares the run directory.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Iterator


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """A binary file object whose contents replace ``path`` when the block ends without an
    error; on an error the temporary file is removed and ``path`` is left as it was."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            yield fh
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    """The process's umask. Linux reports it in /proc; elsewhere reading it means setting it
    and setting it straight back (a moment in which another thread's new file would get
    0022)."""
    with contextlib.suppress(OSError, ValueError, StopIteration):
        with open("/proc/self/status") as fh:
            return int(next(line for line in fh if line.startswith("Umask:")).split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
