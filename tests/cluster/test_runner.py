"""One claimed job in this process, on the real server and moto: what core refuses to take
from a drop folder in embedded mode (symlinks, FIFOs, empty files, files over the limit)
it refuses in cluster mode too, and nothing outside the folder reaches the blob store."""

from __future__ import annotations

import hashlib
import os
import threading

from ingestd.app import load_config
from ingestd.cluster import jobs
from ingestd.cluster.blobs import BlobStore
from ingestd.cluster.runner import Runner
from ingestd.credentials import Registry
from ingestd.plugin.manager import Plugins
from tests.support.helpers import write_config

from .conftest import BUCKET, add_sources


class Db:
    """The Runner's view of the database: connections to the test's."""

    def __init__(self, pg):
        self.pg = pg

    def connect(self, *, autocommit=True, purpose=""):
        return self.pg.connect(autocommit=autocommit)


def test_a_drop_folder_job_refuses_what_core_refuses(pg, db, s3, tmp_path):
    inbox, outside = tmp_path / "inbox", tmp_path / "secret.txt"
    inbox.mkdir()
    outside.write_bytes(b"not for the store")
    (inbox / "good.txt").write_bytes(b"a document")
    (inbox / "empty.txt").write_bytes(b"")
    (inbox / "big.txt").write_bytes(b"x" * 100)
    os.symlink(outside, inbox / "link.txt")
    os.mkfifo(inbox / "pipe")
    path = write_config(tmp_path / "ingestd.toml", daemon={"state_dir": str(tmp_path / "state")},
                        cluster={"database_url": pg.url, "blob_store": f"s3://{BUCKET}/p", "instance_id": "a"},
                        sources=[{"name": "inbox", "kind": "local", "path": str(inbox), "node": "a",
                                  "max_file_size": 50, "settle_seconds": 0}])
    plugins = Plugins().load()
    cfg = load_config(path, plugins)
    source = cfg.source("inbox")
    add_sources(db, "inbox", node="a", kind="local")
    jobs.enqueue(db, "inbox", "local", "cli")
    claim = jobs.claim(db, "a", ttl=30)
    blobs = BlobStore(s3.client(), BUCKET, "p")
    connector = plugins.connectors["local"](source, Registry(None), cfg.daemon.state_dir)
    done = Runner(Db(pg), blobs, cfg.daemon.state_dir, ttl=30).run(claim, connector, threading.Event())
    c = done.counters
    assert (c.ingested, c.skipped, c.failed) == (1, 3, 1), done.to_json()
    assert {e.code.value for e in done.errors} == {"too_large", "empty", "symlink", "unsupported"}
    stored = {o["Key"].rsplit("/", 1)[1] for o in s3.s3.list_objects_v2(Bucket=BUCKET, Prefix="p/blobs/")["Contents"]}
    assert stored == {hashlib.sha256(b"a document").hexdigest()}  # never the symlink's target
    assert jobs.get(db, claim.manifest.job_id).status == "partial"
    assert not list((cfg.daemon.state_dir / "workspace").rglob(".upload-*"))  # no copy left behind
