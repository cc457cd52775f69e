"""`ingestd cluster import`: an embedded store, made by the real one-shot over a drop folder
and an S3 source (moto), moved into PostgreSQL + S3 by a process that is SIGKILLed twice
(among the blobs, then among the documents) and re-run; the result equals the embedded
catalogue, verifies, and a cluster instance's first sync of the S3 source fetches nothing.
The source state is byte-identical at the end."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from ingestd.cluster import items as cluster_items
from ingestd.jobs.items import read_page
from tests.support.helpers import run_cli, wait_for, write_config
from tests.support.procs import Daemon

from .conftest import BUCKET
from .kit import DOCS, instance_config, write_registry

N = 140  # objects: three batches of blobs (importer.BLOB_BATCH = 50)


def objects() -> dict[str, bytes]:
    return {f"f/{i:04d}.txt": f"object {i}\n".encode() * 3 for i in range(N)}


def tree_hash(root: Path) -> str:
    """Every path, mode and byte under `root` (the lock file's too)."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        digest.update(f"{path.relative_to(root)}\0{st.st_mode}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
        if path.is_file() and not path.is_symlink():
            digest.update(path.read_bytes())
    return digest.hexdigest()


class Host:
    """The embedded installation: a drop folder kept in place and the S3 source."""

    def __init__(self, root: Path, moto, registry: Path):
        self.root = root
        self.state = root / "state"
        self.inbox = root / "inbox"
        self.inbox.mkdir(parents=True)
        self.config = write_config(
            root / "ingestd.toml", daemon={"state_dir": str(self.state), "log_format": "json"},
            credentials={"registry": str(registry)},
            sources=[{"name": "bucket", "kind": "s3", "bucket": DOCS, "endpoint_url": moto.url,
                      "addressing_style": "path", "credentials": "minio"},
                     {"name": "inbox", "kind": "local", "path": str(self.inbox), "after": "keep",
                      "settle_seconds": 0}])

    def ingest(self, source: str) -> dict:
        result = run_cli("ingest", source, "--json", "--config", self.config, timeout=180)
        assert result.returncode == 0, result.stderr[-3000:]
        return json.loads(result.stdout)

    def catalogue(self) -> dict:
        """The embedded catalogue, read from a copy (reading in place would touch `-shm`)."""
        copy = self.root / "copy.sqlite"
        copy.write_bytes((self.state / "documents.sqlite").read_bytes())
        db = sqlite3.connect(copy)
        try:
            return {
                "documents": db.execute("SELECT doc_id, source, origin_uri, current_seq, deleted_at IS NOT NULL, "
                                        "deleted_job FROM documents ORDER BY doc_id").fetchall(),
                "versions": [(*r[:-1], json.loads(r[-1])) for r in db.execute(
                    "SELECT doc_id, seq, kind, sha256, size, mime, origin_uri, job_id, metadata FROM versions "
                    "ORDER BY doc_id, seq")],
                "changes": db.execute("SELECT cursor, type, doc_id, source, version, sha256, job_id FROM changes "
                                      "ORDER BY cursor").fetchall(),
                "feed": db.execute("SELECT last FROM feed").fetchone()[0],
            }
        finally:
            db.close()
            copy.unlink()


def cluster_catalogue(conn) -> dict:
    return {
        "documents": [tuple(r) for r in conn.execute(
            "SELECT doc_id, source, origin_uri, current_seq, deleted_at IS NOT NULL, deleted_job FROM documents "
            "ORDER BY doc_id COLLATE \"C\"")],
        "versions": [tuple(r) for r in conn.execute(
            "SELECT doc_id, seq, kind, sha256, size, mime, origin_uri, job_id, metadata FROM versions "
            "ORDER BY doc_id COLLATE \"C\", seq")],
        "changes": [tuple(r) for r in conn.execute(
            "SELECT cursor, type, doc_id, source, version, sha256, job_id FROM changes ORDER BY cursor")],
        "feed": conn.execute("SELECT last FROM feed").fetchone()[0],
    }


@pytest.fixture
def host(tmp_path, pg, s3):
    """An embedded store with a tombstone and a metadata version, its daemon stopped."""
    s3.s3.create_bucket(Bucket=DOCS)
    for key, body in objects().items():
        s3.put(key, body, bucket=DOCS)
    registry = write_registry(tmp_path / "credentials.json", pg.password)
    h = Host(tmp_path / "host", s3, registry)
    for name in ("a.txt", "b.txt"):
        (h.inbox / name).write_bytes(f"dropped {name}\n".encode())
    assert h.ingest("inbox")["counters"]["ingested"] == 2
    assert h.ingest("bucket")["counters"]["ingested"] == N
    s3.s3.delete_object(Bucket=DOCS, Key="f/0000.txt")  # a tombstone
    s3.s3.put_object(Bucket=DOCS, Key="f/0001.txt", Body=objects()["f/0001.txt"],
                     ContentType="text/markdown")  # the same bytes, new metadata: a metadata version
    second = h.ingest("bucket")
    assert second["counters"]["deleted"] == 1, second
    h.registry = registry
    return h


def start_import(cfg: Path, state: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ingestd", "cluster", "import", "--from", str(state),
                             "--config", str(cfg), *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def kill_at(proc: subprocess.Popen, prefix: str) -> list[str]:
    """SIGKILL the import once it prints a progress line starting with `prefix` (printed
    after that progress is committed); the lines it printed."""
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if line.startswith(prefix):
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, (seen, proc.stderr.read()[-3000:])
    return seen


def phase(conn) -> str:
    return conn.execute("SELECT phase FROM cluster_import").fetchone()[0]


def test_an_embedded_store_imported_through_two_kills_equals_the_original(host, pg, db, s3, tmp_path):
    before = tree_hash(host.state)
    embedded = host.catalogue()
    assert any(v[2] == "metadata" for v in embedded["versions"])  # the store has what the import must carry
    assert any(d[4] for d in embedded["documents"])
    cfg = instance_config(tmp_path / "a", "a", database_url=pg.url, s3_url=s3.url, registry=host.registry, ttl=8)

    seen = kill_at(start_import(cfg, host.state), "blobs: ")
    assert phase(db) == "blobs", seen
    stored = s3.s3.list_objects_v2(Bucket=BUCKET, Prefix="store/blobs/").get("KeyCount", 0)
    assert 50 <= stored < N + 2  # some blobs, not all

    seen = kill_at(start_import(cfg, host.state, "--batch", "20"), "documents: ")
    assert any(line.startswith("resuming the import") for line in seen)
    assert phase(db) == "documents", seen
    assert 0 < db.execute("SELECT count(*) FROM documents").fetchone()[0] < len(embedded["documents"])

    done = run_cli("cluster", "import", "--from", host.state, "--config", cfg, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "resuming the import from" in done.stdout and "\nok\n" in done.stdout
    assert phase(db) == "done"
    assert cluster_catalogue(db) == embedded  # no duplicates, nothing lost, cursors kept
    jobs = {p.name[:-5] for p in (host.state / "jobs").glob("*.json")}
    assert {r[0] for r in db.execute("SELECT job_id FROM jobs")} == jobs
    assert db.execute("SELECT count(*) FROM job_items").fetchone()[0] > 0
    for job_id in jobs:  # each job's items, as an instance serves them, are the embedded file's records
        records = read_page(host.state / "jobs" / f"{job_id}.items.jsonl", 0, 10**6)[0]
        assert cluster_items.page(db, job_id, 0, 10**6)[0] == records
    shas = {v[3] for v in embedded["versions"]}
    listed = s3.s3.list_objects_v2(Bucket=BUCKET, Prefix="store/blobs/")["Contents"]
    assert {o["Key"].rsplit("/", 1)[1] for o in listed} == shas

    again = run_cli("cluster", "import", "--from", host.state, "--config", cfg)
    assert again.returncode == 0 and "already imported" in again.stdout, again.stdout + again.stderr
    deep = run_cli("cluster", "verify", "--deep", "--config", cfg)
    assert deep.returncode == 0 and deep.stdout.strip().endswith("ok"), deep.stdout + deep.stderr
    assert tree_hash(host.state) == before  # the source host's state is untouched

    # a cluster instance takes over the S3 source from the imported cursor: nothing is fetched
    s3.log.clear()
    instance = Daemon(cfg, tmp_path / "a" / "state", tmp_path / "a").start()
    try:
        asked = run_cli("cluster", "ingest", "bucket", "--config", cfg)
        job_id = asked.stdout.strip() if asked.returncode == 0 else asked.stdout.split("job ")[1].split()[0]
        row = wait_for(lambda: db.execute("SELECT status, manifest FROM jobs WHERE job_id = %s AND status NOT IN "
                                          "('queued', 'running')", (job_id,)).fetchone(), timeout=120,
                       message="the first cluster sync to finish")
    finally:
        instance.stop()
        instance.notify.close()
    assert row[0] == "succeeded", row
    assert row[1]["counters"]["ingested"] == 0, row
    gets = [r.key for r in s3.log.requests if r.bucket == DOCS and r.method == "GET" and r.per_object]
    assert gets == []
    assert db.execute("SELECT count(*) FROM versions").fetchone()[0] == len(embedded["versions"])


def test_verify_on_a_cluster_finds_blobs_missing_or_damaged_on_s3(host, pg, db, s3, tmp_path):
    cfg = instance_config(tmp_path / "a", "a", database_url=pg.url, s3_url=s3.url, registry=host.registry, ttl=8)
    assert run_cli("cluster", "import", "--from", host.state, "--config", cfg, timeout=300).returncode == 0
    other = tmp_path / "other-state"
    shutil.copytree(host.state, other)
    refused = run_cli("cluster", "import", "--from", other, "--config", cfg)
    assert refused.returncode == 1 and "cannot also take" in refused.stderr, refused.stderr  # one store per cluster
    listed = s3.s3.list_objects_v2(Bucket=BUCKET, Prefix="store/blobs/")["Contents"]
    gone, damaged = listed[0]["Key"], listed[1]["Key"]
    s3.s3.delete_object(Bucket=BUCKET, Key=gone)
    body = s3.s3.get_object(Bucket=BUCKET, Key=damaged)["Body"].read()
    s3.s3.put_object(Bucket=BUCKET, Key=damaged, Body=bytes(reversed(body)))  # same size, other bytes
    plain = run_cli("cluster", "verify", "--config", cfg)
    assert plain.returncode == 1
    assert f"blob_missing: {gone.rsplit('/', 1)[1]}" in plain.stdout and "blob_corrupt" not in plain.stdout
    deep = run_cli("verify", "--config", cfg)  # `ingestd verify` on a cluster's config hashes every blob
    assert deep.returncode == 1, deep.stderr
    assert f"blob_missing: {gone.rsplit('/', 1)[1]}" in deep.stdout
    assert f"blob_corrupt: {damaged.rsplit('/', 1)[1]}" in deep.stdout


def test_a_blob_damaged_on_the_host_is_not_sent_and_the_import_does_not_finish(host, pg, db, s3, tmp_path):
    cfg = instance_config(tmp_path / "a", "a", database_url=pg.url, s3_url=s3.url, registry=host.registry, ttl=8)
    sha = host.catalogue()["versions"][0][3]
    blob = host.state / "blobs" / "sha256" / sha[:2] / sha
    blob.write_bytes(b"rotted" + blob.read_bytes()[6:])
    result = run_cli("cluster", "import", "--from", host.state, "--config", cfg, timeout=300)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"blob {blob.name}: its bytes do not match its name" in result.stdout
    assert f"blob_missing: {blob.name}" in result.stdout and "the import is not finished" in result.stdout
    assert phase(db) == "verify"
    keys = {o["Key"] for o in s3.s3.list_objects_v2(Bucket=BUCKET, Prefix="store/blobs/")["Contents"]}
    assert not any(k.endswith(blob.name) for k in keys)


def test_the_import_refuses_a_state_an_embedded_process_holds(host, pg, db, s3, tmp_path):
    cfg = instance_config(tmp_path / "a", "a", database_url=pg.url, s3_url=s3.url, registry=host.registry, ttl=8)
    fd = os.open(host.state / "SCHEMA.lock", os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)  # as the embedded daemon holds it for its lifetime
        result = run_cli("cluster", "import", "--from", host.state, "--config", cfg)
    finally:
        os.close(fd)
    assert result.returncode == 75, result.stderr
    assert "an embedded ingestd" in result.stderr and "stop it" in result.stderr
    assert db.execute("SELECT to_regclass('cluster_import')").fetchone()[0] is None  # nothing started


def test_the_import_refuses_an_older_state_and_says_how_to_migrate_it(host, pg, db, s3, tmp_path):
    cfg = instance_config(tmp_path / "a", "a", database_url=pg.url, s3_url=s3.url, registry=host.registry, ttl=8)
    marker = json.loads((host.state / "SCHEMA.json").read_text())
    marker["schema"] = 3
    (host.state / "SCHEMA.json").write_text(json.dumps(marker))
    result = run_cli("cluster", "import", "--from", host.state, "--config", cfg)
    assert result.returncode == 3, result.stderr
    assert "ingestd migrate" in result.stderr


def test_the_import_refuses_a_cluster_that_already_holds_data(host, pg, db, s3, tmp_path):
    cfg = instance_config(tmp_path / "a", "a", database_url=pg.url, s3_url=s3.url, registry=host.registry, ttl=8)
    db.execute("INSERT INTO sources (name, kind) VALUES ('bucket', 's3')")
    db.execute("INSERT INTO jobs (job_id, source, kind, status, trigger, manifest) "
               "VALUES ('j', 'bucket', 's3', 'succeeded', 'cli', '{}')")
    result = run_cli("cluster", "import", "--from", host.state, "--config", cfg)
    assert result.returncode == 1 and "already holds data" in result.stderr, result.stderr


def test_a_large_blob_is_hashed_before_it_is_sent_and_a_damaged_one_is_not(s3, tmp_path, monkeypatch):
    """The streamed path (files past `IN_MEMORY`): hashed from disk, then uploaded from disk."""
    from ingestd.cluster import importer
    from ingestd.cluster.blobs import BlobStore

    monkeypatch.setattr(importer, "IN_MEMORY", 10)
    blobs = BlobStore(s3.client(), BUCKET, "p")
    good, bad = b"a large document\n" * 100, b"another large one\n" * 100
    good_sha, bad_sha = hashlib.sha256(good).hexdigest(), hashlib.sha256(bad).hexdigest()
    (tmp_path / good_sha).write_bytes(good)
    (tmp_path / bad_sha).write_bytes(bad[:-1] + b"?")
    assert importer._upload(blobs, tmp_path / good_sha, good_sha) is None
    assert "do not match" in importer._upload(blobs, tmp_path / bad_sha, bad_sha)
    assert "missing" in importer._upload(blobs, tmp_path / ("0" * 64), "0" * 64)
    assert blobs.read(good_sha) == good and not blobs.exists(bad_sha)


def test_two_imports_into_one_database_do_not_run_at_once(pg, db, monkeypatch):
    from ingestd.cluster import importer

    monkeypatch.setattr(importer, "LOCK_WAIT", 0.3)
    db.execute("SELECT pg_advisory_lock(%s)", (importer.LOCK,))  # an import in progress
    with pg.connect(autocommit=True) as conn, pytest.raises(importer.ImportRefused, match="another"):
        importer.run(conn, None, None, {}, print)
    db.execute("SELECT pg_advisory_unlock(%s)", (importer.LOCK,))
