"""Cluster scaling (issue 18, "Done means: Scale"): 1, 2 and 3 `ingestd run` instances on
one private PostgreSQL (tests/cluster/pgserver.py) and moto (the blob store) syncing the
same S3 sources, first with 100 ms added to every request to the sources (bench/delay.py:
a store a region away, where one instance is bound by latency, not CPU), then without.

One side = N instances on a fresh database and blob prefix: the instances start with
every source's schedule parked a day ahead; each runs a one-object warm-up job pinned to
it (imports, clients: a process's start-up, which a cluster in service has behind it);
then every source is made due at once (`next_run_at = now()`); the side's wall time runs from there until every
job has ended. So it holds the claims (one instance fires the ticks, NOTIFY wakes the
others), the jobs and the drain, not the interpreters' start-up. Objects/s = objects /
wall time; the speed-up of N instances is the paired ratio of one instance's wall time
to N's. CPU: the instances' (summed), moto's, and PostgreSQL's (the postmaster and every
backend, reaped ones included).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .. import ingest, measure, s3server
from ..context import Bench
from ..daemon import wait_until
from ..delay import DelayProxy
from ..stats import median, paired_ratio
from .common import Case, check, result, rounds, skipped

DELAY_S = 0.100
SOURCES = 12  # a multiple of 2 x 1, 2, 3 instances' worker slots: no wave is left half-empty
OBJECTS = 100  # per source
CONCURRENCY = 2  # per source: one instance's 2 workers keep 4 GETs in flight
BLOBS = "cluster-scale-blobs"
DIRECT = "cluster-scale-direct"  # the second row: no added latency
WARM = "cluster-scale-warm"  # one object: each instance's warm-up job
TTL = 30
WORKERS = 2  # `daemon.workers`' default: jobs at once per instance


def _sizes(bench: Bench) -> tuple[int, int]:
    return (4, 5) if bench.smoke else (SOURCES, OBJECTS)


def _fill(bench: Bench, sources: int, objects: int) -> list[str]:
    """The source buckets, filled once per invocation (1-8 KiB of random bytes each)."""
    names = [f"cluster-scale-{n}" for n in range(sources)]
    s3 = bench.s3().client()
    rng = random.Random(18)
    for name in names:
        if name in bench.buckets:
            continue
        s3.create_bucket(Bucket=name)
        bodies = {f"o/{i:04d}.bin": rng.randbytes(rng.randint(1024, 8192)) for i in range(objects)}
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda kv: s3.put_object(Bucket=name, Key=kv[0], Body=kv[1]), bodies.items()))
        bench.buckets[name] = "cluster-scale"
    for extra in (BLOBS, WARM):
        if extra not in bench.buckets:
            s3.create_bucket(Bucket=extra)
            bench.buckets[extra] = "cluster-scale"
    s3.put_object(Bucket=WARM, Key="warm.bin", Body=b"warm-up\n")
    return names


def _postgres(bench: Bench):
    """One private PostgreSQL for the case (stopped at its end)."""
    from tests.cluster.pgserver import PostgresServer

    return PostgresServer("bench-" + os.urandom(12).hex()).start()


def _postgres_cpu(pg) -> float:
    """CPU of the postmaster, its live children and the children it has reaped."""
    pid = int((pg.data / "postmaster.pid").read_text().split()[0])
    with open(f"/proc/{pid}/stat") as fh:
        f = fh.read().rsplit(")", 1)[1].split()
    total = sum(int(v) for v in f[11:15]) / measure.CLOCK_TICKS  # utime stime cutime cstime
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        try:
            total += measure.cpu_seconds(int(child))
        except (FileNotFoundError, ProcessLookupError):
            pass  # ended meanwhile: its CPU is in cutime by the next look
    return total


class Side:
    """N instances syncing every source once; returns the side's measurements."""

    def __init__(self, bench: Bench, pg, buckets: list[str], objects: int, endpoint: str):
        self.bench, self.pg, self.buckets, self.objects, self.endpoint = bench, pg, buckets, objects, endpoint
        self.registry = ingest.write_registry(bench.workdir / "cluster-credentials.json", {
            "pg": {"type": "postgres", "password": pg.password},
            "moto": {"type": "aws", "access_key_id": s3server.ACCESS_KEY, "secret_access_key": s3server.SECRET_KEY}})

    def _config(self, root: Path, name: str, db: str) -> Path:
        root.mkdir(parents=True, exist_ok=True)
        server = self.bench.s3()
        common = {"kind": "s3", "endpoint_url": self.endpoint, "region": s3server.REGION, "credentials": "moto",
                  "addressing_style": "path", "concurrency": CONCURRENCY, "every": "1d"}
        sources = [{"name": b, "bucket": b, **common} for b in self.buckets]
        sources += [{"name": f"warm-{w}", "bucket": WARM, "node": w, **common} for w in self.names]
        path = ingest.write_config(root / "ingestd.toml", root / "state", sources, registry=self.registry)
        cluster = {"database_url": self.pg.url(db), "database_credentials": "pg", "blob_store": f"s3://{BLOBS}/{db}",
                   "endpoint_url": server.endpoint, "region": s3server.REGION, "credentials": "moto",
                   "addressing_style": "path", "instance_id": name, "lease_ttl": f"{TTL}s"}
        with path.open("a") as fh:
            fh.write("[cluster]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in cluster.items()))
        return path

    def __call__(self, n: int) -> dict:
        import psycopg

        db = self.pg.create_database()
        root = self.bench.scratch(f"cluster-scale-{n}")
        self.names = [f"i{k}" for k in range(n)]
        configs = [self._config(root / name, name, db) for name in self.names]
        measure.run(ingest.command("cluster", "init", "--config", str(configs[0])), env=ingest.env())
        conn = psycopg.connect(**self.pg.params(db), autocommit=True)
        procs = []
        try:
            with conn.transaction():  # known, and parked a day ahead: the instances must not start them yet
                for b in self.buckets:
                    conn.execute("INSERT INTO sources (name, kind, next_run_at) VALUES (%s, 's3', now() + "
                                 "interval '1 day')", (b,))
            for k, cfg in enumerate(configs):
                log = open(root / f"i{k}.log", "wb")
                procs.append(subprocess.Popen(ingest.command("run", "--config", str(cfg)), env=ingest.env(),
                                              stdout=log, stderr=log, stdin=subprocess.DEVNULL))
                log.close()
            wait_until(lambda: conn.execute("SELECT count(*) FROM instances").fetchone()[0] == n, 120,
                       "the instances to start")
            # each instance's warm-up job (pinned to it, due at once): the first job's imports and
            # client set-up are a process's start-up, not what a cluster in service pays per job
            wait_until(lambda: conn.execute("SELECT count(*) FROM jobs WHERE source LIKE 'warm-%' AND status NOT IN "
                                            "('queued', 'running')").fetchone()[0] == n, 120, "the warm-up jobs")
            cpu0 = sum(measure.cpu_seconds(p.pid) for p in procs)
            pg0 = _postgres_cpu(self.pg)
            server = self.bench.s3()
            mark = server.mark()
            with server.cpu() as moto:
                start = time.monotonic()
                conn.execute("UPDATE sources SET next_run_at = now() WHERE name NOT LIKE 'warm-%'")
                wait_until(lambda: conn.execute("SELECT count(*) FILTER (WHERE status NOT IN ('queued', 'running')), "
                                                "count(*) FROM jobs WHERE source NOT LIKE 'warm-%'").fetchone()
                           == (len(self.buckets),) * 2, 900, "every source's job to end", interval=0.05)
                wall = time.monotonic() - start
            counts = server.between(mark, server.mark())
            cpu = sum(measure.cpu_seconds(p.pid) for p in procs) - cpu0
            rows = conn.execute("SELECT status, instance_id, (manifest->'counters'->>'ingested')::int, "
                                "extract(epoch FROM finished_at - started_at) FROM jobs WHERE source NOT LIKE 'warm-%'"
                                ).fetchall()
            _stop(procs)
            pg_cpu = _postgres_cpu(self.pg) - pg0
        finally:
            _stop(procs)
            conn.close()
            self.pg.drop_database(db)
        assert all(r[0] == "succeeded" for r in rows), rows
        ingested = sum(r[2] for r in rows)
        assert ingested == len(self.buckets) * self.objects, f"{ingested} objects ingested"
        return {"wall_s": round(wall, 3), "cpu_s": round(cpu, 3), "moto_cpu_s": round(moto.cpu_s, 3),
                "postgres_cpu_s": round(pg_cpu, 3), "objects_per_s": round(ingested / wall, 1),
                "requests": counts["total"], "per_object_requests": counts["per_object"],
                "instances_with_jobs": len({r[1] for r in rows}),
                # where the wall time goes: a job's own length, and how full the worker slots were
                # (1.0: a slot never idle while work was queued; claims and waves cost the rest)
                "job_s_median": round(median([float(r[3]) for r in rows]), 3),
                "slot_use": round(sum(float(r[3]) for r in rows) / (wall * WORKERS * n), 3)}


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=10)


