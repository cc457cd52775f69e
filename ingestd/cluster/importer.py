"""`ingestd cluster import --from STATE_DIR`: an embedded store moved into a cluster.

The import runs in phases, in an order that keeps every reference whole (a version's
blob is in S3 before the version is in the database; a job's source row before the job):
blobs, documents with their versions, the change feed, sources with their sync state,
jobs, then a verification. Each phase works in batches, and each batch commits its rows
**and** its place in the phase (the `cluster_import` row) in one transaction, so a kill
at any instant loses at most the batch in flight, and a re-run starts from the last
place recorded. Rows are written `ON CONFLICT DO NOTHING` as well, so even a batch
replayed twice adds nothing twice; blobs are content-addressed (a blob written before a
kill is found there: a 412, or a HEAD in stores without conditional writes).

What is carried as it is: document ids, version numbers, times, job ids and manifests,
and the feed's cursors (a consumer of the embedded feed carries on from its cursor
against the cluster). What changes: a job that was live on the embedded host (a daemon
killed mid-job) is recorded `failed`/`interrupted`, as the daemon's own recovery would.

The progress row is the import's own bookkeeping, created by the first import into a
database; it records where the cluster came from and stays as that record.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ingestd._lib.times import now_iso, parse_iso
from ingestd._lib.version import VERSION
from ingestd.cluster import items, schema, sync_state
from ingestd.cluster import verify as cluster_verify
from ingestd.cluster.blobs import BlobStore
from ingestd.cluster.embedded import Embedded
from ingestd.config import SOURCE_NAME
from ingestd.errors import Code, IngestdError
from ingestd.jobs.manifest import JobError, Manifest

BATCH = 500  # rows (documents, changes) or jobs per transaction
BLOB_BATCH = 50  # blobs between two progress records
UPLOADERS = 8  # blobs sent at once
IN_MEMORY = 8 << 20  # a blob up to this size is read once, hashed and sent from memory
LOCK = 0x696D706F  # "impo": one import at a time per database (a session advisory lock)
LOCK_WAIT = 15.0  # seconds
PHASES = ("blobs", "documents", "changes", "sources", "jobs", "verify", "done")

PROGRESS = """
CREATE TABLE IF NOT EXISTS cluster_import (
    id integer PRIMARY KEY CHECK (id = 1),
    source_dir text NOT NULL,
    phase text NOT NULL,
    blobs_after text NOT NULL DEFAULT '',
    documents_after text NOT NULL DEFAULT '',
    changes_after bigint NOT NULL DEFAULT 0,
    jobs_after text NOT NULL DEFAULT '',
    started_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    by text NOT NULL
)
"""


class ImportRefused(IngestdError):
    """The cluster cannot take this import (it holds other data, or another import)."""


@dataclass
class Outcome:
    lines: list[str]
    ok: bool


Say = Callable[[str], None]


def run(conn, blobs: BlobStore, embedded: Embedded, sources_cfg: dict, say: Say, batch: int = BATCH) -> Outcome:
    """Import (or finish importing) `embedded` into the database `conn` (autocommit) and
    `blobs`. `sources_cfg`: the cluster's configured sources by name (kind, node)."""
    schema.check(conn)
    _lock(conn)
    try:
        conn.execute(PROGRESS)
        row = _start(conn, embedded.root)
        if row["phase"] == "done":
            return Outcome([f"already imported from {row['source_dir']} (finished {row['finished_at']}): "
                            "nothing to do"], True)
        if row["resumed"]:
            say(f"resuming the import from {embedded.root} at phase {row['phase']}")
        phase = row["phase"]
        while phase != "verify":
            PHASE_RUNNERS[phase](conn, blobs, embedded, sources_cfg, say, batch)
            phase = PHASES[PHASES.index(phase) + 1]
            _set(conn, phase=phase)
        return _finish(conn, blobs, embedded, say)
    finally:
        if not conn.closed:  # a lost connection let go of the lock with its session
            conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK,))


