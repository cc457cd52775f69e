"""The document store: content-addressed blobs plus one record per origin, with versions.

Blobs live at `blobs/sha256/<2 hex>/<64 hex>`, written once per distinct content.
Records live in SQLite (`documents.sqlite`, WAL, synchronous=FULL): a job's records are
committed in one transaction, after the blobs they name are flushed, so a crash never
leaves a record pointing at missing bytes. The same transaction appends what changed to
the change feed (`store.feed`), which is how consumers follow the store.

History is append-only: a version row, once written, is never rewritten. Content that
did not change but arrives with a new origin or metadata (a rename, an S3 rewrite of the
same bytes under a new version id) makes a *metadata version*: a new row whose content
fields (sha256, size, mime) repeat the previous one's, `kind = 'metadata'`.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from ingestd._lib.atomic import syncfs
from ingestd._lib.files import unlink_quietly
from ingestd._lib.sqlite import open_db
from ingestd._lib.times import Timestamp, now_iso
from ingestd.errors import Code, IngestdError, MigrationPending, NotFoundError, StoreError
from ingestd.store import feed as feed_mod
from ingestd.store.enrich import CHUNK, HEAD, copy_hashing, detect_mime, read_head
from ingestd.store.feed import Feed, FeedChange
from ingestd.store import upgrade
from ingestd.store.readers import Readers

SMALL_FILE = 1 << 20  # read whole, hash, then write only if the content is new

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
KINDS = ("content", "metadata")  # a version's kind; permissions versions (issue 19) will add one

def doc_id_for(source: str, identity: str) -> str:
    """Stable across runs and machines: the same origin always names the same document."""
    return hashlib.sha256(f"{source}\0{identity}".encode("utf-8", "surrogatepass")).hexdigest()[:32]


class Version(BaseModel):
    """One version of a document. `kind` is `content` (new bytes) or `metadata` (the same
    bytes as the version before, with a new origin or metadata)."""

    version: int = 0
    kind: str = "content"
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
    kind: str = "content"
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


class Tombstoned(IngestdError):
    """The document was deleted at its source: it has no current content (earlier
    versions stay readable by number)."""


class Store:
    def __init__(self, state_dir: Path):
        self.root = state_dir
        self.blob_root = state_dir / "blobs" / "sha256"
        self.tmp_dir = state_dir / "blobs" / "tmp"
        self.blob_root.mkdir(parents=True, exist_ok=True)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._made_dirs: set[str] = set()
        self._proc_fd = _probe_tmpfile(self.tmp_dir)
        self._db = _open(state_dir / "documents.sqlite")
        self.readers = Readers(state_dir / "documents.sqlite")
        self.feed = Feed(self.readers)

    def close(self) -> None:
        with self._lock:
            self._db.close()
        self.readers.close()
        if self._proc_fd is not None:
            os.close(self._proc_fd)
            self._proc_fd = None

    # -- blobs ------------------------------------------------------------------------

    def blob_path(self, sha256: str) -> Path:
        return self.blob_root / sha256[:2] / sha256

    def clean_temps(self) -> int:
        """Temp blobs left by a crash are garbage: their content was never committed."""
        removed = 0
        for entry in os.scandir(self.tmp_dir):
            os.unlink(entry.path)
            removed += 1
        return removed

    def put_file(self, src_fd: int, name: str, limit: int | None = None, size_hint: int | None = None) -> Blob:
        """Copy an open file into the store while hashing it; dedupe by content.

        Small files are read whole first, so content already in the store costs no write.
        """
        if size_hint is not None and size_hint <= SMALL_FILE:
            data = _read_all(src_fd, limit, size_hint)
            sha = hashlib.sha256(data).hexdigest()
            if not os.path.exists(self.blob_path(sha)):
                with self._unnamed() as blob:
                    _write_all(blob.fd, data)
                    blob.name_as(sha)
            return Blob(sha, len(data), detect_mime(data[:HEAD], name))
        with self._unnamed() as blob:
            sha, size, head = copy_hashing(src_fd, blob.fd, limit)
            blob.name_as(sha)
        return Blob(sha, size, detect_mime(head, name))

    def adopt(self, path: Path, sha256: str, size: int, name: str) -> Blob:
        """Move a file a connector already hashed (in the workspace) into the store."""
        mime = detect_mime(read_head(path), name)
        self._place(str(path), sha256)
        return Blob(sha256, size, mime)

    def place(self, path: Path, sha256: str) -> Path:
        """Move a file whose sha256 the caller computed (a derivative, such as extracted
        text) into the store; returns where it now is. The rename is made durable by the
        caller (an fsync of the returned path's directory) before a record names it."""
        self._place(str(path), sha256)
        return self.blob_path(sha256)

    def existing(self, sha256: str, name: str) -> Blob:
        """A blob already in the store, for a document re-pointed without new bytes
        (a renamed remote item); FileNotFoundError when the store does not hold it."""
        if len(sha256) != 64 or sha256.strip("0123456789abcdef"):
            raise FileNotFoundError(errno.ENOENT, "no such content in the blob store", sha256[:80])
        path = self.blob_path(sha256)
        return Blob(sha256, os.stat(path).st_size, detect_mime(read_head(path), name))

    def _unnamed(self) -> "_NewBlob":
        return _NewBlob(self)

    def _temp(self) -> tuple[int, str]:
        name = f"{os.getpid()}-{threading.get_ident()}-{os.urandom(6).hex()}"
        path = str(self.tmp_dir / name)
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640), path

    def _prefix_dir(self, sha256: str) -> Path:
        final = self.blob_path(sha256)
        prefix = sha256[:2]
        if prefix not in self._made_dirs:
            final.parent.mkdir(exist_ok=True)
            self._made_dirs.add(prefix)
        return final

    def _place(self, tmp: str, sha256: str) -> None:
        final = self._prefix_dir(sha256)
        if os.path.exists(final):
            unlink_quietly(tmp)
            return
        os.replace(tmp, final)

    def flush(self) -> None:
        """Make every blob written so far durable before records name them."""
        syncfs(self.root)

    # -- records ----------------------------------------------------------------------

    def commit(self, changes: list[Change], tombstones: list[tuple[str, str]] = ()) -> Committed:
        """Write records, and the feed entries for them, in one transaction.

        A change whose content, origin and metadata equal the document's current version
        is `unchanged`, with no new version; with the same content but a new origin or
        metadata it is `unchanged` content too, recorded as a metadata version. The feed's
        cursors are allocated here, inside the write transaction (see store/feed.py)."""
        stamp = now_iso()
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                done, rows = self._apply_all(changes, stamp)
                gone, gone_rows = [], []
                for doc_id, job_id in tombstones:
                    outcome, row = self._tombstone(doc_id, job_id, stamp)
                    gone.append(outcome)
                    gone_rows.append(row)
                entries = [r for r in rows + gone_rows if r is not None]
                allocated = feed_mod.append(self._db, entries)
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                full = getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
                raise StoreError(f"document store: {exc}", Code.DISK_FULL if full else Code.IO) from exc
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
                change_type, kind, blob = "updated", "metadata", (head.sha256, head.size, head.mime)
            seq = (head.seq if head else 0) + 1
            versions.append((c.doc_id, seq, *blob, c.origin_uri, c.source_modified_at, stamp, c.job_id, meta, kind))
            heads.append((c.doc_id, c.source, c.origin_uri, seq))
            current[c.doc_id] = _Head(seq, *blob, c.origin_uri, meta, None)
            results.append("ingested" if kind == "content" else "unchanged")
            rows.append((change_type, c.doc_id, c.source, c.origin_uri, seq, *blob, c.job_id, stamp))
        self._db.executemany("INSERT INTO versions (doc_id, seq, sha256, size, mime, origin_uri, source_modified_at, "
                             "ingested_at, job_id, metadata, kind) VALUES (?,?,?,?,?,?,?,?,?,?,?)", versions)
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
            blob_path=str(self.blob_path(current.sha256)),
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
        where, args = ["d.doc_id > ?"], [after or ""]
        if source is not None:
            where.append("d.source = ?")
            args.append(source)
        if not include_deleted:
            where.append("d.deleted_at IS NULL")
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
            if head is None:
                raise NotFoundError(f"no document {doc_id}")
            if version is None and head[1] is not None:
                raise Tombstoned(f"document {doc_id} was deleted at its source at {head[1]}; "
                                 "its earlier versions stay readable by number")
            seq = head[0] if version is None else version
            row = db.execute("SELECT sha256, size, mime, origin_uri FROM versions WHERE doc_id=? AND seq=?",
                             (doc_id, seq)).fetchone()
        if row is None:
            raise NotFoundError(f"document {doc_id} has no version {seq}")
        return Content(doc_id, seq, row[0], row[1], row[2], row[3], self.blob_path(row[0]))

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
            with self._lock:
                try:
                    self._db.execute("BEGIN IMMEDIATE")
                    batch = Feed.prune_batch(self._db, cutoff)
                    self._db.execute("COMMIT")
                except sqlite3.Error as exc:
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    raise StoreError(f"document store: {exc}") from exc
            removed += batch
            if batch < feed_mod.PRUNE_BATCH:
                return removed


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


