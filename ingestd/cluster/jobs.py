"""Jobs in the cluster database: queued by any instance, claimed by exactly one.

- **One live job per source, everywhere**: the partial unique index
  `jobs_one_live_per_source` refuses a second queued or running job for a source; the
  refusal is `Busy`, naming the job that holds the source (the API's 409 `busy`).
- **Claims** take the oldest queued job no other instance is claiming
  (`FOR UPDATE SKIP LOCKED`: claimers never wait on each other), and in the same
  transaction the source's lease and a new fence (`leases.take`).
- **Settling** a job checks the fence: a holder that lost its source cannot overwrite
  what the reaper (or the new holder) recorded.
- **The reaper**, run by every instance, expires leases past their ttl: the job ends
  `failed`/`interrupted`, the fence moves on (so the stalled holder is fenced out at
  once, not only when someone claims again) and a `recovery` job is queued.

The manifest is kept whole as jsonb, beside the columns that listings filter and sort on.
"""

from __future__ import annotations

from dataclasses import dataclass

from ingestd._lib.times import now_iso, parse_iso
from ingestd.cluster import leases
from ingestd.cluster.leases import Lease, LeaseLost
from ingestd.errors import Code, NotFoundError
from ingestd.jobs import lifecycle
from ingestd.jobs.jobstore import new_job_id
from ingestd.jobs.manifest import TERMINAL, JobError, Manifest, Trigger

CHANNEL = "ingestd_jobs"  # NOTIFY channel: a job was queued (payload: the source)
LIVE = ("queued", "running")


class Busy(lifecycle.Busy):
    """The source already has a job queued or running (on any instance): `manifest`. The
    embedded `Busy`, so the drop-folder watcher keeps a refused batch for the next job."""


@dataclass(frozen=True)
class SourceRow:
    name: str
    kind: str
    node: str | None = None  # the only instance that may run it (a drop folder's host)


def register(conn, sources: list[SourceRow]) -> None:
    """Make the configured sources known (a new one is due at once; a known one keeps its
    fence, lease, schedule and state). Every instance does this at start; the config is
    the same everywhere, so this converges."""
    with conn.transaction(), conn.cursor() as cur:
        for s in sources:
            cur.execute("INSERT INTO sources (name, kind, node) VALUES (%s, %s, %s) "
                        "ON CONFLICT (name) DO UPDATE SET kind = EXCLUDED.kind, node = EXCLUDED.node",
                        (s.name, s.kind, s.node))


def new_manifest(source: str, kind: str, trigger: Trigger) -> Manifest:
    job_id = new_job_id()
    return Manifest(job_id=job_id, source=source, kind=kind, trigger=trigger, created_at=now_iso(),
                    items_file=f"{job_id}.items.jsonl")


def enqueue(conn, source: str, kind: str, trigger: Trigger) -> Manifest:
    """Queue a job for `source`, or raise Busy naming the job already live for it."""
    manifest = new_manifest(source, kind, trigger)
    while True:
        with conn.transaction(), conn.cursor() as cur:
            if insert_queued(cur, manifest):
                cur.execute("SELECT pg_notify(%s, %s)", (CHANNEL, source))
                return manifest
            holder = _live(cur, source)
        if holder is not None:
            raise Busy(holder)
        # the live job ended between the insert and the look: the source is free, try again


def insert_queued(cur, m: Manifest) -> bool:
    """False when the source already has a live job (the unique index said so)."""
    cur.execute(
        "INSERT INTO jobs (job_id, source, kind, status, trigger, created_at, manifest) "
        "VALUES (%s, %s, %s, 'queued', %s, %s, %s) "
        "ON CONFLICT (source) WHERE status IN ('queued', 'running') DO NOTHING RETURNING 1",
        (m.job_id, m.source, m.kind, m.trigger, parse_iso(m.created_at), _json(m)),
    )
    return cur.fetchone() is not None


def _live(cur, source: str) -> Manifest | None:
    cur.execute("SELECT manifest FROM jobs WHERE source = %s AND status IN ('queued', 'running')", (source,))
    row = cur.fetchone()
    return Manifest.model_validate(row[0]) if row else None


@dataclass(frozen=True)
class Claim:
    manifest: Manifest
    lease: Lease


def claim(conn, instance_id: str, ttl: float) -> Claim | None:
    """The oldest queued job this instance may run (a source pinned to another node is
    left to it), now `running` under a new fence; None when there is none."""
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(
            "SELECT j.job_id, j.manifest FROM jobs j JOIN sources s ON s.name = j.source "
            "WHERE j.status = 'queued' AND (s.node IS NULL OR s.node = %s) "
            "ORDER BY j.created_at, j.job_id LIMIT 1 FOR UPDATE OF j SKIP LOCKED",
            (instance_id,),
        )
        row = cur.fetchone()
        if row is None:
            return None
        manifest = Manifest.model_validate(row[1])
        lease = leases.take(cur, manifest.source, instance_id, manifest.job_id, ttl)
        manifest.status, manifest.started_at = "running", now_iso()
        cur.execute("UPDATE jobs SET status = 'running', started_at = now(), instance_id = %s, fence = %s, "
                    "manifest = %s WHERE job_id = %s", (instance_id, lease.fence, _json(manifest), manifest.job_id))
    return Claim(manifest, lease)


def update(conn, lease: Lease, manifest: Manifest) -> None:
    """Record a running job's progress (counters, errors), fenced."""
    with conn.transaction(), conn.cursor() as cur:
        leases.check(cur, lease)
        cur.execute("UPDATE jobs SET manifest = %s WHERE job_id = %s AND status = 'running' AND fence = %s",
                    (_json(manifest), manifest.job_id, lease.fence))


