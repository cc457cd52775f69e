"""The document store: one record per origin, with versions, naming content-addressed
blobs (`store.blobs`).

Records live in SQLite (`documents.sqlite`, WAL, synchronous=FULL): a job's records are
committed in one transaction, after the blobs they name are flushed, so a crash never
leaves a record pointing at missing bytes. The same transaction appends what changed to
the change feed (`store.feed`), which is how consumers follow the store. The store
stores: what a file's bytes are (MIME type) is worked out by the pipeline before it gets
here.

History is append-only: a version row, once written, is never rewritten. Content that
did not change but arrives with a new origin or metadata (a rename, an S3 rewrite of the
same bytes under a new version id) makes a *metadata version*: a new row whose content
fields (sha256, size, mime) repeat the previous one's, `kind = 'metadata'`. When the only
thing that changed is the metadata's `permissions` (who may read the document, as a
source such as SharePoint reports them), it is a *permissions version*, `kind =
'permissions'`, and the feed says `acl_changed`; a version that changes permissions and
anything else with them is a metadata version (`updated`), so a consumer that skips
`acl_changed` misses nothing but permissions.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from pydantic import BaseModel, Field

from ingestd._lib.sqlite import open_db, write_transaction
from ingestd._lib.times import Timestamp, now_iso
from ingestd.errors import IngestdError, MigrationPending, NotFoundError, StateError, StoreError
from ingestd.store import feed as feed_mod
from ingestd.store import upgrade
from ingestd.store.blobs import Blobs
from ingestd.store.feed import Feed, FeedChange
from ingestd.store.readers import Readers
from ingestd.store.space import Space

_SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    doc_id TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    origin_uri TEXT NOT NULL,
    current_seq INTEGER NOT NULL,
    deleted_at TEXT,
    deleted_job TEXT
);
CREATE INDEX IF NOT EXISTS documents_source_doc ON documents(source, doc_id);
CREATE INDEX IF NOT EXISTS documents_live ON documents(doc_id) WHERE deleted_at IS NULL;
CREATE INDEX IF NOT EXISTS documents_live_source ON documents(source, doc_id) WHERE deleted_at IS NULL;
CREATE TABLE IF NOT EXISTS versions (
    doc_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    mime TEXT NOT NULL,
    origin_uri TEXT NOT NULL,
    source_modified_at TEXT,
    ingested_at TEXT NOT NULL,
    job_id TEXT NOT NULL,
    metadata TEXT NOT NULL,
    kind TEXT NOT NULL DEFAULT 'content',
    PRIMARY KEY (doc_id, seq)
);
CREATE INDEX IF NOT EXISTS versions_sha256 ON versions(sha256);
"""
KINDS = ("content", "metadata", "permissions")  # a version's kind
KIND_DESCRIPTION = ("content: new bytes; metadata: the same bytes, a new origin or metadata; "
                    "permissions: the same bytes and origin, new `permissions` only")

# Marks, made the first time one is written (so no state needs migrating for them, and a
# read-only command never creates them): files refused for want of space, and content
# `verify --repair` found damaged. Readers take a missing table for no marks.
_MARKS = (
    "CREATE TABLE IF NOT EXISTS space_refusals (doc_id TEXT PRIMARY KEY, size INTEGER NOT NULL, "
    "attempts INTEGER NOT NULL, last_at TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS damaged (sha256 TEXT PRIMARY KEY, reason TEXT NOT NULL, found_at TEXT NOT NULL)",
)


def doc_id_for(source: str, identity: str) -> str:
    """Stable across runs and machines: the same origin always names the same document."""
    return hashlib.sha256(f"{source}\0{identity}".encode("utf-8", "surrogatepass")).hexdigest()[:32]


class Version(BaseModel):
    """One version of a document. `kind` is `content` (new bytes), `metadata` (the same
    bytes as the version before, with a new origin or metadata) or `permissions` (the same
    bytes and origin; only the metadata's `permissions` changed)."""

    version: int = 0
    kind: str = Field("content", description=KIND_DESCRIPTION, examples=list(KINDS))
    sha256: str
    size: int
    mime: str
    origin_uri: str
    source_modified_at: Timestamp | None = None
    ingested_at: Timestamp
    job_id: str
    metadata: dict[str, Any] = {}


