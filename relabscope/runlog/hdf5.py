"""Opening a run log's HDF5 file so that damage fails at once instead of hanging, and
turning HDF5's errors into one line.

Why this module exists:

- **Bounded metadata retries.** In SWMR mode HDF5 retries a metadata read whose checksum
  fails (a reader may race the writer's flush): by default 100 times, sleeping 1 ns, 2 ns,
  4 ns ... between tries, with the GIL held (h5py serialises every call behind one lock).
  One flipped byte in a superblock or a chunk index made a reader sleep for hours and froze
  every other thread of the process, the dashboard's included. :data:`READ_ATTEMPTS` keeps
  the doubling sleeps under a third of a second in all (measured: 28 attempts fail in
  0.27 s). h5py has no binding for ``H5Pset_metadata_read_attempts``, so it is called
  through ctypes on the very libhdf5 that h5py loaded (another copy of the library would not
  know h5py's property-list id); where that library cannot be found the limit is not set
  and :func:`bounded` says so.
- **HDF5's own file locks stay on** (as plain h5py opens files, so a notebook may mix the
  two in one process: HDF5 refuses a second open with other locking flags). They used to
  make a reader (a dashboard, a notebook) block a resume (``unable to lock file, errno =
  11``), because the resume opened the log itself for writing; it now writes a new file and
  swaps it in (``RunLogWriter.resume``), which no reader's lock touches.
"""

from __future__ import annotations

import ctypes
import os
import re
import sys
from functools import lru_cache
from pathlib import Path
from typing import Literal

import h5py
from h5py import h5f, h5p

from relabscope.diskspace import is_disk_full
from relabscope.errors import LogDamagedError, RunDirError
from relabscope.runlog import schema

#: metadata read attempts: HDF5 sleeps 2**k ns after failed attempt k, so 28 attempts end
#: within about 0.27 s (the default, 100, slept for hours on a damaged file)
READ_ATTEMPTS = 28
#: what a failed h5py call raises: OSError from most calls, RuntimeError from some
#: superblock and flush failures, ValueError and KeyError from some damaged headers
HDF5_ERRORS = (OSError, RuntimeError, ValueError, KeyError)
#: what h5py raises when HDF5 fails to read existing data (a checksum, a damaged index)
READ_ERRORS = (OSError, RuntimeError)


@lru_cache(maxsize=1)
def _libhdf5() -> ctypes.CDLL | None:
    """The libhdf5 this process's h5py uses, or None when it cannot be found."""
    for path in _candidates():
        try:
            lib = ctypes.CDLL(str(path))
            setter = lib.H5Pset_metadata_read_attempts
        except (OSError, AttributeError):
            continue
        setter.argtypes = [ctypes.c_int64, ctypes.c_uint]
        setter.restype = ctypes.c_int
        return lib
    return None


def _candidates() -> list[Path]:
    """Where h5py's libhdf5 may be: mapped into this process (Linux, any build of h5py),
    then the folders h5py's wheels bundle it in (Linux, macOS, Windows)."""
    found: list[Path] = []
    maps = Path("/proc/self/maps")
    if maps.exists():
        for line in maps.read_text().splitlines():
            path = line.split()[-1] if line.split() else ""
            if re.search(r"/libhdf5[-.]", path) and "_hl" not in path and Path(path) not in found:
                found.append(Path(path))
    here = Path(h5py.__file__).parent
    for folder in (here.parent / "h5py.libs", here / ".dylibs", here):
        for pattern in ("libhdf5-*.so*", "libhdf5.*.dylib", "hdf5.dll"):
            found += sorted(p for p in folder.glob(pattern) if "_hl" not in p.name)
    return found


def bounded() -> bool:
    """Whether metadata read attempts can be bounded here (see the module's docstring)."""
    return _libhdf5() is not None


def _file_access() -> h5p.PropFAID:
    fapl = h5p.create(h5p.FILE_ACCESS)
    fapl.set_libver_bounds(h5f.LIBVER_LATEST, h5f.LIBVER_LATEST)
    lib = _libhdf5()
    if lib is not None:
        lib.H5Pset_metadata_read_attempts(fapl.id, READ_ATTEMPTS)
    return fapl


