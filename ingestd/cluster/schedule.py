"""Schedules claimed in the database: each source's `next_run_at` says when it runs
next, and exactly one instance takes each due tick.

An instance looking for due sources locks them `FOR UPDATE SKIP LOCKED` (another
instance looking at the same moment skips them instead of waiting), moves each one's
`next_run_at` on, and queues its job in the same transaction. So N instances do not
each fire, nor each log "skipped": a tick whose source still has a live job is simply
consumed. When the next run is, the caller says (interval or cron, from the config,
which every instance shares).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from ingestd.cluster import jobs

NextRun = Callable[[str, datetime], datetime | None]  # (source, the database's now) → next run


def arm(conn, source: str, when: datetime | None) -> None:
    """Set a source's next run unless it has one (a restart keeps the shared schedule)."""
    with conn.transaction():
        conn.execute("UPDATE sources SET next_run_at = %s WHERE name = %s AND next_run_at IS NULL", (when, source))


def claim_due(conn, instance_id: str, next_run: NextRun, limit: int = 16) -> list[tuple[str, str | None]]:
    """Take the due ticks this instance may run: for each, (source, queued job id or None
    when the source already had a live job and the tick was consumed)."""
    out = []
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("SELECT name, kind, now() FROM sources WHERE next_run_at <= now() "
                    "AND (node IS NULL OR node = %s) ORDER BY next_run_at LIMIT %s FOR UPDATE SKIP LOCKED",
                    (instance_id, limit))
        for name, kind, now in cur.fetchall():
            cur.execute("UPDATE sources SET next_run_at = %s WHERE name = %s", (next_run(name, now), name))
            manifest = jobs.new_manifest(name, kind, "schedule")
            queued = jobs.insert_queued(cur, manifest)
            if queued:
                cur.execute("SELECT pg_notify(%s, %s)", (jobs.CHANNEL, name))
            out.append((name, manifest.job_id if queued else None))
    return out
