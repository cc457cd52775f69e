"""Cluster instances as processes for the tests (one private PostgreSQL, moto as the blob
store): start them, stop them, look at what they wrote."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal

from tests.support.helpers import run_cli
from tests.support.procs import Daemon

from .conftest import BUCKET
from .kit import DOCS, instance_config, write_registry

TTL = 8.0  # generous: a busy CI machine must not lose leases by starving a heartbeat thread
N = 120


def contents(n: int = N) -> dict[str, bytes]:
    """Every tenth object repeats another's bytes: blobs are stored once per content."""
    return {f"f/{i:04d}.txt": (f"shared {i % 7}" if i % 10 == 0 else f"object {i} " * 20).encode() for i in range(n)}


class Cluster:
    def __init__(self, root, pg, moto):
        self.root, self.pg, self.moto = root, pg, moto
        self.registry = write_registry(root / "credentials.json", pg.password)
        self.instances: dict[str, Daemon] = {}
        self.urls: dict[str, str] = {}  # an instance reaching the database another way (a proxy)
        self.blob_urls: dict[str, str] = {}  # … or the blob store
        self.http = False
        self.ttl = TTL
        self.sources: list[dict] | None = None  # None: one s3 source, `bucket` (kit.instance_config)
        self.sinks: list[dict] | None = None  # [[sinks]] tables, the same on every instance
        self.daemon: dict = {}  # more [daemon] keys, the same on every instance
        self.env: dict = {}  # the instances' environment (plugins installed by entry point, …)
        self.conn = pg.connect(autocommit=True)

    def config(self, name: str):
        return instance_config(self.root / name, name, database_url=self.urls.get(name, self.pg.url), s3_url=self.moto.url,
                               registry=self.registry, ttl=self.ttl, http=self.http, sources=self.sources,
                               sinks=self.sinks, daemon=self.daemon, blob_url=self.blob_urls.get(name))

    def cli(self, *args, name="a"):
        result = run_cli(*args, "--config", self.config(name), timeout=120)
        assert "Traceback" not in result.stderr, result.stderr
        return result

    def start(self, *names: str) -> None:
        """Started together, then waited for: each begins claiming as soon as it is up."""
        for name in names:
            home = self.root / name
            cfg = self.config(name)
            self.instances[name] = Daemon(cfg, home / "state", home, env=self.env).start(ready=False)
        for name in names:
            self.instances[name].wait_ready()

    def restart(self, name: str) -> None:
        """An instance that was killed or stopped, back on its own state directory."""
        self.instances[name].start()

    def stop_instances(self) -> None:
        for d in self.instances.values():
            if d.proc.poll() is None:
                os.kill(d.proc.pid, signal.SIGCONT)
                d.stop()

    def stop(self) -> None:
        self.stop_instances()
        for d in self.instances.values():
            d.notify.close()
        self.conn.close()

    def jobs(self) -> list[tuple]:
        return self.conn.execute("SELECT job_id, status, trigger, instance_id, fence, manifest FROM jobs "
                                 "ORDER BY created_at").fetchall()

    def holder(self) -> tuple[str, str, int] | None:
        row = self.conn.execute("SELECT lease_holder, lease_job, fence FROM sources WHERE name = 'bucket' "
                                "AND lease_holder IS NOT NULL").fetchone()
        return tuple(row) if row else None

    def versions(self, job_id: str | None = None) -> int:
        if job_id is None:
            return self.conn.execute("SELECT count(*) FROM versions").fetchone()[0]
        return self.conn.execute("SELECT count(*) FROM versions WHERE job_id = %s", (job_id,)).fetchone()[0]

    def settled(self) -> list[tuple] | None:
        rows = self.jobs()
        return rows if rows and all(r[1] not in ("queued", "running") for r in rows) else None

    def check_catalogue(self, objects: dict[str, bytes]) -> None:
        """One document per origin, one version each with the right hash; one blob per content."""
        rows = self.conn.execute("SELECT d.origin_uri, count(v.seq), max(v.sha256) FROM documents d "
                                 "JOIN versions v USING (doc_id) GROUP BY d.origin_uri").fetchall()
        want = {f"s3://{DOCS}/{k}": hashlib.sha256(v).hexdigest() for k, v in objects.items()}
        assert {uri: sha for uri, _n, sha in rows} == want
        assert all(n == 1 for _uri, n, _sha in rows)
        listed = self.moto.s3.list_objects_v2(Bucket=BUCKET, Prefix="store/blobs/")
        keys = {o["Key"].rsplit("/", 1)[1] for o in listed.get("Contents", [])}
        assert keys == set(want.values())


def put_all(moto, objects: dict[str, bytes]) -> None:
    for key, body in objects.items():
        moto.put(key, body, bucket=DOCS)




@contextlib.contextmanager
def standalone(root):
    """A Cluster outside pytest (the campaigns, the benchmark): its own private PostgreSQL,
    moto's server with the blob store's and the source bucket, and the schema."""
    from tests.conftest import make_secret

    from tests.plugins.s3.kit import MotoS3

    from .conftest import Database
    from .pgserver import PostgresServer

    server = PostgresServer(make_secret("pg")).start()
    moto = cluster = None
    try:
        moto = MotoS3()
        moto.s3.create_bucket(Bucket=BUCKET)
        moto.s3.create_bucket(Bucket=DOCS)
        cluster = Cluster(root, Database(server, server.create_database()), moto)
        assert cluster.cli("cluster", "init").returncode == 0
        yield cluster
    finally:
        if cluster is not None:
            cluster.stop()
        if moto is not None:
            moto.stop()
        server.stop()
