"""Passes over a run's epochs on every core.

The per-sample statistics (training dynamics, the suspects' signals) are sums over epochs
of work vectorised over samples. numpy's loops release the GIL, so contiguous ranges of
epochs summed in threads use every core: on the 2-core development machine the suspects of
an AffectNet-sized log (287,651 samples, 40 epochs) took about half the time.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, TypeVar

_T = TypeVar("_T")
#: threads a pass uses: every core, up to 4 (beyond that the memory bus, not the cores, limits)
THREADS = max(1, min(4, os.cpu_count() or 1))


def split(num_epochs: int, parts: int = THREADS) -> list[range]:
    """``range(num_epochs)`` cut into at most ``parts`` contiguous, nearly equal ranges."""
    parts = max(1, min(parts, num_epochs))
    bounds = [round(i * num_epochs / parts) for i in range(parts + 1)]
    return [range(a, b) for a, b in zip(bounds, bounds[1:])]


def over_epochs(num_epochs: int, work: Callable[[range], _T]) -> list[_T]:
    """``work`` on each of :func:`split`'s ranges, in threads; the results in epoch order."""
    ranges = split(num_epochs)
    if len(ranges) == 1:
        return [work(ranges[0])]
    with ThreadPoolExecutor(len(ranges), thread_name_prefix="relabscope-epochs") as pool:
        return list(pool.map(work, ranges))
