"""Clearing the "file is open for writing" flags a killed SWMR writer leaves behind.

A run log is written in HDF5's SWMR mode, so a writer killed at any moment leaves a file
that opens for reading (with ``swmr=True``) and holds every committed epoch. What the kill
does leave set are the superblock's file-consistency flags: until they are cleared, HDF5
refuses to open the file for writing, or for reading without ``swmr=True``. HDF5's own
``h5clear -s`` clears them; it ships with the HDF5 tools, not with h5py, so this module does
the same thing: it zeroes the flags byte of the version 2/3 superblock and rewrites the
superblock's Jenkins lookup3 checksum. ``--resume`` calls it before reopening a log.
"""

from __future__ import annotations

import struct
from pathlib import Path

SIGNATURE = b"\x89HDF\r\n\x1a\n"
_MASK = 0xFFFFFFFF


def _rot(x: int, k: int) -> int:
    return ((x << k) | (x >> (32 - k))) & _MASK


def _mix(a: int, b: int, c: int) -> tuple[int, int, int]:
    for x, y, z, k in ((0, 2, 1, 4), (1, 0, 2, 6), (2, 1, 0, 8), (0, 2, 1, 16), (1, 0, 2, 19), (2, 1, 0, 4)):
        v = [a, b, c]
        v[x] = ((v[x] - v[y]) & _MASK) ^ _rot(v[y], k)
        v[y] = (v[y] + v[z]) & _MASK
        a, b, c = v
    return a, b, c


def _final(a: int, b: int, c: int) -> int:
    for x, y, k in ((2, 1, 14), (0, 2, 11), (1, 0, 25), (2, 1, 16), (0, 2, 4), (1, 0, 14), (2, 1, 24)):
        v = [a, b, c]
        v[x] = ((v[x] ^ v[y]) - _rot(v[y], k)) & _MASK
        a, b, c = v
    return c


def lookup3(data: bytes, initval: int = 0) -> int:
    """Bob Jenkins' lookup3 ``hashlittle``, the checksum HDF5 puts on its metadata."""
    length = len(data)
    a = b = c = (0xDEADBEEF + length + initval) & _MASK
    if length == 0:
        return c
    padded = data + bytes(-length % 12)
    blocks = [padded[i:i + 12] for i in range(0, len(padded), 12)]
    for block in blocks[:-1]:
        a, b, c = _add(a, b, c, block)
        a, b, c = _mix(a, b, c)
    return _final(*_add(a, b, c, blocks[-1]))


def _add(a: int, b: int, c: int, block: bytes) -> tuple[int, int, int]:
    words = struct.unpack("<3I", block)
    return (a + words[0]) & _MASK, (b + words[1]) & _MASK, (c + words[2]) & _MASK


def _superblock(head: bytes) -> tuple[int, int]:
    """(length of the checksummed part, version) of a v2/v3 superblock at offset 0."""
    if head[:8] != SIGNATURE:
        raise ValueError("not an HDF5 file (no signature at offset 0)")
    version = head[8]
    if version not in (2, 3):
        raise ValueError(f"superblock version {version} has no consistency flags to clear")
    offsets = head[9]
    return 12 + 4 * offsets, version


def write_flags(path: str | Path) -> int:
    """The superblock's file-consistency flags (0 when the file was closed cleanly)."""
    with open(path, "rb") as fh:
        head = fh.read(64)
    _superblock(head)
    return head[11]


def clear_write_flags(path: str | Path) -> bool:
    """Clear the flags a killed writer left set; True when there was something to clear.

    Only safe when no process is writing the file: call it on a log whose writer is dead.
    """
    with open(path, "r+b") as fh:
        head = fh.read(64)
        size, _ = _superblock(head)
        stored = struct.unpack("<I", head[size:size + 4])[0]
        if lookup3(head[:size]) != stored:
            raise ValueError(f"{path}: superblock checksum does not match; not clearing")
        if head[11] == 0:
            return False
        fixed = bytearray(head[:size])
        fixed[11] = 0
        fh.seek(0)
        fh.write(bytes(fixed) + struct.pack("<I", lookup3(bytes(fixed))))
        fh.flush()
    return True
