"""Drop-folder watching: turn filesystem events into settled files, and settled files
into batch jobs.

A file counts as arrived when an event says it was written, moved in or created, and
then nothing about it (size, mtime, inode) changed for `settle_seconds`, and no writer
we saw open it still has it open. Events are only hints: a catch-up scan at start, a
periodic rescan and a rescan after an inotify queue overflow find whatever they miss.
One thread (the settle loop) owns all the bookkeeping; watchdog's threads only call
`touch`, which is O(1), so a slow job can never stall event delivery.

The watcher knows a source only through the watched-connector contract
(`ingestd.plugin.WatchedConnector`): its `WatchOptions`, its root, and `scan`, `snap`
and `taken`. It never opens a file itself; looking at one is the connector's business,
and so is remembering which files a finished job left in place.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

from watchdog.events import (
    DirCreatedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileClosedNoWriteEvent,
    FileDeletedEvent,
    FileMovedEvent,
    FileOpenedEvent,
    FileSystemEventHandler,
)

from ingestd._lib import logs
from ingestd.errors import ConfigError
from ingestd.jobs.lifecycle import JobsUnwritable
from ingestd.plugin.watched import WatchedConnector
from ingestd.runtime.observe import Observers, OverflowTrigger
from ingestd.runtime.queue import Busy

RETRY_MAX_SECONDS = 300.0  # longest wait before retrying a file whose job did not take it
GATHER_SECONDS = 0.01  # wait at most this long for files about to settle, so a burst is fewer jobs
SUPERVISE_SECONDS = 1.0  # how often each folder's observers and the folder itself are looked at
REPORTED_MAX = 10_000  # unsearchable folders remembered as already logged


@dataclass
class _Pending:
    due: float
    snap: Hashable | None
    opens: int = 0
    queued: bool = False
    looks: int = 0  # touches that looked at the file: only the latest one's snap is kept


@dataclass
class _Folder:
    """Watch state of one source."""

    name: str
    connector: WatchedConnector
    pending: dict[str, _Pending] = field(default_factory=dict)
    ready: dict[str, Hashable] = field(default_factory=dict)  # settled, in arrival order → snap
    held: dict[str, Hashable] = field(default_factory=dict)  # in a job → snap when queued
    observers: Observers | None = None
    problem: str | None = None  # "missing", "replaced" or "dead" until supervision mends it
    restarts: int = 0
    next_rescan: float = 0.0
    trigger: str = "watch"
    scan_dirs: set[str] = field(default_factory=set)  # folders that appeared, to scan at the next tick
    ready_since: float = 0.0
    retries: dict[str, int] = field(default_factory=dict)
    reported: set[str] = field(default_factory=set)

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
        self._next_supervise = 0.0
        self._thread = threading.Thread(target=self._loop, name="settle", daemon=True)
        self.log = logs.get("ingestd.watch")
        self._overflow = OverflowTrigger(self.rescan)

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
            self._stop_observers(folder)
        logging.getLogger("watchdog.observers.inotify_c").removeHandler(self._overflow)
        self._thread.join(timeout=10)

    def add(self, name: str, connector: WatchedConnector, trigger: str = "watch") -> None:
        """Watch a source's folder: observer first, then the catch-up scan."""
        problem = connector.watch_problem() if isinstance(connector, WatchedConnector) else \
            f'sources "{name}": connector {connector.kind!r} does not implement the watched-connector contract'
        if problem:
            raise ConfigError(problem)
        folder = _Folder(name=name, connector=connector, trigger=trigger)
        self._start_observers(folder)
        with self._cond:
            self._folders[name] = folder
            folder.next_rescan = 0.0  # catch-up now
            self._cond.notify_all()

    def remove(self, name: str) -> None:
        with self._cond:
            folder = self._folders.pop(name, None)
        if folder is not None:
            self._stop_observers(folder)

    def names(self) -> list[str]:
        with self._cond:
            return list(self._folders)

    def _start_observers(self, folder: _Folder) -> None:
        opts = folder.options
        folder.observers = Observers(folder.root, _Handler(self, folder.name), opts.poll, opts.settle_seconds,
                                     self.log.bind(source=folder.name))

    def _stop_observers(self, folder: _Folder) -> None:
        if folder.observers is not None:
            folder.observers.stop()

    # -- events (watchdog threads) ----------------------------------------------------

    def _on_event(self, name: str, event) -> None:
        if isinstance(event, (DirCreatedEvent, DirMovedEvent)):
            if event.is_synthetic:  # made up for a folder inside a tree whose top's own event came first
                return
            target = event.dest_path if isinstance(event, DirMovedEvent) else event.src_path
            self._queue_scan(name, os.fsdecode(target))
            return
        if event.is_directory:
            return
        if isinstance(event, FileMovedEvent):
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

    def _queue_scan(self, name: str, directory: str) -> None:
        """Scan a folder that appeared (made, or moved in). Not when it lies in one already
        waiting for its scan: that scan, still to come, finds it and what it holds. Without
        this, a tree moved in was walked again from every folder in it: O(files x depth)."""
        with self._cond:
            folder = self._folders.get(name)
            if folder is None or _within_any(directory, folder.scan_dirs):
                return
            folder.scan_dirs.add(directory)
            self._cond.notify_all()

    def touch(self, name: str, path: str, opened: int = 0, delay: float = 0.0) -> None:
        """Something happened to `path`: (re)start its quiet period (plus `delay`). The entry
        is made at once (a scan that meets it meanwhile leaves it be); the connector's look
        at the file happens outside the lock, and only the latest look is kept."""
        with self._cond:
            folder = self._folders.get(name)
            if folder is None or path in folder.held or not self._wanted(folder, path):
                return
            folder.ready.pop(path, None)  # settled, then written again: back to waiting
            entry = folder.pending.get(path)
            if entry is None:
                entry = folder.pending[path] = _Pending(due=0.0, snap=None)
            # an open changes nothing a snap would see, nor does a write while a writer we saw
            # open it still has it open: the close that follows is looked at
            look = opened == -1 or (opened == 0 and (entry.opens == 0 or delay > 0 or entry.snap is None))
            entry.opens = max(0, entry.opens + opened)
            entry.due = max(entry.due, time.monotonic() + folder.options.settle_seconds + delay)
            if look:
                entry.looks += 1
                ticket = entry.looks
            if not entry.queued:
                self._push(entry.due, name, path)
                entry.queued = True
        if not look:
            return
        snap = self._look_snap(folder, path)
        with self._cond:
            if folder.pending.get(path) is entry and entry.looks == ticket:
                entry.snap = snap

    def _look_snap(self, folder: _Folder, path: str) -> Hashable | None:
        try:
            return folder.connector.snap(path)
        except Exception:  # a stable value: the file settles, and its job says what is wrong
            self.log.exception("connector could not look at a file", source=folder.name)
            return ("unknown",)

    def forget(self, name: str, path: str) -> None:
        with self._cond:
            folder = self._folders.get(name)
            if folder is not None:
                folder.pending.pop(path, None)
                folder.retries.pop(path, None)

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
        wake = min(now + 1.0, self._next_supervise)
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
        if now >= self._next_supervise:
            self._next_supervise = now + SUPERVISE_SECONDS
            self._supervise_all()
        self._settle_due(now)
        self._scans(now)
        self._dispatch(time.monotonic())

    def _settle_due(self, now: float) -> None:
        for folder, path, entry in self._due(now):
            snap, taken = self._look(folder, path)
            with self._cond:
                self._settle_one(folder, path, entry, snap, taken, now)

    def _look(self, folder: _Folder, path: str) -> tuple[Hashable | None, bool]:
        """The connector's snap of `path` and whether a finished job already handled it. A
        connector that fails here (a full disk under its memory) costs a retry, never the loop."""
        snap = self._look_snap(folder, path)
        try:
            return snap, snap is not None and folder.connector.taken(path, snap)
        except Exception:
            self.log.exception("connector could not tell whether a file was taken", source=folder.name)
            return snap, False

    def _due(self, now: float) -> list[tuple[_Folder, str, _Pending]]:
        """Entries whose quiet period is over (each still pending until settled)."""
        out = []
        with self._cond:
            while self._heap and self._heap[0][0] <= now:
                _, _, name, path = heapq.heappop(self._heap)
                folder = self._folders.get(name)
                entry = folder.pending.get(path) if folder else None
                if entry is None:
                    continue
                if entry.due > now:  # touched again since this entry was queued
                    self._push(entry.due, name, path)
                    continue
                out.append((folder, path, entry))
        return out

    def _settle_one(self, folder: _Folder, path: str, entry: _Pending, snap, taken: bool, now: float) -> None:
        if folder.pending.get(path) is not entry or self._folders.get(folder.name) is not folder:
            return  # forgotten, or its source removed, meanwhile
        if entry.due > now:  # touched while we looked
            self._push(entry.due, folder.name, path)
        elif snap is None or taken:
            del folder.pending[path]  # gone, or a finished job already handled it as it is
            if snap is None:  # inotify no longer reports deletions: this is where one is noticed
                folder.retries.pop(path, None)
        elif snap != entry.snap or entry.opens > 0:
            entry.snap, entry.due = snap, now + folder.options.settle_seconds
            self._push(entry.due, folder.name, path)
        else:
            del folder.pending[path]
            if not folder.ready:
                folder.ready_since = now
            folder.ready[path] = snap

    def _scans(self, now: float) -> None:
        with self._cond:
            rescan_all, self._rescan_all = self._rescan_all, False
            work = []
            for folder in self._folders.values():
                dirs, folder.scan_dirs = folder.scan_dirs, set()
                if rescan_all or now >= folder.next_rescan:
                    folder.next_rescan = now + folder.options.rescan_seconds
                    dirs = [folder.root]
                if dirs and folder.problem != "missing":
                    work.append((folder, dirs))
        for folder, dirs in work:
            for directory in _outermost(dirs):
                for found in folder.connector.scan(directory):
                    if isinstance(found, str):
                        self._touch_from_scan(folder, found)
                    else:
                        self._report(folder, found)

    def _touch_from_scan(self, folder: _Folder, path: str) -> None:
        with self._cond:
            if path in folder.pending or path in folder.held or path in folder.ready:
                return
        self.touch(folder.name, path)

    def _report(self, folder: _Folder, failed) -> None:
        """A part of the tree the connector could not search: said once, not every rescan."""
        if failed.origin_uri in folder.reported:
            return
        if len(folder.reported) >= REPORTED_MAX:
            folder.reported.clear()
        folder.reported.add(failed.origin_uri)
        self.log.warning("part of the drop folder not searched", source=folder.name, item=failed.origin_uri,
                         code=failed.code.value, message=failed.message)

    # -- supervision --------------------------------------------------------------------

    def _supervise_all(self) -> None:
        with self._cond:
            folders = list(self._folders.values())
        for folder in folders:
            try:
                self._supervise(folder)
            except OSError as exc:  # could not start again yet: tried again next second
                folder.problem = folder.problem or "dead"
                self.log.error("watcher could not be restarted", source=folder.name, error=exc.strerror)

    def _supervise(self, folder: _Folder) -> None:
        """A deleted folder is reported; one made again, replaced, or whose observer died is
        watched afresh (and rescanned) within a second."""
        observers = folder.observers
        problem = observers.problem() if observers is not None else "dead"
        if problem is None:
            if folder.problem is not None:
                self.log.info("drop folder watched again", source=folder.name)
            folder.problem = None
            return
        if problem == "missing":
            if folder.problem != "missing":
                self.log.error("drop folder is missing; waiting for it to come back", source=folder.name,
                               path=folder.root)
            folder.problem = "missing"
            return
        folder.restarts += 1
        self.log.error("watcher restarting", source=folder.name, reason=problem, restarts=folder.restarts)
        folder.problem = problem
        self._stop_observers(folder)
        self._start_observers(folder)
        folder.problem = None
        with self._cond:
            folder.next_rescan = 0.0  # whatever happened meanwhile
            self._cond.notify_all()

    # -- jobs ---------------------------------------------------------------------------

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
                    folder.held[path] = folder.ready.pop(path)
                batches.append((folder, batch))
        for folder, batch in batches:
            try:
                self._submit(folder.name, folder.trigger, batch)
                folder.trigger = "watch"
            except Exception as exc:
                if not isinstance(exc, (Busy, JobsUnwritable)):  # the lifecycle logs an unwritable state dir
                    self.log.exception("could not queue a watch job", source=folder.name)
                with self._cond:
                    back = {path: folder.held.pop(path, None) for path in batch}
                    folder.ready = {**back, **folder.ready}

    def job_done(self, source: str, hint, ok: bool = True) -> None:
        """Release a finished job's files. One still there is looked at again: at once when
        it changed (replaced during the job), after a growing delay when its job did not
        succeed or it is still as it was (a full disk, or a connector that did not take it
        away, must not turn into a hot loop); never when the connector says a finished job
        already handled it as it is now (kept, refused for good, or left in place)."""
        if not hint:
            return
        with self._cond:
            folder = self._folders.get(source)
            if folder is None:
                return
            queued = {path: folder.held.pop(path, None) for path in hint}
        for path, before in queued.items():
            snap, taken = self._look(folder, path)
            if snap is None or taken:
                with self._cond:
                    folder.retries.pop(path, None)
                continue
            delay = 0.0
            if not ok or snap == before:
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
        """The settle loop runs and every folder is observed (or waiting for its folder)."""
        return self._thread.is_alive() and all(f.problem in (None, "missing") for f in self._folders.values())

    def health(self) -> dict[str, dict]:
        with self._cond:
            return {f.name: self._folder_health(f) for f in self._folders.values()}

    @staticmethod
    def _folder_health(f: _Folder) -> dict:
        obs = f.observers
        return {
            "alive": f.problem is None and obs is not None and obs.alive(), "problem": f.problem,
            "mode": obs.mode if obs else "none", "degraded": obs.degraded if obs else None,
            "open_check": bool(obs and obs.open_check), "restarts": f.restarts,
            "pending": len(f.pending), "ready": len(f.ready), "held": len(f.held),
        }


def _within_any(directory: str, folders: set[str]) -> bool:
    """Whether `directory` is one of `folders` or lies inside one: O(depth)."""
    while True:
        if directory in folders:
            return True
        parent = os.path.dirname(directory)
        if parent == directory:
            return False
        directory = parent


def _outermost(dirs) -> list[str]:
    """The folders to scan: none inside another of them (that one's scan covers it)."""
    out: list[str] = []
    for directory in sorted(set(dirs), key=lambda d: d.split(os.sep)):  # a folder, then all inside it
        if not out or not (directory == out[-1] or directory.startswith(out[-1] + os.sep)):
            out.append(directory)
    return out