def _lock(conn) -> None:
    """Waits a little: the session of an import killed a moment ago may not have ended yet
    (its server process notices the closed connection, then lets go)."""
    from psycopg import errors

    conn.execute(f"SET lock_timeout = '{int(LOCK_WAIT * 1000)}ms'")
    try:
        conn.execute("SELECT pg_advisory_lock(%s)", (LOCK,))
    except errors.LockNotAvailable:
        raise ImportRefused("another `ingestd cluster import` is running against this database") from None
    finally:
        conn.execute("RESET lock_timeout")


def _start(conn, root: Path) -> dict:
    """The progress row, made on the first run (into an empty cluster only)."""
    where = str(root.resolve())
    with conn.transaction():
        found = conn.execute("SELECT source_dir, phase, finished_at FROM cluster_import WHERE id = 1 FOR UPDATE").fetchone()
        if found is not None:
            if found[0] != where:
                raise ImportRefused(f"this cluster was imported from {found[0]}; it cannot also take {where} "
                                    "(one embedded store per cluster)")
            return {"source_dir": found[0], "phase": found[1], "finished_at": found[2], "resumed": True}
        held = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("documents", "changes", "jobs")}
        if any(held.values()):
            raise ImportRefused("the cluster already holds data (" + ", ".join(f"{n} {t}" for t, n in held.items()) +
                                "): an embedded store is imported into a new, empty cluster, before any instance runs")
        conn.execute("INSERT INTO cluster_import (id, source_dir, phase, by) VALUES (1, %s, %s, %s)",
                     (where, PHASES[0], VERSION))
    return {"source_dir": where, "phase": PHASES[0], "finished_at": None, "resumed": False}


def _set(conn, **values) -> None:
    sets = ", ".join(f"{k} = %s" for k in values)
    conn.execute(f"UPDATE cluster_import SET {sets} WHERE id = 1", tuple(values.values()))


def _marker(conn, column: str):
    return conn.execute(f"SELECT {column} FROM cluster_import WHERE id = 1").fetchone()[0]


# -- blobs --------------------------------------------------------------------------------


def _blobs(conn, blobs: BlobStore, embedded: Embedded, _sources, say: Say, _batch: int) -> None:
    after = _marker(conn, "blobs_after")
    total = embedded.db.execute("SELECT count(DISTINCT sha256) FROM versions").fetchone()[0]
    done = embedded.db.execute("SELECT count(DISTINCT sha256) FROM versions WHERE sha256 <= ?", (after,)).fetchone()[0]
    blobs.conditional  # probed once, before the uploaders share the store
    with ThreadPoolExecutor(UPLOADERS, thread_name_prefix="import-blobs") as pool:  # S3 latency is the limit
        _blob_batches(conn, blobs, embedded, say, pool, after, done, total)


def _blob_batches(conn, blobs: BlobStore, embedded: Embedded, say: Say, pool, after: str, done: int, total: int) -> None:
    sent = bad = 0
    while True:
        rows = embedded.db.execute("SELECT DISTINCT sha256 FROM versions WHERE sha256 > ? ORDER BY sha256 LIMIT ?",
                                   (after, BLOB_BATCH)).fetchall()
        if not rows:
            break
        shas = [sha for (sha,) in rows]
        for sha, problem in zip(shas, pool.map(lambda h: _upload(blobs, embedded.blob_path(h), h), shas)):
            if problem is None:
                sent += 1
            else:
                bad += 1
                say(f"blob {sha}: {problem}: not imported (the verification will name the documents it affects)")
        after = rows[-1][0]
        done += len(rows)
        _set(conn, blobs_after=after)  # only once every blob of the batch is stored
        say(f"blobs: {done}/{total}")
    say(f"blobs: {total} in the cluster's blob store ({sent} sent by this run, {bad} not importable)")


def _upload(blobs: BlobStore, path: Path, sha: str) -> str | None:
    """Send one blob if its bytes hash to its name; what is wrong with it otherwise."""
    try:
        size = path.stat().st_size
        if size <= IN_MEMORY:
            data = path.read_bytes()
            if hashlib.sha256(data).hexdigest() != sha:
                return "its bytes do not match its name (damaged on the source host)"
            blobs.put_bytes(data)
            return None
        if _hash_file(path) != sha:
            return "its bytes do not match its name (damaged on the source host)"
        blobs.put_file(path, sha)  # the state is locked: the file cannot change in between
        return None
    except FileNotFoundError:
        return "missing from the source's blob store"
    except OSError as exc:
        return f"unreadable: {exc.strerror or exc}"