_VERSION_COLUMNS = ("seq, kind, sha256, size, mime, origin_uri, source_modified_at, ingested_at, job_id, metadata")


def _version(row) -> Version:
    return Version(
        version=row[0], kind=row[1], sha256=row[2], size=row[3], mime=row[4], origin_uri=row[5],
        source_modified_at=row[6], ingested_at=row[7], job_id=row[8], metadata=json.loads(row[9]),
    )


def _open(path: Path) -> sqlite3.Connection:
    """The writer's connection, with the schema in place: created whole in a new
    catalogue; one written before the change feed must have been migrated (the state's
    step 4, store/upgrade.py), which every start does before the store opens."""
    if upgrade.needed(path):
        raise MigrationPending(f"{path}: the catalogue predates the change feed; run `ingestd migrate` "
                               "(starting the daemon does it) before using it")
    db = open_db(path)
    db.executescript(_SCHEMA + feed_mod.SCHEMA)  # no write when the tables are there
    if db.execute("SELECT 1 FROM feed WHERE id = 1").fetchone() is None:
        db.execute(feed_mod.START)
    return db


class _NewBlob:
    """A blob being written. It has no name until its hash is known: an O_TMPFILE inode
    linked into place, so a crash leaves nothing to clean and parallel writers do not
    queue on one temp directory. Where that is unavailable (no O_TMPFILE, no /proc), a
    named temp file and a rename do the same job."""

    def __init__(self, store: "Store"):
        self.store = store
        self.fd = -1
        self.tmp: str | None = None

    def __enter__(self) -> "_NewBlob":
        if self.store._proc_fd is not None:
            self.fd = os.open(self.store.tmp_dir, os.O_TMPFILE | os.O_WRONLY, 0o640)
        else:
            self.fd, self.tmp = self.store._temp()
        return self

    def name_as(self, sha256: str) -> None:
        if self.tmp is not None:
            os.close(self.fd)
            self.fd = -1
            self.store._place(self.tmp, sha256)
            self.tmp = None
            return
        final = self.store._prefix_dir(sha256)
        try:
            # linkat(AT_SYMLINK_FOLLOW) through /proc/self/fd names the unnamed inode
            os.link(str(self.fd), final, src_dir_fd=self.store._proc_fd, follow_symlinks=True)
        except FileExistsError:
            pass  # the same content, written by another job meanwhile

    def __exit__(self, *exc) -> None:
        if self.fd >= 0:
            os.close(self.fd)
        if self.tmp is not None:
            unlink_quietly(self.tmp)


