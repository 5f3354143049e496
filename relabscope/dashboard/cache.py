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
    a minute on two cores) computed by one daemon worker thread, one at a time, into a
    ``Memo``.

    ``poll(key, compute)`` never blocks: it returns ``("done", value)``, ``("running",
    seconds since the job started)``, ``("queued", jobs ahead)`` or ``("failed", exception)``.
    A callback shows a "computing" note and polls again; one worker bounds both CPU and
    memory however many clients ask for different projections at once, and being a daemon
    it never holds up Ctrl-C. A failed job is forgotten once reported, so asking again
    retries it.
    """

    def __init__(self, memo: Memo):
        import queue

        self.memo = memo
        self._queue: queue.Queue = queue.Queue()
        self._jobs: OrderedDict[Hashable, _Job] = OrderedDict()
        self._lock = threading.Lock()
        threading.Thread(target=self._work, name="relabscope-background", daemon=True).start()

    def poll(self, key: Hashable, compute: Callable[[], Any]) -> tuple[str, Any]:
        import time

        if key in self.memo:
            return "done", self.memo.get(key, compute)
        with self._lock:
            job = self._jobs.get(key)
            if job is None:
                job = self._jobs[key] = _Job(key, compute)
                self._queue.put(job)
            if job.finished.is_set():
                del self._jobs[key]
                return ("failed", job.error) if job.error is not None else ("done", job.value)
            if job.started is not None:
                return "running", time.monotonic() - job.started
            keys = list(self._jobs)
            return "queued", sum(1 for k in keys[:keys.index(key)] if not self._jobs[k].finished.is_set())

    def wait(self, timeout: float | None = None) -> None:
        """Block until every job asked for so far has finished (tests)."""
        with self._lock:
            jobs = list(self._jobs.values())
        for job in jobs:
            job.finished.wait(timeout)

    def _work(self) -> None:
        import time

        while True:
            job = self._queue.get()
            job.started = time.monotonic()
            try:
                job.value = self.memo.get(job.key, job.compute)
            except BaseException as exc:  # reported to the next poll
                job.error = exc
            job.finished.set()


class _Job:
    def __init__(self, key: Hashable, compute: Callable[[], Any]):
        self.key, self.compute = key, compute
        self.started: float | None = None
        self.value: Any = None
        self.error: BaseException | None = None
        self.finished = threading.Event()