def _hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


# -- the catalogue --------------------------------------------------------------------------


def _time(text: str | None):
    return parse_iso(text) if text else None


def _documents(conn, _blobs, embedded: Embedded, _sources, say: Say, batch: int) -> None:
    from psycopg.types.json import Jsonb

    after = _marker(conn, "documents_after")
    total = embedded.counts()["documents"]
    done = embedded.db.execute("SELECT count(*) FROM documents WHERE doc_id <= ?", (after,)).fetchone()[0]
    while rows := embedded.documents(after, batch):
        versions = embedded.versions_of(rows[0][0], rows[-1][0])
        with conn.transaction(), conn.cursor() as cur:
            cur.executemany("INSERT INTO documents (doc_id, source, origin_uri, current_seq, deleted_at, deleted_job) "
                            "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (doc_id) DO NOTHING",
                            [(d, s, o, seq, _time(at), job) for d, s, o, seq, at, job in rows])
            cur.executemany("INSERT INTO versions (doc_id, seq, kind, sha256, size, mime, origin_uri, source_modified_at, "
                            "ingested_at, job_id, metadata) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                            "ON CONFLICT (doc_id, seq) DO NOTHING",
                            [(d, seq, kind or "content", sha, size, mime, origin, _time(modified), _time(ingested),
                              job, Jsonb(json.loads(meta or "{}")))
                             for d, seq, kind, sha, size, mime, origin, modified, ingested, job, meta in versions])
            after = rows[-1][0]
            cur.execute("UPDATE cluster_import SET documents_after = %s WHERE id = 1", (after,))
        done += len(rows)
        say(f"documents: {done}/{total}")


