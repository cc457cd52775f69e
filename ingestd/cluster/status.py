"""What `ingestd cluster status` reports: the instances and how fresh their heartbeats
are, who holds each source (lease, fence, time left), and the lag: jobs waiting to be
claimed and schedules overdue. Ages come from the database's clock, like the leases."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Instance:
    instance_id: str
    version: str
    host: str
    pid: int
    heartbeat_age_s: float


@dataclass(frozen=True)
class Source:
    name: str
    kind: str
    node: str | None
    fence: int
    holder: str | None
    job_id: str | None
    lease_left_s: float | None
    next_run_in_s: float | None


@dataclass(frozen=True)
class Report:
    schema: int
    instances: list[Instance]
    sources: list[Source]
    queued: int
    oldest_queued_age_s: float | None
    last_cursor: int

    def to_json(self) -> dict:
        return asdict(self)


def _secs(value) -> float | None:
    return None if value is None else round(value.total_seconds(), 1)


def report(conn, schema: int) -> Report:
    instances = [Instance(i, v, h, p, _secs(age)) for i, v, h, p, age in conn.execute(
        "SELECT instance_id, version, host, pid, now() - heartbeat_at FROM instances ORDER BY instance_id")]
    sources = [Source(n, k, node, f, holder, job, _secs(left), _secs(nxt)) for n, k, node, f, holder, job, left, nxt
               in conn.execute("SELECT name, kind, node, fence, lease_holder, lease_job, lease_expires_at - now(), "
                               "next_run_at - now() FROM sources ORDER BY name")]
    queued, oldest = conn.execute("SELECT count(*), now() - min(created_at) FROM jobs WHERE status = 'queued'").fetchone()
    last = conn.execute("SELECT last FROM feed WHERE id = 1").fetchone()[0]
    return Report(schema, instances, sources, queued, _secs(oldest), last)
