"""Reading a log's per-epoch rows straight from their chunks, checksums checked here.

Every chunk of a run log carries HDF5's fletcher32 checksum (``runlog.layout``). HDF5 checks
it on read through its filter pipeline, which copies and checks each chunk at about
300 MB/s: the distances of an AffectNet-sized log (373 MB over 40 epochs) took 1.35 s to read,
against 0.08 s for the same data without the filter. :func:`read_epochs` reads the stored
chunks as they are (``read_direct_chunk``) and computes the same fletcher32 over all of them
at once with numpy (:func:`fletcher32`, the same numbers as ``H5_checksum_fletcher32``, bit
for bit): the same guarantee, a damaged chunk is an error and never a number, at about 1 GB/s.
It applies to the layout relabscope writes, one epoch per chunk along the first axis and
whole trailing rows in each; anything else is read through h5py as before.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import h5py
import numpy as np

_BLOCK = 360  # words summed between two folds in HDF5's fletcher32 (H5checksum.c)
_WEIGHTS = np.stack([np.ones(_BLOCK), np.arange(_BLOCK, 0, -1, dtype=np.float64)], axis=1)
_FLETCHER32 = 3  # H5Z_FILTER_FLETCHER32
_THREADS = 2


def read_epochs(ds: h5py.Dataset, start: int, stop: int) -> np.ndarray | None:
    """Rows ``start:stop`` of a per-epoch dataset, every chunk checked against its fletcher32;
    None when the dataset is not laid out as relabscope writes one (the caller reads it
    through h5py).

    Raises:
        OSError: a chunk's checksum does not match (a damaged chunk), or HDF5 cannot read it.
    """
    if not _direct(ds) or stop <= start:
        return None
    n, rest = ds.shape[1], ds.shape[2:]
    rows = ds.chunks[1]
    row_bytes = int(np.prod(rest, dtype=np.int64)) * ds.dtype.itemsize
    chunk_bytes = rows * row_bytes
    size = (stop - start) * n * row_bytes
    # each chunk is read straight to its place in the result (its 4 checksum bytes spill into
    # the next chunk's place, read after it); a last, padded chunk of a row goes to a buffer
    # of its own first; the slack takes the spill of the very last chunk
    out = np.empty(size + chunk_bytes + 4, np.uint8)
    payloads, stored, padded, where = [], [], [], []
    for e in range(start, stop):
        for j in range(0, n, rows):
            at = ((e - start) * n + j) * row_bytes
            count = min(rows, n - j)
            target = out[at:at + chunk_bytes + 4] if count == rows else np.empty(chunk_bytes + 4, np.uint8)
            mask, _ = ds.id.read_direct_chunk((e, j) + (0,) * len(rest), out=target)
            if mask:
                return None  # a chunk stored without its filter: let HDF5 read it
            stored.append(int.from_bytes(target[chunk_bytes:].tobytes(), "little"))
            payloads.append(target[:chunk_bytes])
            where.append((e, j))
            if count < rows:
                padded.append((at, target[:count * row_bytes]))
    bad = np.flatnonzero(fletcher32(payloads) != np.array(stored, np.uint32))
    if len(bad):
        e, j = where[int(bad[0])]
        raise OSError(f"fletcher32 checksum of the chunk of epoch {e} at row {j} does not match: filter returned "
                      "failure during read")
    for at, valid in padded:
        out[at:at + len(valid)] = valid
    result: np.ndarray = out[:size].view(ds.dtype).reshape(stop - start, n, *rest)
    return result


def _direct(ds: h5py.Dataset) -> bool:
    """Whether ``ds`` has the layout :func:`read_epochs` reads: chunks of one epoch and whole
    trailing rows, fletcher32 its only filter, at least two axes."""
    chunks = ds.chunks
    if chunks is None or len(ds.shape) < 2 or chunks[0] != 1 or tuple(chunks[2:]) != tuple(ds.shape[2:]):
        return False
    plist = ds.id.get_create_plist()
    return plist.get_nfilters() == 1 and plist.get_filter(0)[0] == _FLETCHER32


def fletcher32(payloads: list[Any]) -> np.ndarray:
    """HDF5's fletcher32 of each of ``payloads`` (bytes-like, one length, even), exactly as
    ``H5_checksum_fletcher32`` computes it: big-endian 16-bit words summed in blocks of 360,
    the sums folded to 16 bits after each block, the running second sum wrapping at 32 bits.

    The block sums (a matrix product, exact in float64: each is below 2**33) are computed for
    every payload at once, in threads; only the folds run block by block, over all payloads
    together.
    """
    if not payloads:
        return np.empty(0, np.uint32)
    length = len(payloads[0])
    n = length // 2
    full, rest = divmod(n, _BLOCK)
    blocks = full + (rest > 0)
    sums = np.empty((len(payloads), blocks), np.uint64)
    weighted = np.empty_like(sums)

    def block_sums(i: int) -> None:
        words = np.frombuffer(payloads[i], dtype=">u2", count=n).astype(np.float64)
        both = words[:full * _BLOCK].reshape(full, _BLOCK) @ _WEIGHTS
        sums[i, :full], weighted[i, :full] = both[:, 0], both[:, 1]
        if rest:
            tail = words[full * _BLOCK:]
            sums[i, full] = tail.sum()
            weighted[i, full] = tail @ np.arange(rest, 0, -1, dtype=np.float64)

    with ThreadPoolExecutor(_THREADS) as pool:
        list(pool.map(block_sums, range(len(payloads))))
    s1 = np.zeros(len(payloads), np.uint64)
    s2 = np.zeros(len(payloads), np.uint64)
    low, shift, wrap = np.uint64(0xFFFF), np.uint64(16), np.uint64(0xFFFFFFFF)
    for b in range(blocks):
        size = np.uint64(_BLOCK if b < full else rest)
        s2 = (s2 + size * s1 + weighted[:, b]) & wrap
        s1 = s1 + sums[:, b]
        s1, s2 = (s1 & low) + (s1 >> shift), (s2 & low) + (s2 >> shift)
    if length % 2:  # an odd last byte: the high byte of one more word
        last = np.array([bytes(p)[-1] for p in payloads], np.uint64) << np.uint64(8)
        s1 = s1 + last
        s2 = (s2 + s1) & wrap
        s1, s2 = (s1 & low) + (s1 >> shift), (s2 & low) + (s2 >> shift)
    s1, s2 = (s1 & low) + (s1 >> shift), (s2 & low) + (s2 >> shift)
    result: np.ndarray = ((s2 << shift) | s1).astype(np.uint32)
    return result
