"""One claimed job in this process, on the real server and moto: what core refuses to take
in embedded mode it refuses in cluster mode too. From a drop folder: symlinks, FIFOs,
empty files, files over the limit (nothing outside the folder reaches the blob store).
From a connector that hands over files it downloaded: a sha256 or size its bytes
contradict (`integrity`; nothing is stored under the claimed hash)."""

from __future__ import annotations

import hashlib
import os
import threading

import pytest

from ingestd.app import load_config
from ingestd.cluster import items, jobs
from ingestd.cluster.blobs import BlobStore
from ingestd.cluster.runner import Runner
from ingestd.credentials import Registry
from ingestd.plugin.manager import Plugins
from tests.plugins.thirdparty import ingestd_claimsplugin
from tests.support.helpers import write_config

from .conftest import BUCKET, add_sources


class Db:
    """The Runner's view of the database: connections to the test's."""

    def __init__(self, pg):
        self.pg = pg

    def connect(self, *, autocommit=True, purpose=""):
        return self.pg.connect(autocommit=autocommit)


def run_one(pg, db, s3, tmp_path, source: dict, kind: str, extra=None):
    """Queue and claim one job for `source` (the only one configured), run it here; its
    manifest."""
    path = write_config(tmp_path / "ingestd.toml", daemon={"state_dir": str(tmp_path / "state")},
                        cluster={"database_url": pg.url, "blob_store": f"s3://{BUCKET}/p", "instance_id": "a"},
                        sources=[source])
    plugins = Plugins().load(extra)
    cfg = load_config(path, plugins)
    add_sources(db, source["name"], node=source.get("node"), kind=kind)
    jobs.enqueue(db, source["name"], kind, "cli")
    claim = jobs.claim(db, "a", ttl=30)
    blobs = BlobStore(s3.client(), BUCKET, "p")
    connector = plugins.connectors[kind](cfg.source(source["name"]), Registry(None), cfg.daemon.state_dir)
    done = Runner(Db(pg), blobs, cfg.daemon.state_dir, ttl=30).run(claim, connector, threading.Event())
    assert not list((cfg.daemon.state_dir / "workspace").rglob("*.download"))  # nothing left behind
    assert not list((cfg.daemon.state_dir / "workspace").rglob(".upload-*"))
    return done


def stored(s3) -> set[str]:
    listing = s3.s3.list_objects_v2(Bucket=BUCKET, Prefix="p/blobs/")
    return {o["Key"].rsplit("/", 1)[1] for o in listing.get("Contents", [])}


def test_a_drop_folder_job_refuses_what_core_refuses(pg, db, s3, tmp_path):
    inbox, outside = tmp_path / "inbox", tmp_path / "secret.txt"
    inbox.mkdir()
    outside.write_bytes(b"not for the store")
    (inbox / "good.txt").write_bytes(b"a document")
    (inbox / "empty.txt").write_bytes(b"")
    (inbox / "big.txt").write_bytes(b"x" * 100)
    os.symlink(outside, inbox / "link.txt")
    os.mkfifo(inbox / "pipe")
    done = run_one(pg, db, s3, tmp_path, {"name": "inbox", "kind": "local", "path": str(inbox), "node": "a",
                                         "max_file_size": 50, "settle_seconds": 0}, "local")
    c = done.counters
    assert (c.ingested, c.skipped, c.failed) == (1, 3, 1), done.to_json()
    assert {e.code.value for e in done.errors} == {"too_large", "empty", "symlink", "unsupported"}
    assert stored(s3) == {hashlib.sha256(b"a document").hexdigest()}  # never the symlink's target
    assert jobs.get(db, done.job_id).status == "partial"
    # the item records, as the embedded items file holds them (errors and all)
    records, end, more = items.page(db, done.job_id, 0, 100)
    assert (end, more) == (5, False)
    assert sorted((r["origin_uri"].rsplit("/", 1)[1], r["outcome"], r.get("error")) for r in records) == [
        ("big.txt", "failed", "too_large"), ("empty.txt", "skipped", "empty"), ("good.txt", "ingested", None),
        ("link.txt", "skipped", "symlink"), ("pipe", "skipped", "unsupported")]
    good = next(r for r in records if r["outcome"] == "ingested")
    assert good == {"origin_uri": good["origin_uri"], "doc_id": good["doc_id"], "outcome": "ingested",
                    "sha256": hashlib.sha256(b"a document").hexdigest(), "size": 10, "mime": "text/plain"}
    assert all(set(r) == {"origin_uri", "doc_id", "outcome", "error", "message"} and r["message"]
               for r in records if r["outcome"] != "ingested")


