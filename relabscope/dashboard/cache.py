"""A small thread-safe LRU memo for results that are expensive to recompute per request.

Keys name the run *and its version* (number of committed epochs), so a live run that
commits an epoch gets fresh results and the stale ones age out. Values are whatever the
analysis API returned (tables, Grad-CAM results, PNG bytes); nothing is computed here.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Callable, Hashable


class Memo:
    """``get(key, compute)``: the cached value for ``key``, computed once (per key, even
    when several requests ask at the same time)."""

    def __init__(self, max_items: int = 64):
        self.max_items = max_items
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()
        self._key_locks: dict[Hashable, threading.Lock] = {}
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                self.hits += 1
                return self._items[key]
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:  # one computation per key; others wait for it
            with self._lock:
                if key in self._items:
                    self.hits += 1
                    return self._items[key]
            value = compute()
            with self._lock:
                self.misses += 1
                self._items[key] = value
                self._items.move_to_end(key)
                while len(self._items) > self.max_items:
                    self._items.popitem(last=False)
                self._key_locks.pop(key, None)
            return value

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


class Background:
    """Results too slow for a request (an embedding projection of 20,000 points takes about
    a minute on two cores) computed by one worker thread, one at a time, into a ``Memo``.

    ``poll(key, compute)`` never blocks: it returns ``("done", value)``, ``("running",
    seconds since the job started)``, ``("queued", jobs ahead)`` or ``("failed", exception)``.
    A callback shows a "computing" note and polls again; one worker bounds both CPU and
    memory however many clients ask for different projections at once. A failed job is
    forgotten once reported, so asking again retries it.
    """

    def __init__(self, memo: Memo, workers: int = 1):
        from concurrent.futures import ThreadPoolExecutor

        self.memo = memo
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="relabscope-background")
        self._jobs: OrderedDict[Hashable, tuple[Any, list[float]]] = OrderedDict()
        self._lock = threading.Lock()

    def poll(self, key: Hashable, compute: Callable[[], Any]) -> tuple[str, Any]:
        import time

        if key in self.memo:
            return "done", self.memo.get(key, compute)
        with self._lock:
            if key not in self._jobs:
                started: list[float] = []

                def job() -> Any:
                    started.append(time.monotonic())
                    return self.memo.get(key, compute)

                self._jobs[key] = (self._executor.submit(job), started)
            future, started = self._jobs[key]
            if future.done():
                del self._jobs[key]
                exc = future.exception()
                return ("failed", exc) if exc is not None else ("done", future.result())
            if started:
                return "running", time.monotonic() - started[0]
            keys = list(self._jobs)
            return "queued", sum(1 for k in keys[:keys.index(key)] if not self._jobs[k][0].done())

    def wait(self, timeout: float | None = None) -> None:
        """Block until every job submitted so far has finished (tests, shutdown)."""
        from concurrent.futures import wait

        with self._lock:
            futures = [f for f, _ in self._jobs.values()]
        wait(futures, timeout=timeout)
