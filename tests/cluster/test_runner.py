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
from ingestd.cluster import jobs
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