@pytest.mark.parametrize("claim", ["zeros", "none", "honest"])
def test_what_a_connector_claims_about_an_owned_file_is_checked(pg, db, s3, tmp_path, claim):
    """As embedded mode's test_store_trust: a lying connector's files fail `integrity`,
    and nothing is stored or recorded under the hash it claimed."""
    folder = tmp_path / "remote"
    folder.mkdir()
    files = {f"f{i}.txt": f"different content {i}\n".encode() for i in range(3)}
    for name, data in files.items():
        (folder / name).write_bytes(data)
    done = run_one(pg, db, s3, tmp_path, {"name": "remote", "kind": "claims", "folder": str(folder), "claim": claim},
                   "claims", extra={"claims": ingestd_claimsplugin})
    rows = db.execute("SELECT origin_uri, sha256, size FROM versions ORDER BY origin_uri").fetchall()
    if claim == "zeros":
        assert (done.status, done.counters.failed, done.counters.ingested) == ("partial", 3, 0), done.to_json()
        assert {e.code.value for e in done.errors} == {"integrity"}
        assert rows == [], "three files claiming one hash must not become documents"
        assert stored(s3) == set()
        return
    assert (done.status, done.counters.ingested) == ("succeeded", 3), done.to_json()
    hashes = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
    assert rows == [(f"claims://{name}", hashes[name], len(data)) for name, data in files.items()]
    assert stored(s3) == set(hashes.values())


def test_a_fenced_out_holders_item_rows_never_land(pg, db, s3, tmp_path):
    """The item records go in the catalogue commit's fenced transaction: a holder whose
    lease was taken over commits neither documents nor item rows."""
    from ingestd._lib import logs
    from ingestd.cluster.leases import LeaseLost
    from ingestd.cluster.runner import _Job
    from ingestd.plugin.connector import JobContext

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for i in range(3):
        (inbox / f"f{i}.txt").write_bytes(f"document {i}".encode())
    source = {"name": "inbox", "kind": "local", "path": str(inbox), "node": "a", "settle_seconds": 0}
    path = write_config(tmp_path / "ingestd.toml", daemon={"state_dir": str(tmp_path / "state")},
                        cluster={"database_url": pg.url, "blob_store": f"s3://{BUCKET}/p", "instance_id": "a"},
                        sources=[source])
    plugins = Plugins().load()
    cfg = load_config(path, plugins)
    add_sources(db, "inbox", node="a", kind="local")
    jobs.enqueue(db, "inbox", "local", "cli")
    claim = jobs.claim(db, "a", ttl=30)
    connector = plugins.connectors["local"](cfg.source("inbox"), Registry(None), cfg.daemon.state_dir)
    runner = Runner(Db(pg), BlobStore(s3.client(), BUCKET, "p"), cfg.daemon.state_dir, ttl=30)
    ctx = JobContext(job_id=claim.manifest.job_id, source=connector.source, state_dir=cfg.daemon.state_dir,
                     stop=threading.Event(), log=logs.get("test"))
    with pg.connect(autocommit=True) as conn:
        job = _Job(runner, conn, claim, ctx, logs.get("test"))
        job.consume(connector.stage(ctx))
        assert len(job.batch) == 3  # staged and uploaded, not yet committed
        db.execute("UPDATE sources SET lease_expires_at = now() - interval '1 second'")
        assert jobs.reap(db, "b") and jobs.claim(db, "a", ttl=30).lease.fence > claim.lease.fence
        with pytest.raises(LeaseLost):
            job.commit()
    assert db.execute("SELECT count(*) FROM job_items").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM versions").fetchone()[0] == 0
