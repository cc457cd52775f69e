"""Leases and fencing tokens: who may write for a source, and proof that nobody else can.

A source's row carries a `fence` counter. Taking the source (claiming its job) bumps
it and sets a lease that expires at the database's `now() + lease_ttl`, so host clocks
never matter. The holder renews the lease by heartbeat; every write it makes for the
source checks, in the writing transaction, that the fence is still its own (`check`,
`FOR SHARE` on the row). Whoever takes a source over bumps the fence first (a claim, or
the reaper expiring a lease), under `FOR UPDATE` on the same row, so a stalled holder
(GC pause, SIGSTOP, partition) that wakes up finds its fence outranked and its writes
refused: `LeaseLost`, and its job ends `failed`/`lease_lost`. Fences only ever grow.

Connections here (and everywhere in `ingestd.cluster`) are autocommit: each unit of work
is one explicit `conn.transaction()`, so no statement silently opens a transaction that
stays open; a function taking a cursor runs inside its caller's transaction.
"""

from __future__ import annotations

from dataclasses import dataclass

from ingestd.errors import Code, IngestdError


@dataclass(frozen=True)
class Lease:
    """The right to write for `source`, as long as `fence` is the source's fence."""

    source: str
    fence: int
    holder: str  # instance id
    job_id: str


class LeaseLost(IngestdError):
    """The source's fence moved on (or its lease expired): this holder may write no more."""

    code = Code.LEASE_LOST

    def __init__(self, lease: Lease, why: str = ""):
        self.lease = lease
        super().__init__(f"source {lease.source!r}: lease lost by {lease.holder} (fence {lease.fence})"
                         + (f": {why}" if why else ""))


def check(cur, lease: Lease) -> None:
    """In the caller's transaction, before it writes: the fence is still `lease`'s and the
    lease has not expired. The row stays share-locked until that transaction ends, so no
    one can take the source over between this check and the commit."""
    cur.execute(
        "SELECT 1 FROM sources WHERE name = %s AND fence = %s AND lease_holder = %s "
        "AND lease_expires_at > clock_timestamp() FOR SHARE",
        (lease.source, lease.fence, lease.holder),
    )
    if cur.fetchone() is None:
        raise LeaseLost(lease, "its fence was outranked or its lease expired")


def take(cur, source: str, holder: str, job_id: str, ttl: float) -> Lease:
    """In the claiming transaction: bump the fence, start the lease."""
    cur.execute(
        "UPDATE sources SET fence = fence + 1, lease_holder = %s, lease_job = %s, "
        "lease_expires_at = now() + make_interval(secs => %s) WHERE name = %s RETURNING fence",
        (holder, job_id, ttl, source),
    )
    return Lease(source, cur.fetchone()[0], holder, job_id)


def heartbeat(conn, lease: Lease, ttl: float) -> None:
    """Renew the lease for another `ttl` from the database's now; LeaseLost if it is gone."""
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(
            "UPDATE sources SET lease_expires_at = now() + make_interval(secs => %s) "
            "WHERE name = %s AND fence = %s AND lease_holder = %s AND lease_expires_at > now() RETURNING 1",
            (ttl, lease.source, lease.fence, lease.holder),
        )
        if cur.fetchone() is None:
            raise LeaseLost(lease, "the heartbeat found it expired or taken over")


def release(cur, lease: Lease) -> None:
    """In the transaction that settles the job: the source is free (the fence stays)."""
    check(cur, lease)
    cur.execute("UPDATE sources SET lease_holder = NULL, lease_job = NULL, lease_expires_at = NULL "
                "WHERE name = %s AND fence = %s", (lease.source, lease.fence))


def save_state(conn, lease: Lease, key: str) -> None:
    """Point the source at a new sync-state snapshot, by compare-and-set on the fence: a
    cursor only ever advances for the holder of the newest fence."""
    with conn.transaction(), conn.cursor() as cur:
        check(cur, lease)
        cur.execute("UPDATE sources SET state_key = %s, state_fence = %s, state_saved_at = now() "
                    "WHERE name = %s AND fence = %s", (key, lease.fence, lease.source, lease.fence))


def state_key(conn, source: str) -> tuple[str | None, int | None]:
    """The source's current snapshot key and the fence that saved it."""
    row = conn.execute("SELECT state_key, state_fence FROM sources WHERE name = %s", (source,)).fetchone()
    return (row[0], row[1]) if row else (None, None)
