"""The text catalogue: which extractor, in which version, made which text from which bytes.

A row per `(source sha256, extractor, extractor version)`, in `documents.sqlite` beside
the documents: the text's own sha256 (it is a blob like any other), its size in
characters, its pages/sheets/slides and their spans, a language guess, and how it ended
(`ok`, or a typed error: `timeout`, `too_large`, `encrypted`, `unsupported`, `corrupt`).
Keyed by the source's bytes, not by the document: identical bytes are extracted once,
whatever documents carry them, and a document's text is found through its current
version's sha256.

`extraction` holds the extraction queue's durable state: `cursor` (the last version row
the queue has looked at: versions are only ever added, so their rowids are a log of
commits) and `seen:<extractor>` (the extractor version whose backlog is done).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ingestd._lib.sqlite import open_db, write_transaction
from ingestd._lib.times import now_iso

SCHEMA = """
CREATE TABLE IF NOT EXISTS texts (
    source_sha256 TEXT NOT NULL,
    extractor TEXT NOT NULL,
    extractor_version TEXT NOT NULL,
    status TEXT NOT NULL,
    text_sha256 TEXT,
    chars INTEGER,
    pages INTEGER,
    language TEXT,
    message TEXT,
    boundaries TEXT NOT NULL DEFAULT '[]',
    seconds REAL NOT NULL DEFAULT 0,
    extracted_at TEXT NOT NULL,
    PRIMARY KEY (source_sha256, extractor, extractor_version)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS extraction (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
"""

OK = "ok"


def create(db: sqlite3.Connection) -> None:
    """The tables, in one transaction; nothing when they are there (the migration step
    and a new state directory both come here)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        for statement in SCHEMA.split(";"):
            if statement.strip():
                db.execute(statement)
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


@dataclass
class TextRecord:
    source_sha256: str
    extractor: str
    extractor_version: str
    status: str  # "ok" or the typed error code
    text_sha256: str | None = None
    chars: int | None = None
    pages: int | None = None
    language: str | None = None
    message: str | None = None
    boundaries: list[list] = field(default_factory=list)  # [kind, index, start, end, label]
    seconds: float = 0.0
    extracted_at: str = ""

    @property
    def ok(self) -> bool:
        return self.status == OK


_COLUMNS = ("source_sha256, extractor, extractor_version, status, text_sha256, chars, pages, language, message, "
            "boundaries, seconds, extracted_at")


def _record(row) -> TextRecord:
    values = list(row)
    values[9] = json.loads(values[9] or "[]")
    return TextRecord(*values)


@dataclass(frozen=True)
class Pending:
    """A version the queue has to look at."""

    rowid: int
    doc_id: str
    source: str
    sha256: str
    mime: str
    size: int
    current: bool  # still the document's current version, and the document not deleted


class Texts:
    """The catalogue's text tables, through a connection of their own (the extraction
    queue writes from its own threads, never inside the store's commits)."""

    def __init__(self, state_dir: Path, *, write: bool = True):
        self.path = state_dir / "documents.sqlite"
        self._db = open_db(self.path)
        self._lock = threading.Lock()
        if write:
            create(self._db)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- reading ----------------------------------------------------------------------------

    def get(self, sha256: str, extractor: str, version: str) -> TextRecord | None:
        row = self._one(f"SELECT {_COLUMNS} FROM texts WHERE source_sha256=? AND extractor=? AND extractor_version=?",
                        (sha256, extractor, version))
        return _record(row) if row else None

    def latest(self, sha256: str, extractor: str) -> TextRecord | None:
        """The newest text this extractor made of these bytes, in any version."""
        row = self._one(f"SELECT {_COLUMNS} FROM texts WHERE source_sha256=? AND extractor=? "
                        "ORDER BY extracted_at DESC LIMIT 1", (sha256, extractor))
        return _record(row) if row else None

    def pending(self, after: int, limit: int) -> list[Pending]:
        """Versions committed after rowid `after`, oldest first."""
        rows = self._all(
            "SELECT v.rowid, v.doc_id, d.source, v.sha256, v.mime, v.size, "
            "(d.current_seq = v.seq AND d.deleted_at IS NULL) FROM versions v JOIN documents d ON d.doc_id = v.doc_id "
            "WHERE v.rowid > ? ORDER BY v.rowid LIMIT ?", (after, limit))
        return [Pending(r[0], r[1], r[2], r[3], r[4], r[5], bool(r[6])) for r in rows]

    def head(self) -> int:
        """The rowid of the newest version (0 with none)."""
        return self._one("SELECT COALESCE(MAX(rowid), 0) FROM versions", ())[0]

    def backlog(self, mime_types: Iterable[str]) -> Iterator[Pending]:
        """Every live document's current version of these MIME types (a backfill after an
        extractor's version changed, or `ingestd reextract`)."""
        last = ""
        wanted = json.dumps(sorted(set(mime_types)))
        while True:
            rows = self._all(
                "SELECT v.rowid, v.doc_id, d.source, v.sha256, v.mime, v.size FROM documents d "
                "JOIN versions v ON v.doc_id = d.doc_id AND v.seq = d.current_seq "
                "WHERE d.doc_id > ? AND d.deleted_at IS NULL AND v.mime IN (SELECT value FROM json_each(?)) "
                "ORDER BY d.doc_id LIMIT 500", (last, wanted))
            if not rows:
                return
            for r in rows:
                yield Pending(r[0], r[1], r[2], r[3], r[4], r[5], True)
            last = rows[-1][1]

    def state(self, key: str) -> str | None:
        row = self._one("SELECT value FROM extraction WHERE key=?", (key,))
        return row[0] if row else None

    def cursor(self) -> int:
        return int(self.state("cursor") or 0)

    def counts(self) -> dict[str, dict[str, int]]:
        """extractor → status → rows (for `ingestd plugins` and the docs' examples)."""
        out: dict[str, dict[str, int]] = {}
        for name, status, n in self._all("SELECT extractor, status, COUNT(*) FROM texts GROUP BY 1, 2", ()):
            out.setdefault(name, {})[status] = n
        return out

    # -- writing ----------------------------------------------------------------------------

    def record(self, record: TextRecord, cursor: int | None = None) -> None:
        self.record_all([record], cursor)

    def record_all(self, records: list[TextRecord], cursor: int | None = None) -> None:
        """Write results (each replacing an earlier one for the same key), and move the
        cursor with them, in one transaction."""
        stamp = now_iso()
        statements = []
        for r in records:
            r.extracted_at = r.extracted_at or stamp
            values = (r.source_sha256, r.extractor, r.extractor_version, r.status, r.text_sha256, r.chars, r.pages,
                      r.language, r.message, json.dumps(r.boundaries, ensure_ascii=False), r.seconds, r.extracted_at)
            statements.append((f"INSERT OR REPLACE INTO texts ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", values))
        self._write(statements + self._cursor_statement(cursor))

    def set_cursor(self, cursor: int) -> None:
        self._write(self._cursor_statement(cursor))

    def set_state(self, key: str, value: str) -> None:
        self._write([("INSERT OR REPLACE INTO extraction (key, value) VALUES (?, ?)", (key, value))])

    def forget_failures(self, extractor: str | None = None) -> int:
        """Drop typed failures (of one extractor, or all) so they are tried again."""
        with self._lock:
            sql = "DELETE FROM texts WHERE status != ?" + (" AND extractor = ?" if extractor else "")
            return self._db.execute(sql, (OK, extractor) if extractor else (OK,)).rowcount

    @staticmethod
    def _cursor_statement(cursor: int | None) -> list[tuple]:
        if cursor is None:
            return []
        # never backwards: two threads may finish out of order
        return [("INSERT INTO extraction (key, value) VALUES ('cursor', ?) ON CONFLICT(key) DO UPDATE SET "
                 "value = excluded.value WHERE CAST(excluded.value AS INTEGER) > CAST(value AS INTEGER)",
                 (str(cursor),))]

    def _write(self, statements: list[tuple]) -> None:
        with self._lock, write_transaction(self._db, "text catalogue"):
            for sql, args in statements:
                self._db.execute(sql, args)

    def _one(self, sql: str, args: tuple):
        rows = self._all(sql, args)
        return rows[0] if rows else None

    def _all(self, sql: str, args: tuple) -> list:
        with self._lock:
            try:
                return self._db.execute(sql, args).fetchall()
            except sqlite3.OperationalError as exc:
                if _no_text_tables(exc):  # a state read before its migration: nothing extracted yet
                    return []
                raise


def _no_text_tables(exc: sqlite3.OperationalError) -> bool:
    text = str(exc)
    return text.startswith("no such table") and ("texts" in text or "extraction" in text)


__all__ = ["Texts", "TextRecord", "Pending", "SCHEMA", "OK", "create"]
