"""Disk space: claimed before a write, so a full disk is one line and never a half write.

A run log must not meet a full disk in the middle of an HDF5 write: HDF5 then keeps dirty
metadata it cannot flush, and closing the file crashed the process (a segfault, rc 139,
with a dozen tracebacks from h5py's destructors). So the log writer claims the bytes a
commit will append (:func:`reserve`: ``posix_fallocate`` past the end of the file) before
it writes any: the kernel either allocates them, after which no write of the commit can
fail for space whoever else fills the disk, or refuses at once and nothing was written.
Checkpoints, reports and corrections files claim their size the same way.

A claim protects the writes that follow as far as the file system honours it: one that
grants it and still fails a later write for space (a thin-provisioned volume, a file
system that compresses the zeros of a claim away) can still crash HDF5 at close; the log
then stays readable and resumable, as after ``kill -9``.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

from relabscope.errors import WriteError

#: bytes of HDF5 metadata a commit may add beyond its data (chunk index, object headers)
METADATA_SLACK = 1 << 20


def free_bytes(path: str | Path) -> int:
    """Bytes free to this user on the file system holding ``path`` (or its nearest
    existing parent)."""
    path = Path(path)
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def human(nbytes: float) -> str:
    """``1.5 MB``, ``820 kB``: decimal units, as ``df -H`` and file managers show them."""
    for unit in ("bytes", "kB", "MB", "GB", "TB"):
        if abs(nbytes) < 1000 or unit == "TB":
            return f"{nbytes:,.0f} {unit}" if unit == "bytes" else f"{nbytes:.1f} {unit}"
        nbytes /= 1000
    raise AssertionError("unreachable")


def disk_full(path: str | Path, needed: int | None = None, what: str = "writing it") -> WriteError:
    """The one-line error for a write that did not fit: the path, what needed how much, and
    the space free now."""
    need = f" needs {human(needed)}," if needed else " needs more space,"
    return WriteError(f"{path}: disk full: {what}{need} {human(free_bytes(path))} free: free some space "
                      "(nothing already written was lost)")


def is_disk_full(exc: BaseException) -> bool:
    """Whether an error is a full disk (or quota): an OSError, or an error whose text quotes
    one (HDF5's through h5py, torch's zip writer)."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(exc)
    return "No space left on device" in text or "errno = 28" in text or "Disk quota exceeded" in text


def reserve(fd: int | None, offset: int, nbytes: int, path: str | Path, what: str) -> None:
    """Allocate ``nbytes`` of the open file ``fd`` from ``offset`` (a file that grows into
    them later cannot fail for space), or raise :func:`disk_full`'s error. Where the system
    has no ``posix_fallocate`` (macOS) or the file system refuses it, zeros are written past
    the file's end instead, which allocates the same blocks; without a file descriptor
    (None) the free space can only be compared.

    Raises:
        WriteError: the file system has not that much space.
    """
    if nbytes <= 0:
        return
    if fd is None:
        if free_bytes(path) < nbytes:
            raise disk_full(path, nbytes, what)
        return
    allocate = getattr(os, "posix_fallocate", None)
    try:
        if allocate is None:
            raise OSError(errno.ENOSYS, "posix_fallocate is not available")
        allocate(fd, offset, nbytes)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise disk_full(path, nbytes, what) from None
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            raise
        _write_zeros(fd, offset, nbytes, path, what)


def _write_zeros(fd: int, offset: int, nbytes: int, path: str | Path, what: str) -> None:
    """Allocate by writing zeros where the file does not reach yet (what glibc does for a
    file system without ``fallocate``); on a full disk the file is cut back as it was."""
    size = os.fstat(fd).st_size
    at, end = max(offset, size), offset + nbytes
    block = bytes(1 << 20)
    try:
        while at < end:  # a write may take fewer bytes than asked (the last ones that fit)
            at += os.pwrite(fd, block[:min(len(block), end - at)], at)
    except OSError as exc:
        os.ftruncate(fd, size)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise disk_full(path, nbytes, what) from None
        raise
