"""The one way ingestd opens a SQLite file: autocommit (transactions are explicit), shared
across threads behind the caller's own lock, WAL so readers never block the writer, and a
busy timeout so a second process waits instead of failing."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ingestd.errors import Code, StoreError


def open_db(path: Path, *, durable: bool = True) -> sqlite3.Connection:
    """`durable`: every commit reaches the disk before it returns (synchronous=FULL)."""
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    if durable:
        db.execute("PRAGMA synchronous=FULL")
    db.execute("PRAGMA busy_timeout=10000")
    return db


@contextmanager
def write_transaction(db: sqlite3.Connection, what: str) -> Iterator[None]:
    """BEGIN IMMEDIATE … COMMIT, rolled back on any SQLite error, which becomes a StoreError
    naming `what` (disk_full when SQLite says the disk is, else io)."""
    try:
        db.execute("BEGIN IMMEDIATE")
        yield
        db.execute("COMMIT")
    except sqlite3.Error as exc:
        if db.in_transaction:
            db.execute("ROLLBACK")
        full = getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
        raise StoreError(f"{what}: {exc}", Code.DISK_FULL if full else Code.IO) from exc