def _changes(conn, _blobs, embedded: Embedded, _sources, say: Say, batch: int) -> None:
    after = _marker(conn, "changes_after")
    total = embedded.counts()["changes"]
    while rows := embedded.changes(after, batch):
        with conn.transaction(), conn.cursor() as cur:
            cur.executemany("INSERT INTO changes (cursor, type, doc_id, source, origin_uri, version, sha256, size, mime, "
                            "job_id, at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                            "ON CONFLICT (cursor) DO NOTHING", [(*r[:10], _time(r[10])) for r in rows])
            after = rows[-1][0]
            cur.execute("UPDATE cluster_import SET changes_after = %s WHERE id = 1", (after,))
        say(f"changes: up to cursor {after} ({total} in all)")
    last, expired = embedded.feed()
    # the next change the cluster makes follows the host's last cursor; a consumer's cursor
    # older than what the host pruned stays expired
    conn.execute("UPDATE feed SET last = GREATEST(last, %s), expired = GREATEST(expired, %s) WHERE id = 1",
                 (last, expired))


# -- sources and their sync state -------------------------------------------------------------


def _sources(conn, blobs: BlobStore, embedded: Embedded, sources_cfg: dict, say: Say, _batch: int) -> None:
    """A row per source, and its connector's state (S3 listing, Graph delta link, kept-file
    memory) as the snapshot a cluster instance restores before the source's first job."""
    for name, directory in embedded.source_dirs():
        if not re.fullmatch(SOURCE_NAME, name):
            say(f"{directory}: not a source's name: not imported")
            continue
        configured = sources_cfg.get(name)
        kind = configured.kind if configured is not None else embedded.source_kind(directory)
        if kind is None:
            say(f"source {name}: its kind is unknown (not in this config, no marker): its state is not imported")
            continue
        _source_row(conn, name, kind, getattr(configured, "node", None))
        if conn.execute("SELECT state_key FROM sources WHERE name = %s", (name,)).fetchone()[0] is not None:
            continue  # imported by the run before this one
        key = blobs.put_snapshot(name, sync_state.pack(directory))
        conn.execute("UPDATE sources SET state_key = %s, state_fence = fence, state_saved_at = now() "
                     "WHERE name = %s AND state_key IS NULL", (key, name))
        say(f"source {name} ({kind}): sync state imported")


def _source_row(cur, name: str, kind: str, node: str | None) -> None:
    cur.execute("INSERT INTO sources (name, kind, node) VALUES (%s, %s, %s) ON CONFLICT (name) DO NOTHING",
                (name, kind, node))


# -- jobs ------------------------------------------------------------------------------------


def _jobs(conn, _blobs, embedded: Embedded, sources_cfg: dict, say: Say, batch: int) -> None:
    after = _marker(conn, "jobs_after")
    ids = [j for j in embedded.job_ids() if j > after]
    for start in range(0, len(ids), batch):
        chunk = ids[start:start + batch]
        with conn.transaction(), conn.cursor() as cur:
            for job_id in chunk:
                manifest = embedded.manifest(job_id)
                if manifest is None:
                    say(f"job {job_id}: its manifest cannot be read: not imported")
                    continue
                _job(cur, manifest, embedded, getattr(sources_cfg.get(manifest.source), "node", None))
            cur.execute("UPDATE cluster_import SET jobs_after = %s WHERE id = 1", (chunk[-1],))
        say(f"jobs: {start + len(chunk)}/{len(ids)}")


def _job(cur, m: Manifest, embedded: Embedded, node: str | None) -> None:
    from psycopg.types.json import Jsonb

    if not m.terminal:  # live when the host stopped: it will never finish now
        m.add_error(JobError(code=Code.INTERRUPTED, message=(
            f"the job was {m.status} on the embedded host when its store was imported into the cluster")))
        m.status, m.finished_at, m.progress = "failed", m.finished_at or now_iso(), None
    _source_row(cur, m.source, m.kind, node)
    cur.execute("INSERT INTO jobs (job_id, source, kind, status, trigger, created_at, started_at, finished_at, manifest) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (job_id) DO NOTHING RETURNING 1",
                (m.job_id, m.source, m.kind, m.status, m.trigger, parse_iso(m.created_at), _time(m.started_at),
                 _time(m.finished_at), Jsonb(m.to_json())))
    if cur.fetchone() is None:
        return  # imported by an earlier run, items and all
    items.insert(cur, m.job_id, 0, list(embedded.items(m)))


PHASE_RUNNERS = {"blobs": _blobs, "documents": _documents, "changes": _changes, "sources": _sources, "jobs": _jobs}


# -- the end ---------------------------------------------------------------------------------


def _finish(conn, blobs: BlobStore, embedded: Embedded, say: Say) -> Outcome:
    say("verifying: every version's blob in the blob store with its size, counts against the source")
    report = cluster_verify.run(conn, blobs, deep=False)
    lines = cluster_verify.describe(report)
    mismatched = _counts(conn, embedded)
    lines += mismatched
    if report.ok and not mismatched:
        _set(conn, phase="done")
        conn.execute("UPDATE cluster_import SET finished_at = now() WHERE id = 1")
        counts = embedded.counts()
        lines.append(f"imported from {embedded.root}: {counts['documents']} documents, {counts['versions']} versions, "
                     f"{counts['changes']} changes, {len(embedded.job_ids())} jobs, {report.blobs} blobs")
        return Outcome(lines, True)
    lines.append("the import is not finished: mend what is listed above, then run it again")
    return Outcome(lines, False)


def _counts(conn, embedded: Embedded) -> list[str]:
    out = []
    for table, want in embedded.counts().items():
        got = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        if got != want:
            out.append(f"{table}: {got} in the cluster, {want} in {embedded.root}")
    return out


def command(cfg, connectors: dict, source_dir: Path, say: Say, batch: int = BATCH) -> tuple[list[str], int]:
    """`ingestd cluster import`: lines to print and the exit status."""
    from ingestd.cluster.commands import connected
    from ingestd.credentials import Registry

    with Embedded(source_dir, connectors) as embedded, connected(cfg, "import") as (_db, conn):
        blobs = BlobStore.from_config(cfg.cluster, Registry(cfg.credentials.registry))
        outcome = run(conn, blobs, embedded, {s.name: s for s in cfg.sources}, say, batch)
    return outcome.lines, 0 if outcome.ok else 1
