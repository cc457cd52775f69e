"""The document store: content-addressed blobs plus one record per origin, with versions.

Blobs live at `blobs/sha256/<2 hex>/<64 hex>`, written once per distinct content.
Records live in SQLite (`documents.sqlite`, WAL, synchronous=FULL): a job's records are
committed in one transaction, after the blobs they name are flushed, so a crash never
leaves a record pointing at missing bytes.
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
from ingestd.errors import Code, NotFoundError, StoreError
from ingestd.store.enrich import CHUNK, HEAD, copy_hashing, detect_mime, read_head

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
CREATE INDEX IF NOT EXISTS documents_source ON documents(source);
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
    PRIMARY KEY (doc_id, seq)
);
CREATE INDEX IF NOT EXISTS versions_sha256 ON versions(sha256);
"""


def doc_id_for(source: str, identity: str) -> str:
    """Stable across runs and machines: the same origin always names the same document."""
    return hashlib.sha256(f"{source}\0{identity}".encode("utf-8", "surrogatepass")).hexdigest()[:32]


class Version(BaseModel):
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
        self._db = open_db(state_dir / "documents.sqlite")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()
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

    def commit(self, changes: list[Change], tombstones: list[tuple[str, str]] = ()) -> tuple[list[str], list[str]]:
        """Write records in one transaction; return the outcome of each change and tombstone.

        A change whose content equals the document's current version is 'unchanged': no
        new version, though a new origin URI or metadata (a rename) is recorded. A
        tombstone is 'deleted', or 'unchanged' when the document was already gone.
        """
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                done = self._apply_all(changes)
                gone = [self._tombstone(doc_id, job_id) for doc_id, job_id in tombstones]
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                full = getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
                raise StoreError(f"document store: {exc}", Code.DISK_FULL if full else Code.IO) from exc
        return done, gone

    def _apply_all(self, changes: list[Change]) -> list[str]:
        """One lookup for the whole batch, then bulk writes: per-row round trips were the
        largest cost of a small-file ingest."""
        current = self._current({c.doc_id for c in changes})
        results, versions, heads, renames = [], [], [], []
        stamp = now_iso()
        for c in changes:
            meta = json.dumps(c.metadata, ensure_ascii=False, default=str)
            seq, sha, deleted = current.get(c.doc_id, (0, None, None))
            if sha == c.blob.sha256 and deleted is None:
                renames.append((c.origin_uri, meta, c.doc_id, seq))
                results.append("unchanged")
                continue
            seq += 1
            versions.append((c.doc_id, seq, c.blob.sha256, c.blob.size, c.blob.mime, c.origin_uri,
                             c.source_modified_at, stamp, c.job_id, meta))
            heads.append((c.doc_id, c.source, c.origin_uri, seq))
            current[c.doc_id] = (seq, c.blob.sha256, None)
            results.append("ingested")
        self._db.executemany("UPDATE versions SET origin_uri=?, metadata=? WHERE doc_id=? AND seq=?", renames)
        self._db.executemany("UPDATE documents SET origin_uri=? WHERE doc_id=?", [(r[0], r[2]) for r in renames])
        self._db.executemany("INSERT INTO versions VALUES (?,?,?,?,?,?,?,?,?,?)", versions)
        self._db.executemany(
            "INSERT INTO documents (doc_id, source, origin_uri, current_seq) VALUES (?,?,?,?) "
            "ON CONFLICT(doc_id) DO UPDATE SET origin_uri=excluded.origin_uri, "
            "current_seq=excluded.current_seq, deleted_at=NULL, deleted_job=NULL",
            heads,
        )
        return results

    def _current(self, doc_ids: set[str]) -> dict[str, tuple]:
        found: dict[str, tuple] = {}
        ids = list(doc_ids)
        for start in range(0, len(ids), 500):
            # one statement whatever the batch size: `IN (?,?,…)` compiled and cached one
            # statement per distinct length, several MiB over a daemon's life
            rows = self._db.execute(
                "SELECT d.doc_id, d.current_seq, v.sha256, d.deleted_at FROM documents d JOIN versions v "
                "ON v.doc_id = d.doc_id AND v.seq = d.current_seq "
                "WHERE d.doc_id IN (SELECT value FROM json_each(?))",
                (json.dumps(ids[start:start + 500]),),
            ).fetchall()
            found.update((r[0], (r[1], r[2], r[3])) for r in rows)
        return found

    def _tombstone(self, doc_id: str, job_id: str) -> str:
        cur = self._db.execute(
            "UPDATE documents SET deleted_at=?, deleted_job=? WHERE doc_id=? AND deleted_at IS NULL",
            (now_iso(), job_id, doc_id),
        )
        return "deleted" if cur.rowcount else "unchanged"

    def get(self, doc_id: str) -> Document:
        with self._lock:
            head = self._db.execute(
                "SELECT source, origin_uri, current_seq, deleted_at, deleted_job FROM documents WHERE doc_id=?",
                (doc_id,),
            ).fetchone()
            if head is None:
                raise NotFoundError(f"no document {doc_id}")
            rows = self._db.execute(
                "SELECT seq, sha256, size, mime, origin_uri, source_modified_at, ingested_at, job_id, metadata "
                "FROM versions WHERE doc_id=? ORDER BY seq DESC",
                (doc_id,),
            ).fetchall()
        versions = {r[0]: _version(r) for r in rows}
        current = versions[head[2]]
        return Document(
            doc_id=doc_id, source=head[0], origin_uri=head[1], deleted_at=head[3], deleted_job=head[4],
            blob_path=str(self.blob_path(current.sha256)),
            versions=[v for seq, v in versions.items() if seq != head[2]],
            **current.model_dump(exclude={"origin_uri"}),
        )

    def count(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM documents").fetchone()[0]

    def totals(self) -> dict[str, tuple[int, int]]:
        """Per source: live documents and the bytes of their current versions. Reads every
        record (a few ms per 10,000): callers cache it."""
        with self._lock:
            rows = self._db.execute(
                "SELECT d.source, COUNT(*), COALESCE(SUM(v.size), 0) FROM documents d "
                "JOIN versions v ON v.doc_id = d.doc_id AND v.seq = d.current_seq "
                "WHERE d.deleted_at IS NULL GROUP BY d.source").fetchall()
        return {source: (count, size) for source, count, size in rows}


def _version(row) -> Version:
    return Version(
        sha256=row[1], size=row[2], mime=row[3], origin_uri=row[4], source_modified_at=row[5],
        ingested_at=row[6], job_id=row[7], metadata=json.loads(row[8]),
    )


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


__all__ = ["Store", "Document", "Version", "Blob", "Change", "doc_id_for"]
