"""The filesystem observers behind one watched folder, and how their health is judged.

inotify (or polling, with `poll = true`) reports what changed. Polling cannot see who
has a file open, so a polled folder also gets an inotify observer for open and close
events only: local writers that pause with the file open are still waited for. On a
network mount a writer on another machine makes no local events; that limit remains
(see docs/operations.md).

An observer whose emitter died is alive in name only: watchdog keeps its thread running
when the watched folder is deleted, but nothing is reported any more. `Observers.problem`
looks at the emitters and at the folder itself (deleted, or replaced by another), so the
watcher can say so and start again within seconds.
"""

from __future__ import annotations

import errno
import logging
import os
import stat

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
)
from watchdog.observers import Observer
from watchdog.observers.polling import PollingObserver

# What the watcher acts on when polling. Leaving out the directory-modified events watchdog
# makes up for every file created, deleted or moved (its parent "changed") halves the events a
# burst puts through watchdog's threads, which compete with ingestion for the GIL.
EVENTS = [FileCreatedEvent, FileModifiedEvent, FileMovedEvent, FileDeletedEvent, FileOpenedEvent,
          FileClosedEvent, FileClosedNoWriteEvent, DirCreatedEvent, DirMovedEvent]
# With inotify, the event list is also the kernel's mask (watchdog builds it from the list), so
# what is left out is never queued, read or turned into objects. Only what can announce a new or
# changed file, or a writer still at work, is asked for: IN_CREATE and IN_MOVED_TO (files, and
# folders to watch and scan), IN_MOVED_FROM (pairs renames inside the tree), IN_CLOSE_WRITE (a
# write ended), IN_OPEN with IN_CLOSE_NOWRITE (a writer that pauses with the file open is waited
# for; a reader's open is balanced by its close), IN_DELETE_SELF (the folder went). Left out:
# IN_MODIFY (every write of every writer: the quiet period, the snap compared when it ends and
# IN_CLOSE_WRITE already cover writes), IN_ATTRIB (the daemon's own link of each file into
# processed/; a mode or owner change is not a new version) and IN_DELETE (the daemon's own unlink
# of each original; a pending file that goes is found gone when its quiet period ends).
INOTIFY_EVENTS = [FileCreatedEvent, FileMovedEvent, FileOpenedEvent, FileClosedEvent, FileClosedNoWriteEvent,
                  DirCreatedEvent, DirMovedEvent]
OPEN_EVENTS = [FileOpenedEvent, FileClosedEvent, FileClosedNoWriteEvent]
_LIMITS = (errno.ENOSPC, errno.EMFILE)


class Observers:
    """The observer(s) of one folder: started together, judged together, stopped together."""

    def __init__(self, root: str, handler, poll: bool, settle_seconds: float, log):
        self.root, self.log = root, log
        self.mode = "polling" if poll else "inotify"
        self.degraded: str | None = None
        self.open_check = not poll  # inotify sees opens itself
        self._running: list = []
        self.identity = _identity(root)
        if poll:
            self._start(PollingObserver(timeout=min(1.0, max(0.1, settle_seconds))), handler, EVENTS)
            self._start_open_check(handler)
        else:
            self._start_inotify(handler)

    def _start(self, observer, handler, events) -> None:
        observer.schedule(handler, self.root, recursive=True, event_filter=events)
        observer.start()
        self._running.append(observer)

    def _start_inotify(self, handler) -> None:
        try:
            self._start(Observer(), handler, INOTIFY_EVENTS)
        except OSError as exc:
            if exc.errno not in _LIMITS:
                raise
            # the inotify watch or instance limit: keep working, loudly, by polling
            self.degraded = (f"inotify limit reached ({exc.strerror}); raise fs.inotify.max_user_watches "
                             "or max_user_instances; polling meanwhile")
            self.log.error("watch limit reached; falling back to polling", error=exc.strerror)
            self.mode, self.open_check = "polling", False
            self._start(PollingObserver(timeout=1.0), handler, EVENTS)

    def _start_open_check(self, handler) -> None:
        try:
            self._start(Observer(), handler, OPEN_EVENTS)
            self.open_check = True
        except OSError as exc:
            self.log.warning("polling without the open-writer check: inotify is not available here",
                             error=exc.strerror)

    def stop(self) -> None:
        for observer in self._running:
            observer.stop()
        for observer in self._running:
            observer.join(timeout=5)

    def alive(self) -> bool:
        return all(o.is_alive() and all(e.is_alive() for e in o.emitters) for o in self._running)

    def problem(self) -> str | None:
        """None while the folder is watched as it should be; otherwise what is wrong."""
        now = _identity(self.root)
        if now is None:
            return "missing"
        if now != self.identity:
            return "replaced"
        if not self.alive():
            return "dead"
        return None


def _identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISDIR(st.st_mode) else None


class OverflowTrigger(logging.Handler):
    """watchdog only logs an inotify queue overflow; we answer it with a rescan."""

    def __init__(self, rescan):
        super().__init__(level=logging.WARNING)
        self.rescan = rescan

    def emit(self, record: logging.LogRecord) -> None:
        if "overflow" in record.getMessage().lower():
            self.rescan()