def settle(conn, lease: Lease, manifest: Manifest) -> None:
    """Record the job's end and free its source, in one fenced transaction; LeaseLost
    when the source was taken over (then the reaper's record stands)."""
    if manifest.status not in TERMINAL:
        raise ValueError(f"settle() needs a terminal status, not {manifest.status!r}")
    manifest.finished_at = manifest.finished_at or now_iso()
    with conn.transaction(), conn.cursor() as cur:
        leases.release(cur, lease)
        cur.execute("UPDATE jobs SET status = %s, finished_at = %s, manifest = %s "
                    "WHERE job_id = %s AND status = 'running' AND fence = %s",
                    (manifest.status, parse_iso(manifest.finished_at), _json(manifest), manifest.job_id, lease.fence))
        if cur.rowcount != 1:
            raise LeaseLost(lease, f"job {manifest.job_id} is no longer running under this fence")


def lost(conn, lease: Lease, manifest: Manifest, why: str) -> Manifest:
    """What a holder that lost its lease records, if the job is still its own to record:
    `failed`/`lease_lost`. The reaper usually got there first (`interrupted`); either
    way the record says the job did not finish, and nothing else is touched."""
    manifest.add_error(JobError(code=Code.LEASE_LOST, message=why))
    manifest.status, manifest.finished_at = "failed", now_iso()
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("UPDATE jobs SET status = 'failed', finished_at = now(), manifest = %s "
                    "WHERE job_id = %s AND status = 'running' AND fence = %s",
                    (_json(manifest), manifest.job_id, lease.fence))
    return get(conn, manifest.job_id)


@dataclass(frozen=True)
class Reaped:
    failed: Manifest  # the job whose lease expired, now failed/interrupted
    recovery: Manifest | None  # the job queued to take over (None: one was live already)
    fence: int  # the source's fence after the reap


def reap(conn, instance_id: str) -> list[Reaped]:
    """Expire every lease past its ttl (by the database's clock). Any instance may run
    this; rows another reaper is handling are skipped, not waited for."""
    out = []
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("SELECT name, kind, lease_holder, lease_job FROM sources "
                    "WHERE lease_holder IS NOT NULL AND lease_expires_at <= now() FOR UPDATE SKIP LOCKED")
        for name, kind, holder, job_id in cur.fetchall():
            cur.execute("UPDATE sources SET fence = fence + 1, lease_holder = NULL, lease_job = NULL, "
                        "lease_expires_at = NULL WHERE name = %s RETURNING fence", (name,))
            fence = cur.fetchone()[0]
            failed = _interrupt(cur, job_id, holder, instance_id)
            recovery = new_manifest(name, kind, "recovery")
            queued = insert_queued(cur, recovery)
            if queued:
                cur.execute("SELECT pg_notify(%s, %s)", (CHANNEL, name))
            if failed is not None:
                out.append(Reaped(failed, recovery if queued else None, fence))
    return out


def _interrupt(cur, job_id: str, holder: str, reaper: str) -> Manifest | None:
    cur.execute("SELECT manifest FROM jobs WHERE job_id = %s AND status = 'running' FOR UPDATE", (job_id,))
    row = cur.fetchone()
    if row is None:
        return None
    manifest = Manifest.model_validate(row[0])
    manifest.add_error(JobError(code=Code.INTERRUPTED, message=(
        f"instance {holder} stopped renewing its lease on the source; instance {reaper} ended the job "
        "and queued a recovery job")))
    manifest.status, manifest.finished_at = "failed", now_iso()
    cur.execute("UPDATE jobs SET status = 'failed', finished_at = now(), manifest = %s WHERE job_id = %s",
                (_json(manifest), job_id))
    return manifest


def get(conn, job_id: str) -> Manifest:
    row = conn.execute("SELECT manifest FROM jobs WHERE job_id = %s", (job_id,)).fetchone()
    if row is None:
        raise NotFoundError(f"job {job_id} not found")
    return Manifest.model_validate(row[0])


def live(conn, source: str) -> Manifest | None:
    with conn.cursor() as cur:
        return _live(cur, source)


def last_succeeded(conn) -> list[Manifest]:
    """Each source's newest succeeded job."""
    rows = conn.execute("SELECT DISTINCT ON (source) manifest FROM jobs WHERE status = 'succeeded' "
                        "ORDER BY source, created_at DESC, job_id DESC").fetchall()
    return [Manifest.model_validate(r[0]) for r in rows]


def listing(conn, *, source: str | None = None, status: str | None = None, limit: int = 20,
            before: str | None = None) -> list[Manifest]:
    """Newest first, as `GET /jobs` pages them: every instance answers the same."""
    where, args = [], []
    for column, value in (("source", source), ("status", status)):
        if value is not None:
            where.append(f"{column} = %s")
            args.append(value)
    if before is not None:
        where.append("(created_at, job_id) < (SELECT created_at, job_id FROM jobs WHERE job_id = %s)")
        args.append(before)
    sql = ("SELECT manifest FROM jobs" + (" WHERE " + " AND ".join(where) if where else "")
           + " ORDER BY created_at DESC, job_id DESC LIMIT %s")
    return [Manifest.model_validate(r[0]) for r in conn.execute(sql, (*args, limit)).fetchall()]


def _json(manifest: Manifest):
    from psycopg.types.json import Jsonb

    return Jsonb(manifest.to_json())