def open_file(path: str | Path, mode: Literal["r", "w"]) -> h5py.File:
    """A run log's file: ``"r"`` reads in SWMR mode (a live, killed or finished run alike),
    ``"w"`` creates (or truncates) one to write; both with bounded metadata retries.

    Raises:
        OSError, RuntimeError, ValueError: HDF5 could not open it (:func:`describe` says why
            in one line).
    """
    name = os.fsencode(str(path))
    fapl = _file_access()
    if mode == "r":
        fid = h5f.open(name, h5f.ACC_RDONLY | h5f.ACC_SWMR_READ, fapl=fapl)
    else:
        fid = h5f.create(name, h5f.ACC_TRUNC, fapl=fapl)
    return h5py.File(fid)


def probe(path: str | Path) -> str | None:
    """What is wrong with the file at ``path`` as a plain (non-SWMR) read finds it, in a few
    words, or None when nothing is: truncation, a checksum, no HDF5 signature. A plain read
    checks the file's length, which SWMR mode skips. It also fails, without that meaning
    damage (None), on the "open for writing" flags of a live or killed writer, and when
    this process already holds the file open in SWMR mode."""
    try:
        with h5py.File(path, "r"):
            return None
    except HDF5_ERRORS as exc:
        text = str(exc)
        if "already open" in text or "file consistency flags" in text or "unable to lock" in text:
            return None  # a writer's flags or lock, or this process has it open in SWMR mode: not damage
        return describe(exc)


_TRUNCATED = re.compile(r"eof = (\d+).*stored_eof = (\d+)")


def describe(exc: BaseException) -> str:
    """HDF5's error as a few words a user can act on (no C function names, no error stack)."""
    text = " ".join(str(exc).split())
    if is_disk_full(exc):
        return "no space left on the device"
    if "truncated file" in text:
        sizes = _TRUNCATED.search(text)
        return (f"truncated: the file ends at byte {int(sizes[1]):,} of {int(sizes[2]):,}" if sizes
                else "truncated")
    if "already open" in text:
        return "this process already has the file open in another mode (open it with h5py's swmr=True)"
    if "unable to lock" in text:
        return "another process holds HDF5's lock on it"
    if "signature not found" in text:
        return "not an HDF5 file"
    if "does not match its checksum" in text:
        return "the strings do not match their checksum (SHA-256)"
    if "filter returned failure" in text or "fletcher32" in text.lower():
        return "a data checksum does not match (fletcher32)"
    if "checksum" in text:
        return "an HDF5 metadata checksum does not match"
    inner = re.findall(r"\(([^()]*)\)", text)
    detail = inner[-1] if inner else text
    return f"damaged HDF5 structure ({detail[:160]})"


def vfd_handle(file: h5py.File) -> int | None:
    """The OS file descriptor under an open file (the default sec2 driver), or None."""
    try:
        handle = file.id.get_vfd_handle()
    except HDF5_ERRORS:
        return None
    return handle if isinstance(handle, int) and sys.platform != "win32" else None


def open_log(path: str | Path) -> h5py.File:
    """A relabscope run log, open to read (SWMR; bounded retries), or one line
    saying why not.

    Raises:
        LogDamagedError: not an HDF5 file, truncated or damaged.
        RunDirError: not a run log, or written by a newer relabscope.
    """
    problem = probe(path)
    if problem is not None:
        raise LogDamagedError(f"{path}: not a readable HDF5 run log ({problem})")
    try:
        f = open_file(path, "r")
    except HDF5_ERRORS as exc:
        raise LogDamagedError(f"{path}: not a readable HDF5 run log ({describe(exc)})") from None
    try:
        fmt, version = schema.text(f.attrs.get("format", "")), int(f.attrs.get("schema_version", 0))
    except HDF5_ERRORS as exc:
        f.close()
        raise LogDamagedError(f"{path}: not a readable HDF5 run log ({describe(exc)})") from None
    if fmt != schema.FORMAT:
        f.close()
        raise RunDirError(f"{path}: not a relabscope run log")
    if version > schema.SCHEMA_VERSION:
        f.close()
        raise RunDirError(f"{path}: written with run-log schema {version}, this relabscope reads up to "
                          f"{schema.SCHEMA_VERSION}; upgrade relabscope")
    return f
