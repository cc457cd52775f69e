"""`ingestd cluster init`, `status`, `ingest` and `job`: what they do, as lines to print
and an exit status (the CLI prints; nothing here does)."""

from __future__ import annotations

import json
from contextlib import contextmanager

from ingestd.cluster import driver, jobs, schema, status as status_mod
from ingestd.cluster.blobs import BlobStore
from ingestd.config import Config
from ingestd.credentials import Registry
from ingestd.errors import ConfigError, MigrationPending, UsageError


def _cluster(cfg: Config):
    if cfg.cluster is None:
        raise ConfigError(f"{cfg.path}: cluster: no [cluster] table; `ingestd cluster` commands need one "
                          "(database_url, blob_store: see docs/cluster.md)")
    return cfg.cluster


@contextmanager
def connected(cfg: Config, purpose: str):
    db = driver.Database(_cluster(cfg), Registry(cfg.credentials.registry), label=f"{cfg.path}: cluster")
    conn = db.connect(autocommit=True, purpose=purpose)
    try:
        yield db, conn
    finally:
        conn.close()


def init(cfg: Config, *, check: bool) -> tuple[list[str], int]:
    """Create or migrate the schema (idempotent), then make sure the blob store answers."""
    with connected(cfg, "init") as (db, conn):
        found = schema.version(conn)
        if found > schema.latest():
            schema.check(conn)  # raises SchemaTooNew
        where = db.describe()
        if check:
            pending = [s for s in schema.STEPS if s.version > found]
            lines = [f"{where}: schema {found}" + (f" → {schema.latest()}" if pending else ", up to date")]
            lines += [f"  {s.version} {s.name}: {s.summary}" for s in pending]
            return lines, MigrationPending.exit_code if pending else 0
        done = schema.migrate(conn)
    blobs = BlobStore.from_config(cfg.cluster, Registry(cfg.credentials.registry))
    writes = "conditional writes (If-None-Match)" if blobs.conditional else "HEAD-then-PUT (no conditional writes)"
    lines = done or [f"{where}: schema {schema.latest()}, up to date: nothing to migrate"]
    return [*lines, f"blob store {cfg.cluster.blob_store}: reachable, {writes}"], 0


def status(cfg: Config, *, as_json: bool) -> tuple[list[str], int]:
    with connected(cfg, "status") as (_db, conn):
        report = status_mod.report(conn, schema.check(conn))
    if as_json:
        return [json.dumps(report.to_json(), indent=2)], 0
    lines = [f"schema {report.schema}  instances {len(report.instances)}  queued {report.queued}"
             + (f" (oldest {report.oldest_queued_age_s}s)" if report.oldest_queued_age_s is not None else "")
             + f"  last change {report.last_cursor}"]
    for i in report.instances:
        lines.append(f"instance {i.instance_id:<20} {i.version:<8} {i.host}:{i.pid}  heartbeat {i.heartbeat_age_s}s ago")
    for s in report.sources:
        lease = (f"held by {s.holder} (job {s.job_id}, {s.lease_left_s}s left)" if s.holder else "free")
        nxt = f"  next run in {s.next_run_in_s}s" if s.next_run_in_s is not None else ""
        node = f" on {s.node}" if s.node else ""
        lines.append(f"source {s.name:<20} {s.kind}{node}  fence {s.fence}  {lease}{nxt}")
    return lines, 0


BUSY_EXIT = 75  # EX_TEMPFAIL: the source has a live job; asking again later may succeed


def ingest(cfg: Config, source: str) -> tuple[list[str], int]:
    """Queue a job for `source` in the shared database: whichever instance is free claims
    it. Busy (the API's 409) names the job that holds the source."""
    known = {s.name: s for s in cfg.sources}
    if source not in known:
        raise UsageError(f"unknown source {source!r} (configured: {', '.join(known) or 'none'})")
    with connected(cfg, "ingest") as (_db, conn):
        schema.check(conn)
        try:
            manifest = jobs.enqueue(conn, source, known[source].kind, "cli")
        except jobs.Busy as busy:
            held = busy.manifest
            return [f"busy: source {source!r} already has job {held.job_id} {held.status}"], BUSY_EXIT
    return [manifest.job_id], 0


def job(cfg: Config, job_id: str) -> tuple[list[str], int]:
    with connected(cfg, "job") as (_db, conn):
        return [json.dumps(jobs.get(conn, job_id).to_json(), indent=2, ensure_ascii=False)], 0
