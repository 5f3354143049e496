"""The runs a dashboard may show: discovered under its roots, named by id, opened lazily.

Security model: a client names a run only by its id, and an id is looked up in the set this
registry discovered itself; no client string is ever joined onto a path. Discovery walks
each root (following symbolic links only while they resolve inside a root, so a link out of
the root is never listed) and records every directory holding a ``run.h5`` (or a
``run.h5.partial`` whose run stopped before its log existed).

Ids are the run directory's path relative to its root, in posix form (``scn-c/seed0``);
a root that is itself a run is named by its folder name. With several roots, each id is
prefixed by its root's folder name (made unique), so ids never collide.

A run is opened (``relabscope.Run``) on first use and kept open; the open runs are capped
(least recently used dropped first). A log that cannot be read (corrupt, truncated, newer
schema, still ``.partial``) is recorded as the run's error; other runs are unaffected. A
failed or replaced log is tried again once its file changed (size, time or inode), and
discovery repeats at most every ``rescan_seconds``, so runs that start after the server
show up without a restart. Epochs a live run commits show through ``Run`` itself (it
re-reads the SWMR log's length on every call).

Images: ``images`` maps a run id to the image source it is opened with (``Run(path,
images=...)``); the entry under ``DEFAULT_IMAGES`` serves every run that has no images of
its own (neither recorded in its log nor a data set in its config). The sources come from
the person starting the server, never from a client.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Mapping

from relabscope.analysis.run import Run
from relabscope.errors import RelabscopeError, RunDirError
from relabscope.runlog.schema import LOG_NAME, PARTIAL_SUFFIX

if TYPE_CHECKING:
    from relabscope.runlog.images import ImagesArg

#: Folders never searched for runs (a run's own checkpoints, caches, VCS and venvs).
SKIP_DIRS = {"checkpoints", "__pycache__", "node_modules", ".git", ".venv", "venv"}
MAX_DEPTH = 8
#: the ``images`` key of the source for every run without images of its own
DEFAULT_IMAGES = ""


class RunUnavailable(RelabscopeError):
    """A run id that is unknown, or a run whose log cannot be read (message: one line)."""


@dataclass
class RunEntry:
    """One discovered run directory."""

    id: str
    path: Path                     # the run directory (resolved, inside ``root``)
    root: Path
    run: Run | None = None
    error: str | None = None
    stamp: tuple | None = None     # (inode, size, mtime) of the log when opened or when it failed
    last_used: float = 0.0

    @property
    def log_path(self) -> Path:
        return self.path / LOG_NAME

    @property
    def mtime(self) -> float:
        for p in (self.log_path, self.path / (LOG_NAME + PARTIAL_SUFFIX)):
            try:
                return p.stat().st_mtime
            except OSError:
                continue
        return 0.0


@dataclass
class RunInfo:
    """What the run list shows of a run without reading its arrays."""

    id: str
    name: str
    mtime: float
    error: str | None = None
    method: str | None = None
    dataset: str | None = None
    epochs: int | None = None
    status: str | None = None
    extra: dict = field(default_factory=dict)


def _stamp(path: Path) -> tuple | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _inside(path: Path, roots: Iterable[Path]) -> bool:
    return any(path == r or r in path.parents for r in roots)


class RunRegistry:
    """Runs under ``roots`` (folders; a folder that is itself a run is fine)."""

    def __init__(self, roots: Iterable[str | os.PathLike], *, rescan_seconds: float = 5.0, max_open: int = 8,
                 images: Mapping[str, ImagesArg] | None = None):
        given = [Path(r) for r in roots]
        if not given:
            raise RunDirError("no run folder given")
        self.roots: list[Path] = []
        for r in given:
            try:
                resolved = r.resolve(strict=True)
            except (OSError, RuntimeError):
                raise RunDirError(f"{r}: run folder not found") from None
            if not resolved.is_dir():
                raise RunDirError(f"{r}: not a folder")
            if resolved not in self.roots:
                self.roots.append(resolved)
        self._labels = self._root_labels()
        self.rescan_seconds = rescan_seconds
        self.max_open = max_open
        self._entries: dict[str, RunEntry] = {}
        self._scanned = -float("inf")
        self._lock = threading.RLock()
        self.scan()
        self.images = dict(images or {})
        unknown = [k for k in self.images if k != DEFAULT_IMAGES and k not in self._entries]
        if unknown:
            raise RunDirError(f"images for run {unknown[0]!r}: no such run (runs: {', '.join(self.ids()[:10])})")

    # ------------------------------------------------------------------ discovery
    def _root_labels(self) -> dict[Path, str]:
        if len(self.roots) == 1:
            return {self.roots[0]: ""}
        labels: dict[Path, str] = {}
        for root in self.roots:
            base = root.name or "root"
            label, i = base, 2
            while label in labels.values():
                label, i = f"{base}-{i}", i + 1
            labels[root] = label
        return labels

    def _run_id(self, root: Path, run_dir: Path) -> str:
        rel = run_dir.relative_to(root).as_posix()
        label = self._labels[root]
        if rel == ".":
            return label or root.name or "run"
        return f"{label}/{rel}" if label else rel

    def _walk(self, root: Path) -> list[Path]:
        found: list[Path] = []
        seen: set[Path] = set()
        stack = [(root, 0)]
        while stack:
            folder, depth = stack.pop()
            try:
                real = folder.resolve(strict=True)
            except (OSError, RuntimeError):
                continue
            if not _inside(real, self.roots):
                continue  # a link out of every root
            try:
                names = os.listdir(real)
            except OSError:
                continue
            if LOG_NAME in names or LOG_NAME + PARTIAL_SUFFIX in names:
                log = real / LOG_NAME
                if LOG_NAME in names and not _inside(log.resolve(), self.roots):
                    continue  # run.h5 itself links out of the root
                found.append(folder)
                continue  # runs do not nest
            if real in seen or depth >= MAX_DEPTH:
                continue  # a link cycle, or too deep
            seen.add(real)
            for name in sorted(names, reverse=True):
                if name.startswith(".") or name in SKIP_DIRS:
                    continue
                child = folder / name
                if child.is_dir():
                    stack.append((child, depth + 1))
        return found

    def scan(self, force: bool = False) -> None:
        """Discover runs (at most every ``rescan_seconds`` unless ``force``)."""
        with self._lock:
            now = time.monotonic()
            if not force and now - self._scanned < self.rescan_seconds:
                return
            self._scanned = now
            # one id per run directory: reached through links too, it keeps the name of its
            # real path when that lies under a root, else the shortest linked name
            by_real: dict[Path, tuple] = {}
            for root in self.roots:
                for folder in self._walk(root):
                    run_id = self._run_id(root, folder)
                    real = folder.resolve()
                    rank = (folder != real, len(run_id), run_id)
                    if real not in by_real or rank < by_real[real][2]:
                        by_real[real] = (run_id, root, rank)
            current: dict[str, RunEntry] = {}
            for real, (run_id, root, _) in by_real.items():
                old = self._entries.get(run_id)
                current[run_id] = old if old is not None and old.path == real else RunEntry(run_id, real, root)
            self._entries = current

    # ------------------------------------------------------------------ lookup
    def ids(self) -> list[str]:
        """Run ids, newest log first."""
        self.scan()
        with self._lock:
            entries = list(self._entries.values())
        return [e.id for e in sorted(entries, key=lambda e: (-e.mtime, e.id))]

    def newest(self) -> str | None:
        """The newest run that reads; the newest of all (its page shows why it does not
        read) only when none does."""
        ids = self.ids()
        return next((i for i in ids if self.error(i) is None), ids[0] if ids else None)

    def __contains__(self, run_id: object) -> bool:
        if not isinstance(run_id, str):
            return False
        self.scan()
        return run_id in self._entries

    def entry(self, run_id: object) -> RunEntry:
        if not isinstance(run_id, str) or not run_id:
            raise RunUnavailable("no run chosen")
        self.scan()
        with self._lock:
            entry = self._entries.get(run_id)
        if entry is None:
            raise RunUnavailable(f"unknown run {run_id[:200]!r}")
        return entry

    def get(self, run_id: object) -> Run:
        """The open Run for ``run_id``; raises RunUnavailable for an unknown id or a log
        that cannot be read (the error is kept and shown until the file changes)."""
        entry = self.entry(run_id)
        with self._lock:
            stamp = _stamp(entry.log_path) or _stamp(entry.path / (LOG_NAME + PARTIAL_SUFFIX))
            if entry.run is not None and stamp is not None and entry.stamp is not None \
                    and stamp[0] != entry.stamp[0]:
                entry.run = None  # the log was replaced (a new run in the same folder)
            if entry.run is None and (entry.error is None or stamp != entry.stamp):
                entry.stamp = stamp
                try:
                    entry.run = _open(entry, self.images)
                    entry.error = None
                except Exception as exc:  # any unreadable log becomes the run's error card
                    # viewers see run ids, never the server's paths
                    entry.error = _one_line(exc).replace(str(entry.path), entry.id)
                self._evict(keep=entry)
            if entry.run is not None and entry.run.damage is not None:
                # a read met damage: the run is listed with it until its file changes, and no
                # page asks the damaged log again
                entry.error = entry.run.damage.replace(str(entry.path), entry.id)
                entry.run = None
            entry.last_used = time.monotonic()
            if entry.run is None:
                raise RunUnavailable(entry.error or f"{entry.id}: run log not readable")
            return entry.run

    def error(self, run_id: str) -> str | None:
        """The run's error (after trying to open it), or None when it reads fine."""
        try:
            self.get(run_id)
        except RunUnavailable as exc:
            return str(exc)
        return None

    def info(self, run_id: str) -> RunInfo:
        entry = self.entry(run_id)
        info = RunInfo(id=entry.id, name=entry.path.name, mtime=entry.mtime)
        try:
            run = self.get(run_id)
            info.method = run.method
            info.dataset = str(run.meta.get("dataset", "?"))
            info.epochs = run.num_epochs
            info.status = run.status
        except RunUnavailable as exc:
            info.error = str(exc)
        except Exception as exc:  # a log that opens but fails on first read
            info.error = _one_line(exc)
        return info

    def infos(self) -> list[RunInfo]:
        return [self.info(i) for i in self.ids()]

    def version(self, run_id: str) -> dict:
        """What changes when a live run commits an epoch (for the page's refresh tick)."""
        try:
            run = self.get(run_id)
            return {"run": run_id, "epochs": run.num_epochs, "status": run.status}
        except Exception as exc:
            return {"run": run_id, "error": _one_line(exc)}

    def _evict(self, keep: RunEntry) -> None:
        open_entries = [e for e in self._entries.values() if e.run is not None and e is not keep]
        excess = len(open_entries) + 1 - self.max_open
        for e in sorted(open_entries, key=lambda e: e.last_used)[:max(0, excess)]:
            e.run = None  # dropped, not closed: a request may still be reading it

    def close(self) -> None:
        with self._lock:
            for e in self._entries.values():
                if e.run is not None:
                    try:
                        e.run.close()
                    except Exception:
                        pass
                    e.run = None


def _open(entry: RunEntry, images: Mapping[str, ImagesArg]) -> Run:
    """The run of ``entry``, its images the operator's (``images``) or, when it names its
    own, only those inside the root it was found under (``Run.images_withheld``)."""
    run = Run(entry.path, images=images.get(entry.id), image_roots=[entry.root])
    if not run.has_images and DEFAULT_IMAGES in images:
        run.close()
        run = Run(entry.path, images=images[DEFAULT_IMAGES])
    # touch what every page needs, and every dataset's index, so a log that opens but cannot
    # be read fails here and is listed with its error
    run.num_epochs, run.class_names, run.config, run.status  # noqa: B018
    run.touch()
    return run


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return text if isinstance(exc, RelabscopeError) else f"{type(exc).__name__}: {text}"
