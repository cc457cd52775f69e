"""An in-process rig for sink tests: a real catalogue and feed, the sinks the installed
plugins provide, and a real HTTP receiver on 127.0.0.1."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ingestd import config as config_mod
from ingestd.plugin.manager import Plugins
from ingestd.sinks.fleet import Fleet
from ingestd.store.catalogue import Blob, Change, Store, doc_id_for
from tests.conftest import make_secret
from tests.support.receiver import Receiver


class Rig:
    def __init__(self, root: Path, receiver: Receiver):
        self.root, self.receiver = root, receiver
        self.state = root / "state"
        self.store = Store(self.state)
        self.plugins = Plugins().load()
        self.fleet: Fleet | None = None
        self.n = 0
        for name in ("a", "b"):
            (root / name).mkdir(exist_ok=True)

    def config(self, *sinks: dict):
        data = {"daemon": {"state_dir": str(self.state)},
                "sources": [{"name": "a", "kind": "local", "path": str(self.root / "a")},
                            {"name": "b", "kind": "local", "path": str(self.root / "b")}],
                "sinks": list(sinks)}
        return config_mod.parse(data, self.plugins.option_models(), base_dir=self.root,
                                sink_models=self.plugins.sink_option_models())

    def sink(self, name="hook", **options) -> dict:
        return {"name": name, "kind": "webhook", "url": self.receiver.url, "retry_max": 0.2, **options}

    def start(self, *sinks: dict) -> Fleet:
        self.fleet = Fleet(self.store.feed, self.plugins.sinks, self.state)
        self.fleet.start(self.config(*(sinks or (self.sink(),))).sinks)
        return self.fleet

    def commit(self, count: int = 1, source: str = "a") -> list[int]:
        """`count` new documents of `source` in one commit; their cursors."""
        changes = []
        for _ in range(count):
            self.n += 1
            src = self.root / f"blob-{self.n}"
            src.write_bytes(f"document {self.n}\n".encode())
            fd = os.open(src, os.O_RDONLY)
            try:
                stored = self.store.blobs.put_file(fd)  # the store stores; the pipeline works out the MIME
            finally:
                os.close(fd)
            blob = Blob(stored.sha256, stored.size, "text/plain")
            origin = f"file:///{source}/{self.n}.txt"
            changes.append(Change(doc_id=doc_id_for(source, origin), source=source, origin_uri=origin, blob=blob,
                                  job_id=f"job-{self.n:08d}"))
        return [int(c.cursor) for c in self.store.commit(changes).changed if c is not None]

    def status(self, name="hook"):
        return self.fleet.status(name)

    def secret_file(self) -> tuple[Path, bytes]:
        secret = make_secret("hook").encode()
        path = self.root / "hook.secret"
        path.write_bytes(secret + b"\n")
        path.chmod(0o600)
        return path, secret

    def close(self):
        if self.fleet is not None:
            self.fleet.stop()
        self.store.close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def rig(tmp_path, receiver):
    r = Rig(tmp_path, receiver)
    yield r
    r.close()
