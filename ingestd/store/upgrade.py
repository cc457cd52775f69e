"""Bringing a catalogue written by ingestd 0.1.0 up to the change feed.

What it does, in one SQLite transaction (so a kill at any instant leaves either the old
catalogue or the new one, never half of each), and nothing when it was done already:

- versions get their `kind` (every existing version is `content`);
- the listing indexes replace the old by-source index;
- the `changes` and `feed` tables are created, and the feed is backfilled with every
  existing document's history in the order it was ingested: `stored` for a first
  version, `updated` for each later one, `deleted` for a tombstone. A consumer starting
  at the first cursor replays the whole store and ends with exactly its live set.

0.1.0 kept no record of a tombstone that was later undone (a restore cleared it), so a
delete-and-restore from before the upgrade replays as an `updated`; nothing a consumer
needs to converge is missing.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from ingestd._lib.sqlite import open_db
from ingestd.store import feed as feed_mod

_INDEXES = """
DROP INDEX IF EXISTS documents_source;
CREATE INDEX IF NOT EXISTS documents_source_doc ON documents(source, doc_id);
CREATE INDEX IF NOT EXISTS documents_live ON documents(doc_id) WHERE deleted_at IS NULL;
CREATE INDEX IF NOT EXISTS documents_live_source ON documents(source, doc_id) WHERE deleted_at IS NULL;
"""

# Each document's versions, then its tombstone, each at the time it happened; times within
# one document are made non-decreasing (a clock set back between two jobs must not put
# version 2 before version 1), then everything is numbered in time order. Ties (a job
# commits many documents with one stamp) go by document, then version.
_BACKFILL = """
INSERT INTO changes (cursor, type, doc_id, source, origin_uri, version, sha256, size, mime, job_id, at)
SELECT row_number() OVER (ORDER BY t, doc_id, ord), type, doc_id, source, origin_uri, version,
       sha256, size, mime, job_id, at
FROM (
    SELECT max(at) OVER (PARTITION BY doc_id ORDER BY ord ROWS UNBOUNDED PRECEDING) AS t, *
    FROM (
        SELECT CASE WHEN v.seq = 1 THEN 'stored' ELSE 'updated' END AS type, v.doc_id, d.source,
               v.origin_uri, v.seq AS version, v.sha256, v.size, v.mime, v.job_id, v.ingested_at AS at,
               v.seq AS ord
        FROM versions v JOIN documents d ON d.doc_id = v.doc_id
        UNION ALL
        SELECT 'deleted', d.doc_id, d.source, d.origin_uri, d.current_seq, v.sha256, v.size, v.mime,
               coalesce(d.deleted_job, ''), d.deleted_at, d.current_seq + 1
        FROM documents d JOIN versions v ON v.doc_id = d.doc_id AND v.seq = d.current_seq
        WHERE d.deleted_at IS NOT NULL
    )
)
"""


def needed(path: Path) -> bool:
    """Whether the catalogue at `path` was written before the change feed."""
    if not path.exists():
        return False
    db = sqlite3.connect(path)
    try:
        return _old(db)
    finally:
        db.close()


def migrate(path: Path) -> int:
    """Migrate the catalogue at `path` (a no-op when it is current or absent); returns
    how many changes the backfill wrote."""
    if not path.exists():
        return 0
    db = open_db(path)
    try:
        db.execute("BEGIN IMMEDIATE")
        try:
            if not _old(db):
                db.execute("ROLLBACK")
                return 0
            if "kind" not in _columns(db, "versions"):
                db.execute("ALTER TABLE versions ADD COLUMN kind TEXT NOT NULL DEFAULT 'content'")
            for statement in _statements(_INDEXES + feed_mod.SCHEMA):  # executescript would commit
                db.execute(statement)
            written = db.execute(_BACKFILL).rowcount
            db.execute("INSERT INTO feed (id, last, expired) VALUES (1, (SELECT coalesce(max(cursor), 0) "
                       "FROM changes), 0)")
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return written
    finally:
        db.close()


def _old(db: sqlite3.Connection) -> bool:
    """A catalogue with documents but without the feed's row is from before it."""
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if "documents" not in tables:
        return False
    if "feed" not in tables:
        return True
    return db.execute("SELECT 1 FROM feed WHERE id = 1").fetchone() is None


def _columns(db: sqlite3.Connection, table: str) -> set[str]:
    return {r[1] for r in db.execute(f"PRAGMA table_info({table})")}


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]