def _probe_tmpfile(directory: Path) -> int | None:
    """The /proc/self/fd directory fd when unnamed temp files can be linked here, else None."""
    if not hasattr(os, "O_TMPFILE"):
        return None
    try:
        proc = os.open("/proc/self/fd", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    probe = directory / f".probe-{os.getpid()}-{os.urandom(4).hex()}"
    try:
        fd = os.open(directory, os.O_TMPFILE | os.O_WRONLY, 0o600)
        try:
            os.link(str(fd), probe, src_dir_fd=proc, follow_symlinks=True)
        finally:
            os.close(fd)
        os.unlink(probe)
        return proc
    except OSError:
        os.close(proc)
        return None


def _read_all(fd: int, limit: int | None, expected: int) -> bytes:
    """Read to the end. Asking for one byte more than expected usually gets the whole
    file in one read (a short read of a regular file is its end; a file that grew
    meanwhile just takes more reads, and the caller's re-check then refuses it)."""
    parts = []
    size = 0
    want = expected + 1
    while True:
        chunk = os.read(fd, want)
        want = CHUNK
        if not chunk:
            return b"".join(parts)
        size += len(chunk)
        if limit is not None and size > limit:
            raise ValueError(f"larger than the {limit}-byte limit")
        parts.append(chunk)
        if size == expected and len(parts) == 1:
            return chunk


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


__all__ = ["Store", "Document", "Version", "Blob", "Change", "Committed", "Content", "Listing", "Tombstoned",
           "doc_id_for"]