class Document(BaseModel):
    """A document as served by `ingestd document` and the API: current state + history."""

    doc_id: str
    source: str
    origin_uri: str
    version: int = 0
    kind: str = Field("content", description=KIND_DESCRIPTION, examples=list(KINDS))
    sha256: str
    size: int
    mime: str
    source_modified_at: Timestamp | None = None
    ingested_at: Timestamp
    job_id: str
    metadata: dict[str, Any] = {}
    deleted_at: Timestamp | None = None
    deleted_job: str | None = None
    blob_path: str
    damaged: str | None = None  # set by `ingestd verify --repair` when the current bytes are bad
    versions: list[Version] = []


@dataclass
class Blob:
    """Bytes already in the blob store, ready to be named by a record."""

    sha256: str
    size: int
    mime: str


@dataclass
class Change:
    """One record to write: a new version of a document (or a confirmation it is unchanged)."""

    doc_id: str
    source: str
    origin_uri: str
    blob: Blob
    job_id: str
    source_modified_at: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class Committed:
    """What one commit did: an outcome per change (`ingested`, or `unchanged` content) and
    per tombstone (`deleted`, or `unchanged` when already gone), and the feed entry each
    made (None when it made none). A metadata version is `unchanged` with an entry."""

    done: list[str]
    gone: list[str]
    changed: list[FeedChange | None]
    deleted: list[FeedChange | None]


@dataclass
class Listing:
    """A page of documents in doc_id order; `after` pages on (None on the last page).
    `feed_cursor` is the feed's last cursor when the listing's first page was read."""

    documents: list[Document]
    after: str | None
    feed_cursor: str


@dataclass(frozen=True)
class Content:
    """Where one version's bytes are, and what they are."""

    doc_id: str
    version: int
    sha256: str
    size: int
    mime: str
    origin_uri: str
    path: Path

    def open(self) -> BinaryIO:
        """The bytes, to stream (FileNotFoundError when the store has lost them)."""
        return open(self.path, "rb")


class Tombstoned(IngestdError):
    """The document was deleted at its source: it has no current content (earlier
    versions stay readable by number)."""


def listing_filter(after: str | None, source: str | None, include_deleted: bool, mark: str) -> tuple[list[str], list]:
    """The WHERE terms and arguments of a listing page, in any backend (`mark`: its
    placeholder, `?` or `%s`), over `documents d`."""
    where, args = [f"d.doc_id > {mark}"], [after or ""]
    if source is not None:
        where.append(f"d.source = {mark}")
        args.append(source)
    if not include_deleted:
        where.append("d.deleted_at IS NULL")
    return where, args


def pick_version(doc_id: str, version: int | None, head: tuple | None, row_for) -> tuple[int, tuple]:
    """Which version a content read serves, by the same rules in every backend: `head` is
    the document's (current_seq, deleted_at text) or None, `row_for(seq)` that version's
    (sha256, size, mime, origin_uri) or None. NotFoundError, or Tombstoned for the current
    content of a deleted document (earlier versions stay readable by number)."""
    if head is None:
        raise NotFoundError(f"no document {doc_id}")
    if version is None and head[1] is not None:
        raise Tombstoned(f"document {doc_id} was deleted at its source at {head[1]}; "
                         "its earlier versions stay readable by number")
    seq = head[0] if version is None else version
    row = row_for(seq)
    if row is None:
        raise NotFoundError(f"document {doc_id} has no version {seq}")
    return seq, row