def run_cluster_scale(bench: Bench, case: Case) -> list[dict]:
    from tests.cluster.pgserver import bindir

    if bindir() is None:  # both rows, as a run that could measure gives
        reason = "PostgreSQL is not installed (Debian: apt-get install postgresql; .ci/run installs it)"
        return [skipped(case, reason), {**skipped(case, reason), "case": DIRECT}]
    sources, objects = _sizes(bench)
    buckets = _fill(bench, sources, objects)
    pg = _postgres(bench)
    proxy = DelayProxy(bench.s3().port, 0.01 if bench.smoke else DELAY_S).start()
    try:
        slow = Side(bench, pg, buckets, objects, proxy.endpoint)
        runs = rounds(bench, case, {"1": lambda i: slow(1), "2": lambda i: slow(2), "3": lambda i: slow(3)})
        fast = Side(bench, pg, buckets, objects, bench.s3().endpoint)
        direct = rounds(bench, case, {"1": lambda i: fast(1), "3": lambda i: fast(3)})
    finally:
        proxy.stop()
        pg.stop()
    total = sources * objects
    up2, up3 = _speedup(runs, "2"), _speedup(runs, "3")
    up3_direct = _speedup(direct, "3")
    setup = (f"{sources} S3 sources x {objects} objects (1-8 KiB) = {total} objects; each instance runs 2 jobs at "
             f"once (`daemon.workers`), each job {CONCURRENCY} GETs at once (`concurrency`); lease_ttl {TTL} s")
    latency = result(case, runs, met=None, subject="3", against="1", job_only=False,
                     notes=[setup, f"every request to the sources reaches moto {proxy.delay * 1000:.0f} ms after it "
                                   "was sent (bench/delay.py); the blob store and PostgreSQL are direct",
                            "wall time: from every source made due to every job ended (instances already up)"],
                     checks=[check("wall 2 instances / 1 (speed-up >= 1.6x)", _inverse(up2), round(1 / 1.6, 4)),
                             check("wall 3 instances / 1 (speed-up >= 2.4x)", _inverse(up3), round(1 / 2.4, 4))],
                     speedup_2=_round(up2), speedup_3=_round(up3), objects=total)
    plain = result(case, direct, met=None, subject="3", against="1", job_only=False,
                   name=DIRECT, title="3 cluster instances vs 1, no added latency (moto the limit)",
                   target="3 instances >= 0.85x one's objects/s",
                   notes=[setup, "no added latency: moto (one process) and the 2 cores are the limit; the figure "
                                 "says what coordination costs"],
                   checks=[check("wall 3 instances / 1 (speed-up >= 0.85x)", _inverse(up3_direct),
                                 round(1 / 0.85, 4))],
                   speedup_3=_round(up3_direct), objects=total)
    return [latency, plain]


def _speedup(runs: list[dict], n: str) -> float | None:
    return paired_ratio(runs, "1", n)


def _inverse(x: float | None) -> float | None:
    return None if not x else 1 / x


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


CLUSTER_SCALE = Case(
    "cluster-scale", "cluster mode: 1, 2, 3 instances syncing 12 S3 sources, 100 ms added per request",
    "one instance", "2 instances >= 1.6x and 3 >= 2.4x one's objects/s", run_cluster_scale, needs_s3=True,
    opt_in=True, max_runs=3, warmup=False)
