"""A small thread-safe LRU memo for results that are expensive to recompute per request.

Keys name the run *and its version* (number of committed epochs), so a live run that
commits an epoch gets fresh results and the stale ones age out. Values are whatever the
analysis API returned (tables, Grad-CAM results, PNG bytes); nothing is computed here.
"""

from __future__ import annotations

import threading
import time
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
    A callback shows a "computing" note and polls again. One worker bounds CPU and memory
    however many clients ask at once; it takes the job asked for most recently (the map a
    user is looking at now), and drops jobs nobody has asked about for ``stale_seconds``
    (a user who clicked through five maps waits for one). Being a daemon it never holds up
    Ctrl-C. A failed job is forgotten once reported, so asking again retries it.
    """

    def __init__(self, memo: Memo, stale_seconds: float = 20.0):
        self.memo = memo
        self.stale_seconds = stale_seconds
        self._jobs: OrderedDict[Hashable, _Job] = OrderedDict()
        self._wake = threading.Condition()
        threading.Thread(target=self._work, name="relabscope-background", daemon=True).start()

    def poll(self, key: Hashable, compute: Callable[[], Any]) -> tuple[str, Any]:
        if key in self.memo:
            return "done", self.memo.get(key, compute)
        now = time.monotonic()
        with self._wake:
            job = self._jobs.get(key)
            if job is None:
                job = self._jobs[key] = _Job(key, compute)
                self._wake.notify()
            job.asked = now
            if job.finished.is_set():
                del self._jobs[key]
                return ("failed", job.error) if job.error is not None else ("done", job.value)
            if job.started is not None:
                return "running", now - job.started
            return "queued", sum(1 for j in self._jobs.values() if j.started is not None and not j.finished.is_set())

    def wait(self, timeout: float = 60.0) -> None:
        """Block until no job asked for is waiting or running (tests)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._wake:
                pending = [j for j in self._jobs.values() if not j.finished.is_set()]
            if not pending:
                return
            pending[0].finished.wait(0.05)

    def _next(self) -> _Job:
        """The most recently asked-for waiting job; stale ones are dropped unstarted."""
        with self._wake:
            while True:
                now = time.monotonic()
                for key in [k for k, j in self._jobs.items() if j.started is None and now - j.asked > self.stale_seconds]:
                    del self._jobs[key]
                waiting = [j for j in self._jobs.values() if j.started is None]
                if waiting:
                    job = max(waiting, key=lambda j: j.asked)
                    job.started = now
                    return job
                self._wake.wait()

    def _work(self) -> None:
        while True:
            job = self._next()
            try:
                job.value = self.memo.get(job.key, job.compute)
            except BaseException as exc:  # reported to the next poll
                job.error = exc
            job.finished.set()


class _Job:
    def __init__(self, key: Hashable, compute: Callable[[], Any]):
        self.key, self.compute = key, compute
        self.asked = time.monotonic()
        self.started: float | None = None
        self.value: Any = None
        self.error: BaseException | None = None
        self.finished = threading.Event()