class Store:
    def __init__(self, state_dir: Path, space: Space | None = None):
        self.root = state_dir
        self.blobs = Blobs(state_dir, space)
        self._lock = threading.Lock()
        self._db = _open(state_dir / "documents.sqlite")
        self._marked = False  # the mark tables exist (once seen, they stay)
        self.readers = Readers(state_dir / "documents.sqlite")
        self.feed = Feed(self.readers)

    def close(self) -> None:
        with self._lock:
            self._db.close()
        self.readers.close()
        self.blobs.close()

    def blob_path(self, sha256: str) -> Path:
        return self.blobs.path(sha256)

    def clean_temps(self) -> int:
        return self.blobs.clean_temps()

    @property
    def tmp_dir(self) -> Path:
        """Where files on their way into the store are written (same filesystem as blobs)."""
        return self.blobs.tmp_dir

    def place(self, path: Path, sha256: str) -> Path:
        """Move a file whose sha256 core computed (a derivative, such as extracted text)
        into the store; returns where it now is. The rename is made durable by the caller
        (an fsync of the returned path's directory) before a record names it."""
        return self.blobs.place(path, sha256)

    def flush(self) -> None:
        """Make every blob written so far durable before records name them."""
        self.blobs.flush()

    # -- records ----------------------------------------------------------------------

    def commit(self, changes: list[Change], tombstones: list[tuple[str, str]] = ()) -> Committed:
        """Write records, and the feed entries for them, in one transaction.

        A change whose content, origin and metadata equal the document's current version
        is `unchanged`, with no new version; with the same content but a new origin or
        metadata it is `unchanged` content too, recorded as a metadata version. The feed's
        cursors are allocated here, inside the write transaction (see store/feed.py)."""
        stamp = now_iso()
        with self._lock, self._transaction():
            done, rows = self._apply_all(changes, stamp)
            gone, gone_rows = [], []
            for doc_id, job_id in tombstones:
                outcome, row = self._tombstone(doc_id, job_id, stamp)
                gone.append(outcome)
                gone_rows.append(row)
            allocated = feed_mod.append(self._db, [r for r in rows + gone_rows if r is not None])
        cursors = iter(allocated)
        changed = [None if r is None else feed_mod.change(next(cursors), r) for r in rows]
        deleted = [None if r is None else feed_mod.change(next(cursors), r) for r in gone_rows]
        if allocated:
            self.feed.published(allocated[-1])  # after COMMIT: waiters must find the changes there
        return Committed(done, gone, changed, deleted)

    def _apply_all(self, changes: list[Change], stamp: str) -> tuple[list[str], list[tuple | None]]:
        """One lookup for the whole batch, then bulk writes: per-row round trips were the
        largest cost of a small-file ingest. Returns each change's outcome and feed row."""
        current = self._current({c.doc_id for c in changes})
        results, rows, versions, heads = [], [], [], []
        for c in changes:
            meta = json.dumps(c.metadata, ensure_ascii=False, default=str)
            head = current.get(c.doc_id)
            kind, blob = "content", (c.blob.sha256, c.blob.size, c.blob.mime)
            if head is None:
                change_type = "stored"
            elif head.deleted:
                change_type = "restored"
            elif head.sha256 != c.blob.sha256:
                change_type = "updated"
            elif head.origin_uri == c.origin_uri and _same_metadata(head.metadata, meta):
                results.append("unchanged")
                rows.append(None)
                continue
            else:  # same bytes, new origin or metadata: never rewrite the old row
                kind = "permissions" if _only_permissions(head, c.origin_uri, meta) else "metadata"
                change_type = "acl_changed" if kind == "permissions" else "updated"
                blob = (head.sha256, head.size, head.mime)
            seq = (head.seq if head else 0) + 1
            versions.append((c.doc_id, seq, *blob, c.origin_uri, c.source_modified_at, stamp, c.job_id, meta, kind))
            heads.append((c.doc_id, c.source, c.origin_uri, seq))
            current[c.doc_id] = _Head(seq, *blob, c.origin_uri, meta, None)
            results.append("ingested" if kind == "content" else "unchanged")
            rows.append((change_type, c.doc_id, c.source, c.origin_uri, seq, *blob, c.job_id, stamp))
        self._db.executemany("INSERT INTO versions (doc_id, seq, sha256, size, mime, origin_uri, source_modified_at, "
                             "ingested_at, job_id, metadata, kind) VALUES (?,?,?,?,?,?,?,?,?,?,?)", versions)
        self._clear_marks(changes)
        self._db.executemany(
            "INSERT INTO documents (doc_id, source, origin_uri, current_seq) VALUES (?,?,?,?) "
            "ON CONFLICT(doc_id) DO UPDATE SET origin_uri=excluded.origin_uri, "
            "current_seq=excluded.current_seq, deleted_at=NULL, deleted_job=NULL",
            heads,
        )
        return results, rows

    def _current(self, doc_ids: set[str]) -> dict[str, "_Head"]:
        found: dict[str, _Head] = {}
        ids = list(doc_ids)
        for start in range(0, len(ids), 500):
            # one statement whatever the batch size: `IN (?,?,…)` compiled and cached one
            # statement per distinct length, several MiB over a daemon's life
            rows = self._db.execute(
                "SELECT d.doc_id, d.current_seq, v.sha256, v.size, v.mime, v.origin_uri, v.metadata, d.deleted_at "
                "FROM documents d JOIN versions v ON v.doc_id = d.doc_id AND v.seq = d.current_seq "
                "WHERE d.doc_id IN (SELECT value FROM json_each(?))",
                (json.dumps(ids[start:start + 500]),),
            ).fetchall()
            found.update((r[0], _Head(*r[1:])) for r in rows)
        return found

    def _tombstone(self, doc_id: str, job_id: str, stamp: str) -> tuple[str, tuple | None]:
        row = self._db.execute(
            "UPDATE documents SET deleted_at=?, deleted_job=? WHERE doc_id=? AND deleted_at IS NULL "
            "RETURNING source, origin_uri, current_seq",
            (stamp, job_id, doc_id),
        ).fetchone()
        if row is None:
            return "unchanged", None
        source, origin, seq = row
        sha, size, mime = self._db.execute("SELECT sha256, size, mime FROM versions WHERE doc_id=? AND seq=?",
                                           (doc_id, seq)).fetchone()
        return "deleted", ("deleted", doc_id, source, origin, seq, sha, size, mime, job_id, stamp)

    # -- reading ----------------------------------------------------------------------

    def get(self, doc_id: str) -> Document:
        with self.readers.snapshot() as db:
            head = db.execute(
                "SELECT source, origin_uri, current_seq, deleted_at, deleted_job FROM documents WHERE doc_id=?",
                (doc_id,),
            ).fetchone()
            if head is None:
                raise NotFoundError(f"no document {doc_id}")
            rows = db.execute(
                f"SELECT {_VERSION_COLUMNS} FROM versions WHERE doc_id=? ORDER BY seq DESC", (doc_id,),
            ).fetchall()
        versions = {r[0]: _version(r) for r in rows}
        current = versions[head[2]]
        return Document(
            doc_id=doc_id, source=head[0], origin_uri=head[1], deleted_at=head[3], deleted_job=head[4],
            blob_path=str(self.blob_path(current.sha256)), damaged=self._damage(current.sha256),
            versions=[v for seq, v in versions.items() if seq != head[2]],
            **current.model_dump(exclude={"origin_uri"}),
        )

    def list(self, *, source: str | None = None, include_deleted: bool = False, limit: int = 100,
             after: str | None = None, feed_cursor: str | None = None) -> Listing:
        """A page of documents after doc_id `after`, in doc_id order (stable: ids never
        change), each with its current version. O(limit) through the indexes.

        `feed_cursor` is carried from the listing's first page to the next ones; on the
        first page it is the feed's head, read in the same snapshot as the page, so a
        consumer that follows the feed from it after listing misses nothing."""
        where, args = listing_filter(after, source, include_deleted, "?")
        with self.readers.snapshot() as db:
            if feed_cursor is None:
                feed_cursor = feed_mod.format_cursor(db.execute("SELECT last FROM feed WHERE id = 1").fetchone()[0])
            rows = db.execute(
                "SELECT d.doc_id, d.source, d.origin_uri, d.deleted_at, d.deleted_job, "
                f"{', '.join('v.' + c.strip() for c in _VERSION_COLUMNS.split(','))} "
                "FROM documents d JOIN versions v ON v.doc_id = d.doc_id AND v.seq = d.current_seq "
                f"WHERE {' AND '.join(where)} ORDER BY d.doc_id LIMIT ?",
                (*args, limit + 1),
            ).fetchall()
        docs = [self._summary(r) for r in rows[:limit]]
        return Listing(docs, docs[-1].doc_id if len(rows) > limit else None, feed_cursor)

    def _summary(self, row) -> Document:
        doc_id, source, origin, deleted_at, deleted_job = row[:5]
        current = _version(row[5:])
        return Document(doc_id=doc_id, source=source, deleted_at=deleted_at, deleted_job=deleted_job,
                        blob_path=str(self.blob_path(current.sha256)), **current.model_dump())

    def content(self, doc_id: str, version: int | None = None) -> Content:
        """Where a version's bytes are: the current one, or version number `version`.
        Raises NotFoundError (no such document or version) and Tombstoned (the current
        content of a deleted document)."""
        with self.readers.snapshot() as db:
            head = db.execute("SELECT current_seq, deleted_at FROM documents WHERE doc_id=?", (doc_id,)).fetchone()
            seq, row = pick_version(doc_id, version, head, lambda n: db.execute(
                "SELECT sha256, size, mime, origin_uri FROM versions WHERE doc_id=? AND seq=?", (doc_id, n)).fetchone())
        return Content(doc_id, seq, row[0], row[1], row[2], row[3], self.blob_path(row[0]))

    def _damage(self, sha256: str) -> str | None:
        with self._lock:
            if not self._has_marks():
                return None
            row = self._db.execute("SELECT reason FROM damaged WHERE sha256=?", (sha256,)).fetchone()
        return row[0] if row else None

    def recorded_size(self, sha256: str) -> int | None:
        """The size records give this content (measured when it was stored), if any names it."""
        with self._lock:
            row = self._db.execute("SELECT size FROM versions WHERE sha256=? LIMIT 1", (sha256,)).fetchone()
        return row[0] if row else None

    def count(self) -> int:
        with self.readers.snapshot() as db:
            return db.execute("SELECT COUNT(*) FROM documents").fetchone()[0]

    def totals(self) -> dict[str, tuple[int, int]]:
        """Per source: live documents and the bytes of their current versions. Reads every
        record (a few ms per 10,000) on a read connection, so commits go on: callers cache it."""
        with self.readers.snapshot() as db:
            rows = db.execute(
                "SELECT d.source, COUNT(*), COALESCE(SUM(v.size), 0) FROM documents d "
                "JOIN versions v ON v.doc_id = d.doc_id AND v.seq = d.current_seq "
                "WHERE d.deleted_at IS NULL GROUP BY d.source").fetchall()
        return {source: (count, size) for source, count, size in rows}

    # -- the feed's upkeep --------------------------------------------------------------

    def prune_changes(self, cutoff: str) -> int:
        """Remove feed entries made before `cutoff` (an ISO time), a batch per transaction
        so commits are never held up for long; returns how many went."""
        removed = 0
        while True:
            with self._lock, self._transaction():
                batch = Feed.prune_batch(self._db, cutoff)
            removed += batch
            if batch < feed_mod.PRUNE_BATCH:
                return removed

    # -- marks: files refused for want of space, content found damaged ---------------

    def note_refusals(self, refused: list[tuple[str, int]]) -> list[int]:
        """Count one more space refusal of each (doc_id, size); returns each one's attempts
        so far. Another size is another file, whose count starts again."""
        stamp, out = now_iso(), []
        with self._lock, self._transaction():
            self._make_marks()
            for doc_id, size in refused:
                row = self._db.execute("SELECT size, attempts FROM space_refusals WHERE doc_id=?", (doc_id,)).fetchone()
                attempts = row[1] + 1 if row and row[0] == size else 1
                self._db.execute(
                    "INSERT INTO space_refusals VALUES (?,?,?,?) ON CONFLICT(doc_id) DO UPDATE SET "
                    "size=excluded.size, attempts=excluded.attempts, last_at=excluded.last_at",
                    (doc_id, size, attempts, stamp))
                out.append(attempts)
        return out

    def mark_damaged(self, sha256: str, reason: str) -> None:
        """Content whose blob `verify --repair` took away: every version naming it says so
        until the same bytes are stored again."""
        with self._lock, self._transaction():
            self._make_marks()
            self._db.execute("INSERT OR REPLACE INTO damaged VALUES (?,?,?)", (sha256, reason, now_iso()))

    def _clear_marks(self, changes: list[Change]) -> None:
        """Stored at last: a refusal count ends; damaged content is whole again. One
        statement each per commit (another process, `verify --repair` or a one-shot, may
        have written the marks)."""
        if not self._has_marks():
            return
        self._db.execute("DELETE FROM space_refusals WHERE doc_id IN (SELECT value FROM json_each(?))",
                         (json.dumps([c.doc_id for c in changes]),))
        self._db.execute("DELETE FROM damaged WHERE sha256 IN (SELECT value FROM json_each(?))",
                         (json.dumps(list({c.blob.sha256 for c in changes})),))

    def _make_marks(self) -> None:
        for statement in _MARKS:
            self._db.execute(statement)
        self._marked = True

    def _has_marks(self) -> bool:
        """Call with the lock held. One look at the schema per call until they exist."""
        if not self._marked:
            self._marked = self._db.execute(
                "SELECT COUNT(*) FROM sqlite_master WHERE type='table' AND name IN ('space_refusals', 'damaged')"
            ).fetchone()[0] == 2
        return self._marked

    def _transaction(self):
        return write_transaction(self._db, "document store")

    # -- for `ingestd verify` ---------------------------------------------------------

    def check_database(self) -> list[str]:
        """SQLite's own consistency check of the catalogue file; empty when sound."""
        with self._lock:
            rows = [r[0] for r in self._db.execute("PRAGMA quick_check").fetchall()]
        return [] if rows == ["ok"] else rows

    def versions(self, batch: int = 1000) -> Iterator[tuple[str, int, str, int, bool]]:
        """Every version as (sha256, size, doc_id, seq, is_current), by content."""
        last: tuple = ("", "", -1)
        while True:
            with self._lock:
                rows = self._db.execute(
                    "SELECT v.sha256, v.size, v.doc_id, v.seq, d.current_seq = v.seq FROM versions v "
                    "JOIN documents d ON d.doc_id = v.doc_id WHERE (v.sha256, v.doc_id, v.seq) > (?, ?, ?) "
                    "ORDER BY v.sha256, v.doc_id, v.seq LIMIT ?", (*last, batch)).fetchall()
            if not rows:
                return
            for row in rows:
                yield row[0], row[1], row[2], row[3], bool(row[4])
            last = (rows[-1][0], rows[-1][2], rows[-1][3])


