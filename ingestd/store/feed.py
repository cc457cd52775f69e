"""The change feed: every change to a document, in commit order, readable from any point.

Each change (a document stored, updated, deleted, restored, or its permissions changed)
is a row in `changes`, written by the catalogue in the very transaction that changes the
document, so the feed and the documents never disagree, not even after a crash.

**Cursors, and why they are gapless.** A change's cursor comes from one counter row
(`feed.last`), advanced inside the committing transaction, never before it. SQLite has a
single writer and the catalogue opens its transactions with `BEGIN IMMEDIATE`, which takes
the write lock before the counter is read; the next transaction can allocate only after
this one has committed. So commit order is cursor order, and a reader that has seen
cursor C can never later find a change with a cursor ≤ C that it did not see.

A PostgreSQL backend keeps the same promise the same way: `UPDATE feed SET last = last + n
RETURNING last` in the committing transaction locks the row until commit, so writers of
changes commit one after the other in cursor order. A sequence (`nextval`, `serial`)
would break it: its numbers are handed out before commit, and transaction 42 can commit
(and be read) before transaction 41 does.

On the wire a cursor is a fixed-width, zero-padded decimal string (`0000000000000042`):
opaque to clients, yet ordered as strings. `0000000000000000` means "before the first
change". The counter lives in the database, so cursors survive restarts.

**Types**: `stored` (a document's first version), `updated` (a new version: new content,
or a metadata version with the same sha256), `deleted` (tombstoned), `restored` (a new
version of a tombstoned document; it carries that version), `acl_changed` (a permissions
version: the same bytes and origin, only the metadata's `permissions` changed). Later work
adds others (`text_extracted`): consumers must skip types they do not know.

**Retention**: `prune` removes changes older than `daemon.change_retention` and records
the last cursor it removed (`feed.expired`); a reader asking for changes after an older
cursor gets `CursorExpired`, and resyncs by listing the documents and following from
the cursor the listing returns (docs/change-feed.md).
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from typing import Annotated

from pydantic import Field

from ingestd._lib import logs
from ingestd._lib.times import Timestamp
from ingestd.errors import IngestdError, UsageError
from ingestd.store.readers import Readers

WIDTH = 16
FIRST = "0" * WIDTH  # before the first change
CURSOR_PATTERN = rf"^[0-9]{{{WIDTH}}}$"
TYPES = ("stored", "updated", "deleted", "restored", "acl_changed")
OTHERS_POLL = 1.0  # how often a waiter looks for commits made by another process
PRUNE_BATCH = 10_000  # changes removed per transaction, so pruning never holds the writer long

SCHEMA = """
CREATE TABLE IF NOT EXISTS changes (
    cursor INTEGER PRIMARY KEY,
    type TEXT NOT NULL,
    doc_id TEXT NOT NULL,
    source TEXT NOT NULL,
    origin_uri TEXT NOT NULL,
    version INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    mime TEXT NOT NULL,
    job_id TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS feed (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    last INTEGER NOT NULL,
    expired INTEGER NOT NULL
);
"""
START = "INSERT OR IGNORE INTO feed (id, last, expired) VALUES (1, 0, 0)"

_COLUMNS = "cursor, type, doc_id, source, origin_uri, version, sha256, size, mime, job_id, at"
_AS_JSON = ("json_object('cursor', printf('%0" + str(WIDTH) + "d', cursor), 'type', type, 'doc_id', doc_id, "
            "'source', source, 'origin_uri', origin_uri, 'version', version, 'sha256', sha256, 'size', size, "
            "'mime', mime, 'job_id', job_id, 'at', at)")
_CURSOR = re.compile(CURSOR_PATTERN)


# A plain dataclass, not a pydantic model: a page of 500 is built for every read, and model
# construction cost more than the whole query. The API publishes it as it is.
@dataclass(frozen=True, slots=True)
class FeedChange:
    """One change to a document. `type`: `stored` (its first version), `updated` (a new
    version: new content, or a metadata version with the same sha256), `deleted`
    (tombstoned; the version that was current), `restored` (back after a deletion; the new
    version), `acl_changed` (a permissions version: the same sha256 and origin, new
    `permissions` in the version's metadata). More types will come: skip those you do not
    know."""

    cursor: str
    type: Annotated[str, Field(description="what happened; skip a type you do not know (more will come)",
                               examples=list(TYPES))]
    doc_id: str
    source: str
    origin_uri: str
    version: int
    sha256: str
    size: int
    mime: str
    job_id: str
    at: Timestamp

    def as_dict(self) -> dict:
        return {name: getattr(self, name) for name in FIELDS}


FIELDS = tuple(f.name for f in fields(FeedChange))


@dataclass(frozen=True)
class Page:
    """Changes after a cursor, oldest first; `next_after` is where to read on from."""

    changes: list[FeedChange]
    next_after: str


@dataclass(frozen=True)
class JsonPage:
    """A `Page` whose changes are JSON objects already (one text each, fields as FeedChange)."""

    changes: list[str]
    next_after: str


class CursorExpired(IngestdError):
    """The changes right after this cursor are gone (retention), or the cursor is ahead
    of this store (a store restored from an older backup): the reader must resync."""

    def __init__(self, message: str, oldest: str):
        super().__init__(message)
        self.oldest = oldest  # the cursor from which the feed is complete


def format_cursor(n: int) -> str:
    return str(n).zfill(WIDTH)


def parse_cursor(text: str | None) -> int:
    """A client's cursor as a number; None (no cursor) is before the first change."""
    if text is None:
        return 0
    if not isinstance(text, str) or not _CURSOR.match(text):
        raise UsageError(f"malformed cursor: expected {WIDTH} digits, as a change's `cursor` or `next_after`")
    return int(text)


def append(db: sqlite3.Connection, rows: list[tuple]) -> list[int]:
    """Record changes inside the caller's write transaction (started with BEGIN
    IMMEDIATE); returns their cursors. Each row is the change's columns after `cursor`."""
    if not rows:
        return []
    last = db.execute("UPDATE feed SET last = last + ? WHERE id = 1 RETURNING last", (len(rows),)).fetchone()[0]
    cursors = list(range(last - len(rows) + 1, last + 1))
    db.executemany(f"INSERT INTO changes ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                   [(c, *row) for c, row in zip(cursors, rows)])
    return cursors


def change(cursor: int, row: tuple) -> FeedChange:
    """A change from its cursor and the columns after it (type, doc_id, …, at)."""
    return FeedChange(str(cursor).zfill(WIDTH), *row)


class Feed:
    """Reading the feed, and waiting for it to move.

    `wait` and `on_commit` are what followers build on (the API's long-poll, sinks, the
    CLI's `--follow`): the catalogue calls `published` once a commit that added changes
    has returned, which wakes waiters at once. A commit made by another process (a
    one-shot `ingestd ingest` beside the daemon) is seen within OTHERS_POLL."""

    def __init__(self, readers: Readers):
        self._readers = readers
        self._cond = threading.Condition()
        self._listeners: list[Callable[[int], None]] = []
        self.waiting = 0  # threads blocked in `wait` right now
        self._log = logs.get("ingestd.feed")
        self._head = self.head()

    # -- reading --------------------------------------------------------------------------

    def read(self, after: str | None, limit: int, sources: Iterable[str] | None = None) -> Page:
        """Up to `limit` changes after `after` (None: from the first), oldest first;
        only those of `sources` when given. Costs O(limit): the cursor is the primary key.
        Raises CursorExpired when changes after `after` were removed by retention."""
        rows, nxt = self._page(_COLUMNS, after, limit, sources)
        return Page([change(r[0], r[1:]) for r in rows], nxt)

    def read_json(self, after: str | None, limit: int) -> JsonPage:
        """`read`, with each change already a JSON object (text) made by SQLite: what the
        API sends, at a fraction of the cost of building and encoding objects here."""
        rows, nxt = self._page(f"cursor, {_AS_JSON}", after, limit, None)
        return JsonPage([r[1] for r in rows], nxt)

    def _page(self, columns: str, after: str | None, limit: int, sources) -> tuple[list[tuple], str]:
        position = parse_cursor(after)
        wanted = sorted(set(sources)) if sources is not None else None
        with self._readers.snapshot() as db:
            last, expired = db.execute("SELECT last, expired FROM feed WHERE id = 1").fetchone()
            check_position(position, last, expired)
            if wanted is None:
                rows = db.execute(f"SELECT {columns} FROM changes WHERE cursor > ? ORDER BY cursor LIMIT ?",
                                  (position, limit)).fetchall()
            else:
                rows = db.execute(f"SELECT {columns} FROM changes WHERE cursor > ? AND source IN "
                                  "(SELECT value FROM json_each(?)) ORDER BY cursor LIMIT ?",
                                  (position, json.dumps(wanted), limit)).fetchall()
        if len(rows) < limit:
            # everything up to the head was looked at: a filtered reader moves past the
            # changes of other sources instead of scanning them again next time
            nxt = max(last, position)
        else:
            nxt = rows[-1][0]
        return rows, format_cursor(nxt)

    def head(self) -> int:
        """The cursor of the last committed change (0 when there is none)."""
        with self._readers.snapshot() as db:
            return db.execute("SELECT last FROM feed WHERE id = 1").fetchone()[0]

    def check(self, after: str | None) -> None:
        """Raise CursorExpired (or UsageError) for a cursor `read` would refuse."""
        position = parse_cursor(after)
        with self._readers.snapshot() as db:
            last, expired = db.execute("SELECT last, expired FROM feed WHERE id = 1").fetchone()
        check_position(position, last, expired)

    # -- following ------------------------------------------------------------------------

    def published(self, last: int) -> None:
        """Called by the catalogue after a commit that added changes up to `last`."""
        with self._cond:
            if last <= self._head:
                return
            self._head = last
            self._cond.notify_all()
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(last)
            except Exception:
                self._log.exception("feed listener failed")

    def on_commit(self, listener: Callable[[int], None]) -> Callable[[], None]:
        """Call `listener(last_cursor)` after each commit that adds changes, from the
        committing thread (keep it quick: wake something up). Returns the unsubscriber."""
        with self._cond:
            self._listeners.append(listener)

        def cancel() -> None:
            with self._cond:
                if listener in self._listeners:
                    self._listeners.remove(listener)
        return cancel

    def latest(self) -> int:
        """The last cursor this process has seen committed (no database read)."""
        with self._cond:
            return self._head

    def wait(self, after: str | None, timeout: float) -> bool:
        """Block until a change after `after` is committed (True) or `timeout` passes
        (False). Woken by this process's commits at once; another process's are seen
        within OTHERS_POLL."""
        position = parse_cursor(after)
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            with self._cond:
                left = deadline - time.monotonic()
                if self._head <= position and left > 0:
                    self.waiting += 1
                    try:
                        self._cond.wait_for(lambda: self._head > position, timeout=min(left, OTHERS_POLL))
                    finally:
                        self.waiting -= 1
                if self._head > position:
                    return True
                if deadline - time.monotonic() <= 0:
                    return False
            self.poll_others()

    def poll_others(self) -> None:
        """Another process may have committed: take the head from the database (and
        wake whoever waits if it moved)."""
        try:
            last = self.head()
        except sqlite3.Error:
            return
        self.published(last)

    # -- retention ------------------------------------------------------------------------

    @staticmethod
    def prune_batch(db: sqlite3.Connection, cutoff: str) -> int:
        """Inside the caller's write transaction: remove up to PRUNE_BATCH of the oldest
        changes made before `cutoff` (an ISO time), and move `expired` past them; returns
        how many went. It stops at the first change still young: the feed stays one
        contiguous run of cursors (changes are in commit order, so near enough in time)."""
        expired = db.execute("SELECT expired FROM feed WHERE id = 1").fetchone()[0]
        upto = None
        for cursor, at in db.execute("SELECT cursor, at FROM changes WHERE cursor > ? ORDER BY cursor LIMIT ?",
                                     (expired, PRUNE_BATCH)):
            if at >= cutoff:
                break
            upto = cursor
        if upto is None:
            return 0
        removed = db.execute("DELETE FROM changes WHERE cursor > ? AND cursor <= ?", (expired, upto)).rowcount
        db.execute("UPDATE feed SET expired = ? WHERE id = 1", (upto,))
        return removed


def check_position(position: int, last: int, expired: int) -> None:
    """Raise CursorExpired for a position before the kept changes or after the head (any
    backend's feed: the cluster's reads judge cursors by the same rules)."""
    if position < expired:
        raise CursorExpired(
            f"the changes after cursor {format_cursor(position)} are no longer kept (daemon.change_retention); "
            f"resync: list GET /documents, then follow from the next_after it returns",
            format_cursor(expired))
    if position > last:
        raise CursorExpired(
            f"cursor {format_cursor(position)} is ahead of this store's feed (last {format_cursor(last)}): "
            "it comes from another store, or this one was restored from an older backup; resync: list "
            "GET /documents, then follow from the next_after it returns", format_cursor(expired))


__all__ = ["Feed", "FeedChange", "Page", "JsonPage", "CursorExpired", "append", "format_cursor", "parse_cursor",
           "FIRST", "TYPES", "WIDTH", "CURSOR_PATTERN", "check_position"]
