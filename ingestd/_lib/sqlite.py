"""The one way ingestd opens a SQLite file: autocommit (transactions are explicit), shared
across threads behind the caller's own lock, WAL so readers never block the writer, and a
busy timeout so a second process waits instead of failing."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def open_db(path: Path, *, durable: bool = True) -> sqlite3.Connection:
    """`durable`: every commit reaches the disk before it returns (synchronous=FULL)."""
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    if durable:
        db.execute("PRAGMA synchronous=FULL")
    db.execute("PRAGMA busy_timeout=10000")
    return db
