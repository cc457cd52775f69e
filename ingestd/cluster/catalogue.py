"""The catalogue in PostgreSQL: documents, append-only versions and the change feed,
written by fenced commits.

**Fenced.** A commit's first statement is `leases.check` (`FOR SHARE` on the source's
row, fence and lease as the committer holds them), so a holder that lost its source
writes nothing, and nobody can take the source over until the commit has ended.

**Gapless feed.** Cursors come from the one `feed` row, advanced by
`UPDATE … RETURNING last` at the end of the committing transaction. The row lock is held
until commit, so the next committer allocates only after this one's changes are visible:
commit order is cursor order, and a reader that has seen cursor C never later finds a
change ≤ C that it did not see. (A sequence would break this: `nextval` hands numbers out
before commit, so 42 can be read before 41 commits.) PostgreSQL releases row locks only
after the commit is visible to other sessions, which is what makes the order hold.

**Versions** follow the embedded store's rules: new bytes make a `content` version; the
same bytes under a new origin or metadata make a `metadata` version (the row before is
never rewritten); a document deleted at the source is tombstoned and comes back
`restored` with a new version.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ingestd._lib.times import iso, parse_iso
from ingestd.cluster import leases
from ingestd.cluster.feed import CHANNEL as CHANGES_CHANNEL
from ingestd.cluster.leases import Lease
from ingestd.errors import NotFoundError
from ingestd.store.catalogue import Change, Document, Listing, Version, listing_filter, pick_version
from ingestd.store.feed import format_cursor

TYPES = ("stored", "updated", "deleted", "restored")


@dataclass
class Committed:
    """An outcome per change (`ingested`, or `unchanged` content) and per tombstone
    (`deleted`, or `unchanged` when already gone), and the cursors the commit took."""

    outcomes: list[str] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)
    cursors: list[int] = field(default_factory=list)


@dataclass
class _Current:
    seq: int
    sha256: str
    size: int
    mime: str
    origin_uri: str
    metadata: dict
    deleted: bool


def commit(conn, lease: Lease, changes: list[Change], tombstones: list[tuple[str, str]] = (),
           also: Callable[[object, Committed], None] | None = None) -> Committed:
    """Write a job's records and their feed entries in one transaction, if `lease` still
    holds the source (else `LeaseLost`, and nothing is written). `also(cursor, outcomes)`
    writes what must land with them or not at all (the job's item records), in the same
    transaction, before the feed row is locked."""
    from psycopg.types.json import Jsonb

    out = Committed()
    with conn.transaction(), conn.cursor() as cur:
        leases.check(cur, lease)
        current = _current(cur, {c.doc_id for c in changes} | {d for d, _ in tombstones})
        cur.execute("SELECT now()")
        at = cur.fetchone()[0]
        versions, heads, feed = [], [], []
        for c in changes:
            outcome, entry = _apply(c, current.get(c.doc_id), versions, heads, Jsonb)
            out.outcomes.append(outcome)
            if entry is not None:  # a later change to the same document builds on this one
                feed.append(entry)
                current[c.doc_id] = _Current(entry[4], c.blob.sha256, c.blob.size, c.blob.mime, c.origin_uri,
                                             c.metadata, False)
        cur.executemany("INSERT INTO documents (doc_id, source, origin_uri, current_seq) VALUES (%s, %s, %s, %s) "
                        "ON CONFLICT (doc_id) DO UPDATE SET origin_uri = EXCLUDED.origin_uri, "
                        "current_seq = EXCLUDED.current_seq, deleted_at = NULL, deleted_job = NULL", heads)
        cur.executemany("INSERT INTO versions (doc_id, seq, kind, sha256, size, mime, origin_uri, "
                        "source_modified_at, ingested_at, job_id, metadata) "
                        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, now(), %s, %s)", versions)
        for doc_id, job_id in tombstones:
            now = current.get(doc_id)
            if now is None or now.deleted:
                out.gone.append("unchanged")
                continue
            cur.execute("UPDATE documents SET deleted_at = now(), deleted_job = %s WHERE doc_id = %s",
                        (job_id, doc_id))
            feed.append(("deleted", doc_id, lease.source, now.origin_uri, now.seq, now.sha256, now.size, now.mime,
                         job_id))
            now.deleted = True
            out.gone.append("deleted")
        if also is not None:
            also(cur, out)
        out.cursors = _append(cur, feed, at)
    return out


def _apply(c: Change, now: _Current | None, versions: list, heads: list, Jsonb) -> tuple[str, tuple | None]:
    """The version (if any) and feed entry (if any) one change makes."""
    sha, size, mime = c.blob.sha256, c.blob.size, c.blob.mime
    modified = parse_iso(c.source_modified_at) if c.source_modified_at else None
    if now is None:
        kind, seq, change, outcome = "content", 1, "stored", "ingested"
    elif now.deleted:
        kind, seq, change, outcome = "content", now.seq + 1, "restored", "ingested"
    elif now.sha256 != sha:
        kind, seq, change, outcome = "content", now.seq + 1, "updated", "ingested"
    elif now.origin_uri != c.origin_uri or now.metadata != c.metadata:
        kind, seq, change, outcome = "metadata", now.seq + 1, "updated", "unchanged"
    else:
        return "unchanged", None
    versions.append((c.doc_id, seq, kind, sha, size, mime, c.origin_uri, modified, c.job_id, Jsonb(c.metadata)))
    heads.append((c.doc_id, c.source, c.origin_uri, seq))
    return outcome, (change, c.doc_id, c.source, c.origin_uri, seq, sha, size, mime, c.job_id)


def _current(cur, doc_ids: set[str]) -> dict[str, _Current]:
    """Each document's current version, locked for this commit (`FOR UPDATE OF d`)."""
    if not doc_ids:
        return {}
    cur.execute("SELECT d.doc_id, d.current_seq, v.sha256, v.size, v.mime, v.origin_uri, v.metadata, "
                "d.deleted_at IS NOT NULL FROM documents d JOIN versions v "
                "ON v.doc_id = d.doc_id AND v.seq = d.current_seq WHERE d.doc_id = ANY(%s) FOR UPDATE OF d",
                (sorted(doc_ids),))
    return {r[0]: _Current(*r[1:]) for r in cur.fetchall()}


def _append(cur, feed: list[tuple], at) -> list[int]:
    """Allocate the entries' cursors (last in the transaction: the feed row stays locked
    only from here to the commit) and write them."""
    if not feed:
        return []
    cur.execute("UPDATE feed SET last = last + %s WHERE id = 1 RETURNING last", (len(feed),))
    last = cur.fetchone()[0]
    cursors = list(range(last - len(feed) + 1, last + 1))
    cur.executemany("INSERT INTO changes (cursor, type, doc_id, source, origin_uri, version, sha256, size, mime, "
                    "job_id, at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    [(n, *entry, at) for n, entry in zip(cursors, feed)])
    cur.execute("SELECT pg_notify(%s, %s)", (CHANGES_CHANNEL, str(last)))  # sent at commit: wakes long-polls
    return cursors


def changes_after(conn, after: int, limit: int = 500) -> list[dict]:
    """Changes with a cursor above `after`, oldest first."""
    rows = conn.execute("SELECT cursor, type, doc_id, source, origin_uri, version, sha256, size, mime, job_id, at "
                        "FROM changes WHERE cursor > %s ORDER BY cursor LIMIT %s", (after, limit)).fetchall()
    keys = ("cursor", "type", "doc_id", "source", "origin_uri", "version", "sha256", "size", "mime", "job_id", "at")
    return [{**dict(zip(keys, r)), "at": iso(r[-1])} for r in rows]


_VERSION = ("v.seq, v.kind, v.sha256, v.size, v.mime, v.origin_uri, v.source_modified_at, v.ingested_at, "
            "v.job_id, v.metadata")


def _version(row) -> Version:
    """A version from the columns of `_VERSION`, timestamps as the embedded store writes them."""
    return Version(version=row[0], kind=row[1], sha256=row[2], size=row[3], mime=row[4], origin_uri=row[5],
                   source_modified_at=iso(row[6]) if row[6] else None, ingested_at=iso(row[7]), job_id=row[8],
                   metadata=row[9] or {})


def document(conn, doc_id: str, blob_key) -> Document:
    """A document as the API serves it: its current version, provenance and history,
    newest first (`blob_key(sha256)` names where its bytes are). NotFoundError when unknown."""
    head = conn.execute("SELECT source, current_seq, deleted_at, deleted_job FROM documents WHERE doc_id = %s",
                        (doc_id,)).fetchone()
    if head is None:
        raise NotFoundError(f"document {doc_id} not found")
    rows = conn.execute(f"SELECT {_VERSION} FROM versions v WHERE v.doc_id = %s ORDER BY v.seq DESC",
                        (doc_id,)).fetchall()
    history = [_version(r) for r in rows]
    now = next(v for v in history if v.version == head[1])
    return Document(doc_id=doc_id, source=head[0], deleted_at=iso(head[2]) if head[2] else None,
                    deleted_job=head[3], blob_path=blob_key(now.sha256),
                    versions=[v for v in history if v.version != head[1]], **now.model_dump())


def listing(conn, blob_key, *, source: str | None = None, include_deleted: bool = False, limit: int = 100,
            after: str | None = None, feed_cursor: str | None = None) -> Listing:
    """A page of documents after doc_id `after`, in doc_id order, each with its current
    version, as the embedded store lists them. On the first page `feed_cursor` is the
    feed's head read by the same statement (one snapshot), so a consumer that follows the
    feed from it after listing misses nothing."""
    where, args = listing_filter(after, source, include_deleted, "%s")
    rows = conn.execute(
        "WITH f AS (SELECT last FROM feed WHERE id = 1) SELECT f.last, p.* FROM f LEFT JOIN LATERAL ("
        f"SELECT d.doc_id, d.source, d.deleted_at, d.deleted_job, {_VERSION} FROM documents d "
        "JOIN versions v ON v.doc_id = d.doc_id AND v.seq = d.current_seq "
        f"WHERE {' AND '.join(where)} ORDER BY d.doc_id LIMIT %s) p ON true ORDER BY p.doc_id",
        (*args, limit + 1)).fetchall()
    if feed_cursor is None:
        feed_cursor = format_cursor(rows[0][0])
    found = [r[1:] for r in rows if r[1] is not None]
    docs = [_summary(r, blob_key) for r in found[:limit]]
    return Listing(docs, docs[-1].doc_id if len(found) > limit else None, feed_cursor)


def _summary(row, blob_key) -> Document:
    doc_id, source, deleted_at, deleted_job = row[:4]
    now = _version(row[4:])
    return Document(doc_id=doc_id, source=source, deleted_at=iso(deleted_at) if deleted_at else None,
                    deleted_job=deleted_job, blob_path=blob_key(now.sha256), **now.model_dump())


def content(conn, doc_id: str, version: int | None) -> tuple[str, int, str, int, str]:
    """(sha256, size, mime, version, origin_uri) of a version's bytes: the current one, or
    number `version`. NotFoundError (no such document or version), Tombstoned (the
    current content of a deleted document)."""
    head = conn.execute("SELECT current_seq, deleted_at FROM documents WHERE doc_id = %s", (doc_id,)).fetchone()
    if head is not None:
        head = (head[0], iso(head[1]) if head[1] else None)
    seq, row = pick_version(doc_id, version, head, lambda n: conn.execute(
        "SELECT sha256, size, mime, origin_uri FROM versions WHERE doc_id = %s AND seq = %s", (doc_id, n)).fetchone())
    return row[0], row[1], row[2], seq, row[3]


def versions(conn, doc_id: str) -> list[dict]:
    rows = conn.execute("SELECT seq, kind, sha256, size, origin_uri, job_id FROM versions WHERE doc_id = %s "
                        "ORDER BY seq", (doc_id,)).fetchall()
    return [dict(zip(("version", "kind", "sha256", "size", "origin_uri", "job_id"), r)) for r in rows]
