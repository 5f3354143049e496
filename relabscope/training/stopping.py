"""Stopping a run on SIGTERM or Ctrl-C at a safe point, on every rank together.

torchrun stops its ranks with SIGTERM (and SIGKILL 30 s later), SLURM does the same on
preemption or at the time limit, and Ctrl-C sends SIGINT. Python's default for SIGTERM
kills the process wherever it is, possibly in the middle of the run log's commit, leaving
its status "running". While a :class:`StopSignals` is installed, the first SIGTERM or
SIGINT only records the request; the trainer looks at it at points every rank reaches at
the same step (``Trainer._agreement``) and raises :class:`~relabscope.errors.StoppedError`
there, so the epoch in flight completes or is dropped whole, the log closes with status
"interrupted" and ``--resume`` continues. A second signal raises ``KeyboardInterrupt`` at
once, for a run that does not reach such a point.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType
from typing import Any

from relabscope.errors import StoppedError

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopSignals:
    """Records the first SIGTERM / SIGINT while installed (a ``with`` block in the main
    thread; elsewhere Python allows no handler, and signals keep their defaults)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else ""

    def error(self, message: str) -> StoppedError:
        """The error that stops the run: exit code 128 + the signal's number, as a shell
        reports a process the signal ended."""
        exc = StoppedError(message)
        exc.exit_code = 128 + int(self.signum or signal.SIGTERM)
        return exc

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum
