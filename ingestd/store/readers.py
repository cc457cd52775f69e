"""Connections for reading the catalogue, apart from the one that writes.

The writer's connection sits behind the store's lock for the length of each commit; a
listing, a document or a page of the feed read through it would queue behind every job's
commit (and hold up the next one). In WAL mode readers do not block the writer nor it
them, so each concurrent reader takes a connection of its own from here: one per reader
at a time, opened on demand, kept for the next one.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ingestd._lib.sqlite import open_db

KEEP = 8  # idle connections kept open; more concurrent readers open and close their own


class Readers:
    def __init__(self, path: Path):
        self.path = path
        self._idle: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False

    @contextmanager
    def snapshot(self) -> Iterator[sqlite3.Connection]:
        """A connection inside one read transaction: every statement sees the same
        committed state, however many commits happen meanwhile."""
        db = self._take()
        try:
            db.execute("BEGIN")
            yield db
        finally:
            try:
                if db.in_transaction:
                    db.execute("COMMIT")
                self._give(db)
            except sqlite3.Error:
                db.close()

    def _take(self) -> sqlite3.Connection:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        db = open_db(self.path, durable=False)
        db.execute("PRAGMA query_only=1")
        return db

    def _give(self, db: sqlite3.Connection) -> None:
        with self._lock:
            if not self._closed and len(self._idle) < KEEP:
                self._idle.append(db)
                return
        db.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for db in idle:
            db.close()
