"""The dashboard's caches: ``Memo`` computes a key once however many ask at once, and
``Background`` answers at once (queued, running, done, failed) while one worker computes."""

from __future__ import annotations

import threading

from relabscope.dashboard.cache import Background, Memo


def test_memo_computes_each_key_once_under_concurrency() -> None:
    memo, calls, gate = Memo(4), [], threading.Event()

    def compute():
        calls.append(1)
        gate.wait(5)
        return 42

    threads = [threading.Thread(target=lambda: memo.get("k", compute)) for _ in range(8)]
    for t in threads:
        t.start()
    gate.set()
    for t in threads:
        t.join(5)
    assert calls == [1] and memo.get("k", compute) == 42 and memo.hits >= 1


def test_background_reports_queued_running_done_and_failed() -> None:
    background = Background(Memo(8))
    first_running, release = threading.Event(), threading.Event()

    def slow():
        first_running.set()
        release.wait(10)
        return "map"

    state, _ = background.poll("a", slow)
    assert state in ("queued", "running")
    assert first_running.wait(5)
    state, seconds = background.poll("a", slow)
    assert state == "running" and seconds >= 0
    assert background.poll("b", lambda: "other") == ("queued", 1)  # one worker: b waits for a
    release.set()
    background.wait(10)
    assert background.poll("a", slow) == ("done", "map")
    assert background.poll("b", lambda: "never called again") == ("done", "other")

    def broken():
        raise ValueError("no embeddings kept for epoch 9")

    background.poll("c", broken)
    background.wait(10)
    state, exc = background.poll("c", broken)
    assert state == "failed" and isinstance(exc, ValueError)
    assert background.poll("c", lambda: "fixed")[0] in ("queued", "running", "done")  # asked again: retried
    background.wait(10)
    assert background.poll("c", lambda: "fixed") == ("done", "fixed")


def test_background_takes_the_latest_request_and_drops_abandoned_ones() -> None:
    background = Background(Memo(8), stale_seconds=0.3)
    running, release, order = threading.Event(), threading.Event(), []

    def job(name, gate=None):
        def compute():
            order.append(name)
            if gate is not None:
                running.set()
                gate.wait(10)
            return name
        return compute

    background.poll("first", job("first", release))
    assert running.wait(5)
    background.poll("abandoned", job("abandoned"))  # asked once, never again
    import time

    time.sleep(0.5)
    background.poll("older", job("older"))
    background.poll("newest", job("newest"))
    background.poll("older", job("older"))  # asked again last: it is what the user looks at now
    release.set()
    background.wait(10)
    assert order[:2] == ["first", "older"] and "abandoned" not in order
    assert background.poll("abandoned", job("abandoned"))[0] in ("queued", "running", "done")  # asked again: computed
