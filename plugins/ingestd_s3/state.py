"""Per-source sync state: what each key looked like when it was last ingested, and which
objects were refused for good (archived, no file name) and are not to be reported again.

One SQLite file in the source's state directory, a row per key (ETag, size, LastModified,
version id, doc id), scoped by bucket so repointing a source never confuses two buckets.
A job reads it while staging: listed keys go to a temporary table, so unchanged objects
and vanished ones are found with indexed queries instead of a dict of every key in
memory. It is written in `finish`, in one transaction, after core has made the job's
documents durable; a crash before that only means the next run fetches again. The one
write while staging forgets the refusals of keys a complete listing no longer shows:
losing it costs at most one repeated report.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path

from ingestd.errors import Code, ConnectorError
from ingestd.plugin.kit import open_db

from .objects import Listed, Skip, Token

FILE = "s3-objects.sqlite"
LOOKUP_CHUNK = 500  # well under SQLite's bound-parameter limit

_SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    bucket TEXT NOT NULL,
    key TEXT NOT NULL,
    etag TEXT NOT NULL,
    size INTEGER NOT NULL,
    modified TEXT NOT NULL,
    version_id TEXT,
    doc_id TEXT,
    PRIMARY KEY (bucket, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS skips (
    bucket TEXT NOT NULL,
    key TEXT NOT NULL,
    etag TEXT NOT NULL,
    size INTEGER NOT NULL,
    modified TEXT NOT NULL,
    storage_class TEXT,
    code TEXT NOT NULL,
    PRIMARY KEY (bucket, key)
) WITHOUT ROWID;
"""


def _connect(path: Path) -> sqlite3.Connection:
    db = open_db(path)
    db.executescript(_SCHEMA)
    return db


class Snapshot:
    """The state as a job sees it while staging: read-only, plus the set of keys listed."""

    def __init__(self, directory: Path, bucket: str):
        self.bucket = bucket
        path = directory / FILE
        try:
            self._db = _connect(path)
        except sqlite3.DatabaseError as exc:
            raise ConnectorError(Code.IO, f"{path}: unreadable sync state ({exc}); move the file away and the "
                                          "next run compares every object again (content already stored is "
                                          "not duplicated)") from None
        self._db.execute("PRAGMA temp_store=FILE")
        self._db.execute("CREATE TEMP TABLE seen (key TEXT PRIMARY KEY) WITHOUT ROWID")
        self._db.execute("CREATE TEMP TABLE parked (key TEXT, etag TEXT, size INTEGER, modified TEXT, class TEXT)")
        self._any_skips = self._db.execute("SELECT 1 FROM skips WHERE bucket=? LIMIT 1", (bucket,)).fetchone()

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "Snapshot":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def known_count(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM objects WHERE bucket=?", (self.bucket,)).fetchone()[0]

    def observe(self, keys: list[str]) -> tuple[dict[str, Token], dict[str, Skip]]:
        """Record `keys` as present in the bucket; return the stored token of those known,
        and the remembered refusal of those refused before."""
        self._db.executemany("INSERT OR IGNORE INTO temp.seen (key) VALUES (?)", ((k,) for k in keys))
        known: dict[str, Token] = {}
        skipped: dict[str, Skip] = {}
        for start in range(0, len(keys), LOOKUP_CHUNK):
            chunk = keys[start:start + LOOKUP_CHUNK]
            for row in self._lookup("key, etag, size, modified, version_id FROM objects", chunk):
                known[row[0]] = Token(*row)
            if self._any_skips:
                for row in self._lookup("key, etag, size, modified, storage_class, code FROM skips", chunk):
                    skipped[row[0]] = Skip(*row)
        return known, skipped

    def _lookup(self, what: str, keys: list[str]):
        marks = ",".join("?" * len(keys))
        return self._db.execute(f"SELECT {what} WHERE bucket=? AND key IN ({marks})", (self.bucket, *keys))

    def park(self, obj: Listed) -> None:
        """Keep an object to fetch until the run is known to be allowed (disk, not memory)."""
        self._db.execute("INSERT INTO temp.parked VALUES (?,?,?,?,?)",
                         (obj.key, obj.etag, obj.size, obj.modified.isoformat(), obj.storage_class))

    def parked(self) -> Iterator[Listed]:
        for key, etag, size, modified, storage_class in self._db.execute("SELECT * FROM temp.parked ORDER BY rowid"):
            yield Listed(key, etag, size, datetime.fromisoformat(modified), storage_class)

    def vanished(self) -> list[str]:
        """Known keys the listing did not show: deleted at the source (or out of scope now)."""
        rows = self._db.execute(
            "SELECT key FROM objects o WHERE bucket=? AND NOT EXISTS (SELECT 1 FROM temp.seen s WHERE s.key=o.key)",
            (self.bucket,),
        )
        return [r[0] for r in rows]

    def forget_unlisted_skips(self) -> int:
        """After a complete listing: drop the refusals of keys no longer in the bucket."""
        if not self._any_skips:
            return 0
        return self._db.execute(
            "DELETE FROM skips WHERE bucket=? AND NOT EXISTS (SELECT 1 FROM temp.seen s WHERE s.key=skips.key)",
            (self.bucket,)).rowcount


def record(directory: Path, bucket: str, synced: Iterable[tuple[Token, str | None]], gone: Iterable[str],
           skipped: Iterable[Skip] = ()) -> int:
    """Store the tokens of objects now durable in the document store, forget the keys
    whose tombstones are, and remember refusals that hold until the object changes; one
    transaction. Returns the number of rows touched."""
    rows = [(bucket, t.key, t.etag, t.size, t.modified, t.version_id, doc_id) for t, doc_id in synced]
    dead = [(bucket, key) for key in gone]
    refused = [(bucket, s.key, s.etag, s.size, s.modified, s.storage_class, s.code) for s in skipped]
    if not rows and not dead and not refused:
        return 0
    db = _connect(directory / FILE)
    try:
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany("INSERT OR REPLACE INTO objects VALUES (?,?,?,?,?,?,?)", rows)
            db.executemany("DELETE FROM objects WHERE bucket=? AND key=?", dead)
            if db.execute("SELECT 1 FROM skips WHERE bucket=? LIMIT 1", (bucket,)).fetchone():
                db.executemany("DELETE FROM skips WHERE bucket=? AND key=?", [r[:2] for r in rows] + dead)
            db.executemany("INSERT OR REPLACE INTO skips VALUES (?,?,?,?,?,?,?)", refused)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
    finally:
        db.close()
    return len(rows) + len(dead) + len(refused)
