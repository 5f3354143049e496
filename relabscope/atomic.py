"""Whole-file replacement: readers, and a crash, see the old file or the new, never half.

The temporary file gets a unique name in the target's folder (same file system, so the
final rename is atomic), so several processes may write the same file at once, as two
sweep processes sharing one grid do with ``sweep.toml``: the last rename wins and no
writer trips over another's temporary file. (Checkpoints keep one fixed temporary name:
their run directory has one writer, and a killed writer's leftover is overwritten next
time instead of piling up.)

The new file is fsynced before the rename and its folder after it, so once the call
returns the new contents survive a power cut, not only a killed process. A full disk is
one line naming the file and the space it needs (``relabscope.diskspace``),
the old file left as it was: the bytes of a write whose size is known are claimed before
any is written, and one that runs out of space midway is thrown away.

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

from relabscope.diskspace import disk_full, is_disk_full, reserve


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, size: int | None = None) -> Iterator[BinaryIO]:
    """A binary file object whose contents replace ``path`` when the block ends without an
    error; on an error the temporary file is removed and ``path`` is left as it was.

    Args:
        path: the file to replace.
        size: the bytes the block will write, when known: claimed first, so a disk without
            room fails before anything is written, saying how much is needed.

    Raises:
        WriteError: the disk is full (the file's old contents are kept).
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fd, 0o666 & ~_umask())
            if size:
                reserve(fd, 0, size, path, f"writing {path.name}")
            yield fh
            fh.truncate()  # a claim larger than what was written leaves no zeros behind
            fh.flush()
            os.fsync(fh.fileno())  # the contents are on disk before the name points at them
        os.replace(tmp, path)
        fsync_folder(path.parent)  # and the rename itself
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and is_disk_full(exc):
            raise disk_full(path, size, f"writing {path.name}") from None
        raise


def fsync_folder(folder: str | os.PathLike) -> None:
    """Make a folder's entries (a new or renamed file) durable: fsync the folder itself.
    Where a folder cannot be opened for that (Windows), nothing is done."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_atomic(path: str | os.PathLike, data: bytes | str) -> None:
    """Replace ``path`` with ``data`` (text is written as UTF-8), its size claimed first:
    :func:`atomic_write` for a whole file at once."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    with atomic_write(path, len(raw)) as fh:
        fh.write(raw)


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