@dataclass
class _Head:
    """A document's current version, as a commit compares against it."""

    seq: int
    sha256: str
    size: int
    mime: str
    origin_uri: str
    metadata: str
    deleted: str | None


def _same_metadata(stored: str, new: str) -> bool:
    return stored == new or json.loads(stored) == json.loads(new)


def _only_permissions(head: "_Head", origin_uri: str, new: str) -> bool:
    """Whether a same-bytes change differs from the current version in its metadata's
    `permissions` alone: a permissions version (`acl_changed`)."""
    if head.origin_uri != origin_uri:
        return False
    stored, meta = json.loads(head.metadata), json.loads(new)
    if stored.get("permissions") == meta.get("permissions"):
        return False
    stored.pop("permissions", None)
    meta.pop("permissions", None)
    return stored == meta


_VERSION_COLUMNS = ("seq, kind, sha256, size, mime, origin_uri, source_modified_at, ingested_at, job_id, metadata")


def _version(row) -> Version:
    return Version(
        version=row[0], kind=row[1], sha256=row[2], size=row[3], mime=row[4], origin_uri=row[5],
        source_modified_at=row[6], ingested_at=row[7], job_id=row[8], metadata=json.loads(row[9]),
    )


def _open(path: Path) -> sqlite3.Connection:
    """The writer's connection, with the schema in place: created whole in a new
    catalogue; one written before the change feed must have been migrated (the state's
    step 4, store/upgrade.py), which every start does before the store opens. A file
    that is not a database stops the start with one line (StateError), not a traceback."""
    try:
        if upgrade.needed(path):
            raise MigrationPending(f"{path}: the catalogue predates the change feed; run `ingestd migrate` "
                                   "(starting the daemon does it) before using it")
        db = open_db(path)
        db.executescript(_SCHEMA + feed_mod.SCHEMA)  # no write when the tables are there
        if db.execute("SELECT 1 FROM feed WHERE id = 1").fetchone() is None:
            db.execute(feed_mod.START)
    except sqlite3.OperationalError as exc:
        raise StoreError(f"{path}: cannot open the document store: {exc}") from None
    except sqlite3.DatabaseError as exc:
        raise StateError(damaged_message(path, exc)) from None
    return db


def damaged_message(path: Path, exc: Exception) -> str:
    return (f"{path} is damaged ({exc}); ingestd stops rather than write to it: restore it from a backup, "
            "or move it aside to start an empty catalogue (its blobs stay), then run `ingestd verify`")


__all__ = ["Store", "Document", "Version", "Blob", "Change", "Committed", "Content", "Listing", "Tombstoned",
           "doc_id_for"]
