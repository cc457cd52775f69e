"""Drop-folder watching: turn filesystem events into settled files, and settled files
into batch jobs.

A file counts as arrived when an event says it was written, moved in or created, and
then nothing about it (size, mtime, inode) changed for `settle_seconds`, and no writer
we saw open it still has it open. Events are only hints: a catch-up scan at start, a
periodic rescan and a rescan after an inotify queue overflow find whatever they miss.
One thread (the settle loop) owns all the bookkeeping; watchdog's threads only call
`touch`, which is O(1), so a slow job can never stall event delivery.
"""

from __future__ import annotations

import errno
import heapq
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from watchdog.events import (
    DirCreatedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileClosedNoWriteEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileOpenedEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.polling import PollingObserver

from ingestd._lib import logs
from ingestd.jobs.lifecycle import JobsUnwritable
from ingestd.runtime.queue import Busy

RETRY_MAX_SECONDS = 300.0  # longest wait before retrying a file whose job did not succeed
# What the watcher acts on. Leaving out the directory-modified events watchdog makes up for
# every file created, deleted or moved (its parent "changed") halves the events a burst
# puts through watchdog's threads, which compete with ingestion for the GIL.
EVENTS = [FileCreatedEvent, FileModifiedEvent, FileMovedEvent, FileDeletedEvent, FileOpenedEvent,
          FileClosedEvent, FileClosedNoWriteEvent, DirCreatedEvent, DirMovedEvent]
GATHER_SECONDS = 0.01  # wait at most this long for files about to settle, so a burst is fewer jobs


def _snap(path: str):
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


@dataclass
class _Pending:
    due: float
    snap: tuple | None
    opens: int = 0
    queued: bool = False


@dataclass
class _Folder:
    """Watch state of one local source."""

    name: str
    connector: object
    pending: dict[str, _Pending] = field(default_factory=dict)
    ready: dict[str, None] = field(default_factory=dict)  # settled, in arrival order
    held: set[str] = field(default_factory=set)
    seen: dict[str, tuple] = field(default_factory=dict)  # after = "keep": what was taken already
    observer: object | None = None
    mode: str = "inotify"
    degraded: str | None = None
    restarts: int = 0
    next_rescan: float = 0.0
    trigger: str = "watch"
    scan_dirs: list[str] = field(default_factory=list)
    ready_since: float = 0.0
    retries: dict[str, int] = field(default_factory=dict)

    @property
    def options(self):
        return self.connector.options

    @property
    def root(self) -> str:
        return str(self.connector.root)


class _Handler(FileSystemEventHandler):
    """Runs on watchdog's dispatch thread: never raises, never blocks."""

    def __init__(self, watcher: "Watcher", name: str):
        self.watcher = watcher
        self.name = name

    def on_any_event(self, event) -> None:
        try:
            self.watcher._on_event(self.name, event)
        except Exception:  # an exception here would kill the observer's thread
            self.watcher.log.exception("watch handler failed", source=self.name)


class Watcher:
    def __init__(self, submit: Callable[..., object], busy: Callable[[str], object]):
        self._submit = submit
        self._busy = busy
        self._folders: dict[str, _Folder] = {}
        self._heap: list[tuple[float, int, str, str]] = []
        self._seq = 0
        self._cond = threading.Condition()
        self._stopped = False
        self._rescan_all = False
        self._thread = threading.Thread(target=self._loop, name="settle", daemon=True)
        self.log = logs.get("ingestd.watch")
        self._overflow = _OverflowTrigger(self)

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        logging.getLogger("watchdog.observers.inotify_c").addHandler(self._overflow)
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            folders = list(self._folders.values())
            self._cond.notify_all()
        for folder in folders:
            self._stop_observer(folder)
        logging.getLogger("watchdog.observers.inotify_c").removeHandler(self._overflow)
        self._thread.join(timeout=10)

    def add(self, name: str, connector, trigger: str = "watch") -> None:
        """Watch a source's folder: observer first, then the catch-up scan."""
        folder = _Folder(name=name, connector=connector, trigger=trigger)
        self._start_observer(folder)
        with self._cond:
            self._folders[name] = folder
            folder.next_rescan = 0.0  # catch-up now
            self._cond.notify_all()

    def remove(self, name: str) -> None:
        with self._cond:
            folder = self._folders.pop(name, None)
        if folder is not None:
            self._stop_observer(folder)

    def names(self) -> list[str]:
        with self._cond:
            return list(self._folders)

    def _start_observer(self, folder: _Folder) -> None:
        opts = folder.options
        observer = PollingObserver(timeout=min(1.0, max(0.1, opts.settle_seconds))) if opts.poll else Observer()
        folder.mode = "polling" if opts.poll else "inotify"
        try:
            observer.schedule(_Handler(self, folder.name), folder.root, recursive=True, event_filter=EVENTS)
            observer.start()
        except OSError as exc:
            if opts.poll or exc.errno not in (errno.ENOSPC, errno.EMFILE):
                raise
            # the inotify watch or instance limit: keep working, loudly, by polling
            folder.degraded = (f"inotify limit reached ({exc.strerror}); raise fs.inotify.max_user_watches "
                               "or max_user_instances; polling meanwhile")
            self.log.error("watch limit reached; falling back to polling", source=folder.name, error=exc.strerror)
            observer = PollingObserver(timeout=1.0)
            observer.schedule(_Handler(self, folder.name), folder.root, recursive=True, event_filter=EVENTS)
            observer.start()
            folder.mode = "polling"
        folder.observer = observer

    def _stop_observer(self, folder: _Folder) -> None:
        observer = folder.observer
        if observer is not None:
            observer.stop()
            observer.join(timeout=5)

    # -- events (watchdog threads) ----------------------------------------------------

    def _on_event(self, name: str, event) -> None:
        if isinstance(event, (DirCreatedEvent, DirMovedEvent)):
            target = event.dest_path if isinstance(event, DirMovedEvent) else event.src_path
            with self._cond:
                folder = self._folders.get(name)
                if folder is not None:
                    folder.scan_dirs.append(os.fsdecode(target))
                    self._cond.notify_all()
            return
        if event.is_directory:
            return
        if isinstance(event, (FileMovedEvent,)):
            self.forget(name, os.fsdecode(event.src_path))
            self.touch(name, os.fsdecode(event.dest_path))
        elif isinstance(event, FileDeletedEvent):
            self.forget(name, os.fsdecode(event.src_path))
        elif isinstance(event, FileOpenedEvent):
            self.touch(name, os.fsdecode(event.src_path), opened=1)
        elif isinstance(event, (FileClosedEvent, FileClosedNoWriteEvent)):
            self.touch(name, os.fsdecode(event.src_path), opened=-1)
        else:  # created, modified, attrib
            self.touch(name, os.fsdecode(event.src_path))

    def touch(self, name: str, path: str, opened: int = 0, delay: float = 0.0) -> None:
        """Something happened to `path`: (re)start its quiet period (plus `delay`)."""
        with self._cond:
            folder = self._folders.get(name)
            if folder is None or path in folder.held or not self._wanted(folder, path):
                return
            folder.ready.pop(path, None)  # settled, then written again: back to waiting
            now = time.monotonic()
            entry = folder.pending.get(path)
            if entry is None:
                entry = folder.pending[path] = _Pending(due=0.0, snap=None)
            entry.opens = max(0, entry.opens + opened)
            entry.due = max(entry.due, now + folder.options.settle_seconds + delay)
            entry.snap = _snap(path)
            if not entry.queued:
                self._push(entry.due, name, path)
                entry.queued = True

    def forget(self, name: str, path: str) -> None:
        with self._cond:
            folder = self._folders.get(name)
            if folder is not None:
                folder.pending.pop(path, None)
                folder.seen.pop(path, None)  # a deleted kept file must not be remembered for ever

    def _wanted(self, folder: _Folder, path: str) -> bool:
        root = folder.root
        if not path.startswith(root + os.sep):
            return False
        rel = path[len(root) + 1:]
        return not any(folder.options.ignored(part) for part in rel.split(os.sep))

    def _push(self, due: float, name: str, path: str) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (due, self._seq, name, path))
        if self._heap[0][1] == self._seq:
            self._cond.notify_all()

    # -- the settle loop --------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self._cond:
                if self._stopped:
                    return
                self._cond.wait(timeout=self._next_wake())
                if self._stopped:
                    return
            try:
                self._tick()
            except Exception:
                self.log.exception("settle loop error")

    def _next_wake(self) -> float:
        now = time.monotonic()
        wake = now + 1.0
        if self._heap:
            wake = min(wake, self._heap[0][0])
        for folder in self._folders.values():
            wake = min(wake, folder.next_rescan)
            if folder.ready:
                wake = min(wake, now + GATHER_SECONDS)
            if folder.scan_dirs or self._rescan_all:
                wake = now
        return max(0.0, wake - now)

    def _tick(self) -> None:
        now = time.monotonic()
        self._settle_due(now)
        self._scans(now)
        self._dispatch(time.monotonic())

    def _settle_due(self, now: float) -> None:
        while True:
            with self._cond:
                if not self._heap or self._heap[0][0] > now:
                    return
                _, _, name, path = heapq.heappop(self._heap)
                folder = self._folders.get(name)
                entry = folder.pending.get(path) if folder else None
                if entry is None:
                    continue
                if entry.due > now:  # touched again since this entry was queued
                    self._push(entry.due, name, path)
                    continue
                snap = _snap(path)
                if snap is None:
                    del folder.pending[path]
                    folder.seen.pop(path, None)
                elif snap != entry.snap or entry.opens > 0:
                    entry.snap, entry.due = snap, now + folder.options.settle_seconds
                    self._push(entry.due, name, path)
                elif folder.seen.get(path) == snap:
                    del folder.pending[path]  # after = "keep": already taken, unchanged
                else:
                    del folder.pending[path]
                    if not folder.ready:
                        folder.ready_since = now
                    folder.ready[path] = None

    def _scans(self, now: float) -> None:
        with self._cond:
            rescan_all, self._rescan_all = self._rescan_all, False
            work = []
            for folder in self._folders.values():
                dirs, folder.scan_dirs = folder.scan_dirs, []
                if rescan_all or now >= folder.next_rescan:
                    folder.next_rescan = now + folder.options.rescan_seconds
                    dirs = [folder.root]
                if dirs:
                    work.append((folder, dirs))
        for folder, dirs in work:
            self._supervise(folder)
            for directory in dirs:
                for path in folder.connector.scan(Path(directory)):
                    self._touch_from_scan(folder, path)

    def _touch_from_scan(self, folder: _Folder, path: str) -> None:
        with self._cond:
            if path in folder.pending or path in folder.held or path in folder.ready:
                return
        self.touch(folder.name, path)

    def _supervise(self, folder: _Folder) -> None:
        """A dead observer is restarted (and the rescan in progress covers the gap)."""
        observer = folder.observer
        if observer is not None and not observer.is_alive():
            folder.restarts += 1
            self.log.error("watcher died; restarting", source=folder.name, restarts=folder.restarts)
            self._start_observer(folder)

    def _dispatch(self, now: float) -> None:
        with self._cond:
            batches = []
            for folder in self._folders.values():
                if not folder.ready or self._busy(folder.name):
                    continue
                if now - folder.ready_since < GATHER_SECONDS and len(folder.ready) < folder.options.batch_max \
                        and any(p.due <= folder.ready_since + GATHER_SECONDS for p in folder.pending.values()):
                    continue  # more of the same burst is about to settle: take them together
                batch = list(itertools.islice(folder.ready, folder.options.batch_max))
                # held before the job can start: its own reads must not re-queue these files
                for path in batch:
                    del folder.ready[path]
                folder.held.update(batch)
                batches.append((folder, batch))
        for folder, batch in batches:
            try:
                self._submit(folder.name, folder.trigger, batch)
                folder.trigger = "watch"
            except Exception as exc:
                if not isinstance(exc, (Busy, JobsUnwritable)):  # the lifecycle logs an unwritable state dir
                    self.log.exception("could not queue a watch job", source=folder.name)
                with self._cond:
                    folder.held.difference_update(batch)
                    folder.ready = {**dict.fromkeys(batch), **folder.ready}

    def job_done(self, source: str, hint, ok: bool = True) -> None:
        """Release a finished job's files; anything still at those paths is looked at again,
        after a growing delay when the job did not succeed (a full disk must not turn into
        a hot retry loop)."""
        if not hint:
            return
        with self._cond:
            folder = self._folders.get(source)
            if folder is None:
                return
            keep = folder.options.after == "keep"
            paths = list(hint)
            folder.held.difference_update(paths)
        for path in paths:
            snap = _snap(path)
            if snap is None:
                with self._cond:
                    folder.retries.pop(path, None)
                    folder.seen.pop(path, None)
                continue
            if keep and ok:
                with self._cond:
                    folder.seen[path] = snap
                continue
            delay = 0.0
            if not ok:
                with self._cond:
                    attempt = folder.retries[path] = folder.retries.get(path, 0) + 1
                delay = min(RETRY_MAX_SECONDS, folder.options.settle_seconds * (2 ** attempt))
            self.touch(source, path, delay=delay)
        with self._cond:
            self._cond.notify_all()

    def rescan(self) -> None:
        with self._cond:
            self._rescan_all = True
            self._cond.notify_all()

    # -- health -----------------------------------------------------------------------

    def alive(self) -> bool:
        return self._thread.is_alive() and all(
            f.observer is not None and f.observer.is_alive() for f in self._folders.values()
        )

    def health(self) -> dict[str, dict]:
        with self._cond:
            return {
                f.name: {
                    "alive": bool(f.observer and f.observer.is_alive()), "mode": f.mode, "degraded": f.degraded,
                    "restarts": f.restarts, "pending": len(f.pending), "ready": len(f.ready), "held": len(f.held),
                }
                for f in self._folders.values()
            }


class _OverflowTrigger(logging.Handler):
    """watchdog only logs an inotify queue overflow; we answer it with a rescan."""

    def __init__(self, watcher: Watcher):
        super().__init__(level=logging.WARNING)
        self.watcher = watcher

    def emit(self, record: logging.LogRecord) -> None:
        if "overflow" in record.getMessage().lower():
            self.watcher.rescan()
