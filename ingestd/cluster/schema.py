"""The cluster database's schema: versioned steps, applied in order, each exactly once.

The same ideas as the state directory's migrations (`ingestd.state`): numbered steps,
a recorded version, a history of what ran, a refusal of a schema newer than this
ingestd knows. What differs is where the marker lives: a one-row table, written in the
step's own transaction. PostgreSQL's DDL is transactional, so a step and its version
commit together or not at all: a kill mid-step leaves the previous version, and the
next `ingestd cluster init` runs the step again from the start. Every transaction that
migrates first takes one transaction-scoped advisory lock, so instances starting at once
migrate one after the other (the later ones find nothing left to do); the lock ends with
the transaction, so no pooler or dead session can hold it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ingestd._lib import logs
from ingestd._lib.version import VERSION
from ingestd.errors import MigrationPending, SchemaTooNew

LOCK = 0x696E6765  # "inge": the advisory lock key every migrating transaction takes


@dataclass(frozen=True)
class Step:
    version: int
    name: str
    summary: str
    sql: str


BASE = """
CREATE TABLE schema_version (
    id integer PRIMARY KEY CHECK (id = 1),
    version integer NOT NULL
);
CREATE TABLE schema_history (
    version integer PRIMARY KEY,
    step text NOT NULL,
    at timestamptz NOT NULL DEFAULT now(),
    by text NOT NULL
);
CREATE TABLE instances (
    instance_id text PRIMARY KEY,
    version text NOT NULL,
    host text NOT NULL,
    pid integer NOT NULL,
    api_url text,
    started_at timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now()
);
-- one row per configured source: who runs it now (lease), the fence that outranks every
-- earlier holder, when it runs next, and where its sync state is
CREATE TABLE sources (
    name text PRIMARY KEY,
    kind text NOT NULL,
    node text,
    fence bigint NOT NULL DEFAULT 0,
    lease_holder text,
    lease_job text,
    lease_expires_at timestamptz,
    next_run_at timestamptz,
    state_key text,
    state_fence bigint,
    state_saved_at timestamptz
);
CREATE INDEX sources_due ON sources (next_run_at);
CREATE INDEX sources_leased ON sources (lease_expires_at) WHERE lease_holder IS NOT NULL;
CREATE TABLE jobs (
    job_id text PRIMARY KEY,
    source text NOT NULL REFERENCES sources (name),
    kind text NOT NULL,
    status text NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'partial', 'failed')),
    trigger text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    started_at timestamptz,
    finished_at timestamptz,
    instance_id text,
    fence bigint,
    manifest jsonb NOT NULL
);
-- one live job per source across every instance: a second insert fails, and the API
-- answers 409 busy naming the job that holds the source
CREATE UNIQUE INDEX jobs_one_live_per_source ON jobs (source) WHERE status IN ('queued', 'running');
CREATE INDEX jobs_queued ON jobs (created_at, job_id) WHERE status = 'queued';
CREATE INDEX jobs_newest ON jobs (created_at DESC, job_id DESC);
CREATE INDEX jobs_source_newest ON jobs (source, created_at DESC, job_id DESC);
CREATE INDEX jobs_status_newest ON jobs (status, created_at DESC, job_id DESC);
CREATE TABLE job_items (
    job_id text NOT NULL REFERENCES jobs (job_id) ON DELETE CASCADE,
    seq integer NOT NULL,
    item jsonb NOT NULL,
    PRIMARY KEY (job_id, seq)
);
CREATE TABLE documents (
    doc_id text PRIMARY KEY,
    source text NOT NULL,
    origin_uri text NOT NULL,
    current_seq integer NOT NULL,
    deleted_at timestamptz,
    deleted_job text
);
CREATE INDEX documents_source_doc ON documents (source, doc_id);
CREATE INDEX documents_live ON documents (doc_id) WHERE deleted_at IS NULL;
CREATE INDEX documents_live_source ON documents (source, doc_id) WHERE deleted_at IS NULL;
-- append-only: a version row, once written, is never rewritten
CREATE TABLE versions (
    doc_id text NOT NULL REFERENCES documents (doc_id),
    seq integer NOT NULL,
    kind text NOT NULL DEFAULT 'content' CHECK (kind IN ('content', 'metadata')),
    sha256 text NOT NULL,
    size bigint NOT NULL,
    mime text NOT NULL,
    origin_uri text NOT NULL,
    source_modified_at timestamptz,
    ingested_at timestamptz NOT NULL DEFAULT now(),
    job_id text NOT NULL,
    metadata jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (doc_id, seq)
);
CREATE INDEX versions_sha256 ON versions (sha256);
CREATE INDEX versions_job ON versions (job_id);
CREATE TABLE changes (
    cursor bigint PRIMARY KEY,
    type text NOT NULL,
    doc_id text NOT NULL,
    source text NOT NULL,
    origin_uri text NOT NULL,
    version integer NOT NULL,
    sha256 text NOT NULL,
    size bigint NOT NULL,
    mime text NOT NULL,
    job_id text NOT NULL,
    at timestamptz NOT NULL
);
-- the feed's counter: advanced by the committing transaction, whose row lock then
-- orders commits as it orders cursors (see ingestd.cluster.catalogue)
CREATE TABLE feed (
    id integer PRIMARY KEY CHECK (id = 1),
    last bigint NOT NULL,
    expired bigint NOT NULL
);
INSERT INTO feed (id, last, expired) VALUES (1, 0, 0);
"""

# one row per configured sink: its durable cursor, moved only by the holder of the newest
# fence while its lease lasts (ingestd.cluster.sinks); `generation` counts resets, so a
# batch read before a reset cannot move the cursor after it; the rest is what GET /sinks
# shows on every instance
SINKS = """
CREATE TABLE IF NOT EXISTS sinks (
    name text PRIMARY KEY,
    kind text NOT NULL,
    cursor bigint NOT NULL DEFAULT 0,
    generation bigint NOT NULL DEFAULT 0,
    fence bigint NOT NULL DEFAULT 0,
    holder text,
    lease_expires_at timestamptz,
    saved_at timestamptz,
    state text,
    last_error jsonb,
    failing_since timestamptz,
    last_delivery_at timestamptz,
    delivered_ok bigint NOT NULL DEFAULT 0,
    delivered_failed bigint NOT NULL DEFAULT 0,
    delivered_changes bigint NOT NULL DEFAULT 0
);
"""

STEPS: list[Step] = [
    Step(1, "base", "instances, sources (leases, fences, schedules, state pointers), jobs and items, "
         "documents, versions, the change feed", BASE),
    Step(2, "sinks", "sinks: a durable cursor per sink, fenced, with its lease and last error", SINKS),
]


def latest(steps: list[Step] = STEPS) -> int:
    return steps[-1].version


def _version(cur) -> int:
    """0 for an empty database."""
    cur.execute("SELECT to_regclass('schema_version') IS NOT NULL")
    if not cur.fetchone()[0]:
        return 0
    cur.execute("SELECT version FROM schema_version WHERE id = 1")
    row = cur.fetchone()
    return row[0] if row else 0


def version(conn) -> int:
    with conn.cursor() as cur:
        return _version(cur)


def check(conn, steps: list[Step] = STEPS) -> int:
    """The database's version if this ingestd can use it as it is; refuses one that is
    newer (written by a newer ingestd) or older (run `ingestd cluster init`)."""
    found = version(conn)
    if found > latest(steps):
        raise SchemaTooNew(too_new(found, steps))
    if found < latest(steps):
        pending = ", ".join(f"{s.version} {s.name}" for s in steps if s.version > found)
        raise MigrationPending(f"the cluster database is at schema {found}, this ingestd needs {latest(steps)} "
                               f"(pending: {pending}): run `ingestd cluster init`")
    return found


def too_new(found: int, steps: list[Step] = STEPS) -> str:
    return (f"the cluster database is at schema {found}, newer than this ingestd ({VERSION}) knows "
            f"(up to {latest(steps)}): it was migrated by a newer ingestd. Run that version on every instance "
            "(downgrades are not supported; see docs/cluster.md)")


def migrate(conn, steps: list[Step] = STEPS, progress: Callable[[str], None] = lambda note: None) -> list[str]:
    """Apply every pending step, each in its own transaction with its version; what was
    done, one line each (empty: up to date). Safe to run from several processes at once."""
    log = logs.get("ingestd.cluster")
    done = []
    while True:
        with conn.transaction(), conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK,))
            found = _version(cur)
            if found > latest(steps):
                raise SchemaTooNew(too_new(found, steps))
            step = next((s for s in steps if s.version == found + 1), None)
            if step is None:
                return done
            progress(f"cluster database: step {step.version} {step.name}")
            cur.execute(step.sql)
            cur.execute("INSERT INTO schema_version (id, version) VALUES (1, %s) "
                        "ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version", (step.version,))
            cur.execute("INSERT INTO schema_history (version, step, by) VALUES (%s, %s, %s)",
                        (step.version, step.name, VERSION))
        log.info("cluster schema step applied", step=step.name, schema=step.version)
        done.append(f"cluster database: applied {step.version} {step.name}")


def history(conn) -> list[tuple[int, str, str, str]]:
    """(version, step, at, by) for every step applied, oldest first."""
    with conn.cursor() as cur:
        if not _version(cur):
            return []
        cur.execute("SELECT version, step, at, by FROM schema_history ORDER BY version")
        return [(v, s, at.isoformat(), by) for v, s, at, by in cur.fetchall()]
