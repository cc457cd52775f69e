"""Fixtures: a test CA (once per session), a fake Graph per test, and `sp`, a source
named `docs` of kind sharepoint pointed at the fake, runnable in-process or as a CLI."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest

from ingestd.app import App, load_config
from ingestd.plugin.manager import Plugins
from ingestd.store.catalogue import Store, doc_id_for
from tests.conftest import make_secret
from tests.fakegraph import FakeGraph, make_ca
from tests.support.helpers import run_cli, write_config

CLIENT_ID = "6731de76-14a6-49ae-97bc-6eba6914391e"
CERT_CLIENT_ID = "2f1a3c55-d1b0-4c31-a7e4-0f6e0e7b8a11"
SECRET = make_secret("sp-client")  # the session-end scan fails the run if it leaks into any file


@pytest.fixture(scope="session")
def ca(tmp_path_factory):
    return make_ca(tmp_path_factory.mktemp("ca"))


@pytest.fixture
def fake(ca, tmp_path):
    server = FakeGraph(ca, tmp_path).start()
    yield server
    server.flight.release()  # no download left held open
    server.stop()


@pytest.fixture
def quick(monkeypatch):
    """The transient backoff scaled down, as the campaigns do (attempt counts untouched):
    a wait a test then measures can only have come from Retry-After."""
    import ingestd_sharepoint.http as sp_http

    monkeypatch.setattr(sp_http, "TRANSIENT_BACKOFF", sp_http.TRANSIENT_BACKOFF * 0.02)


class SP:
    """One SharePoint source against the fake, with helpers to run and inspect it."""

    def __init__(self, root: Path, fake: FakeGraph, ca):
        self.root = root
        self.fake = fake
        self.ca = ca
        self.state = root / "state"
        self.config = root / "ingestd.toml"
        self.registry = root / "credentials.json"
        self.site = fake.add_site()
        self.drive = self.site.add_drive()
        fake.add_app(CLIENT_ID, SECRET)
        self.credentials = {"sp": {"type": "azure_client_secret", "tenant_id": fake.tenant,
                                   "client_id": CLIENT_ID, "client_secret": SECRET}}
        self._app: App | None = None
        self.options: dict = {}
        self.write()

    def source(self, **options) -> dict:
        base = {"name": "docs", "kind": "sharepoint", "site_url": self.site.web_url, "credentials": "sp",
                "graph_url": self.fake.base_url, "authority_url": self.fake.base_url,
                "ca_bundle": str(self.ca.cert_path), "every": "15m"}
        base.update(options)
        return {k: v for k, v in base.items() if v is not None}

    def write(self, *, extra_sources=(), **options) -> Path:
        self.options = options
        self.registry.write_text(json.dumps(self.credentials))
        os.chmod(self.registry, 0o600)
        write_config(self.config, daemon={"state_dir": "state", "log_format": "json"},
                     credentials={"registry": str(self.registry)},
                     sources=[self.source(**options), *extra_sources])
        self.close()
        return self.config

    def use_certificate(self, cert, *, registered=None, client_id: str = CERT_CLIENT_ID) -> None:
        """Sign in with `cert` (a `ClientCert`, kept as one PEM file with its key) through
        an app of the fake that accepts `registered` (by default `cert` itself)."""
        self.fake.add_app(client_id, certificate=(registered or cert).cert)
        pem = self.root / f"app-{client_id}.pem"
        pem.write_bytes(cert.combined())
        self.credentials["sp"] = {"type": "azure_certificate", "tenant_id": self.fake.tenant,
                                  "client_id": client_id, "certificate": str(pem)}
        self.write()

    # -- running ----------------------------------------------------------------------

    def app(self) -> App:
        if self._app is None:
            plugins = Plugins().load()
            self._app = App(load_config(self.config, plugins), plugins)
        return self._app

    def run(self, source: str = "docs"):
        """One job in this process (the app, its token cache and throttle persist)."""
        return self.app().run_job(source, "cli")

    def cli(self, *args, env=None, timeout=120):
        result = run_cli("ingest", "docs", "--json", "--config", self.config, *args, env=env, timeout=timeout)
        assert "Traceback" not in result.stderr, result.stderr
        manifest = json.loads(result.stdout) if result.stdout.strip() else None
        return result, manifest

    def cli_plain(self, env=None, timeout=120):
        """`ingestd ingest` without --json: JSON log lines on stderr, a summary on stdout."""
        result = run_cli("ingest", "docs", "--config", self.config, env=env, timeout=timeout)
        assert "Traceback" not in result.stderr, result.stderr
        return result

    def close(self) -> None:
        if self._app is not None:
            self._app.close()
            self._app = None

    # -- inspecting -------------------------------------------------------------------

    def items(self, manifest) -> list[dict]:
        items_file = manifest.items_file if hasattr(manifest, "items_file") else manifest["items_file"]
        path = self.state / "jobs" / items_file
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def doc(self, item_id: str, source: str = "docs"):
        store = Store(self.state)
        try:
            return store.get(doc_id_for(source, item_id))
        finally:
            store.close()

    def changes(self, item_id: str | None = None, source: str = "docs") -> list:
        """The change feed: all of it, or the changes to one item's document."""
        store = Store(self.state)
        try:
            changes = store.feed.read(None, 100_000).changes
        finally:
            store.close()
        return [c for c in changes if item_id is None or c.doc_id == doc_id_for(source, item_id)]

    def blob(self, sha256: str) -> bytes:
        return (self.state / "blobs" / "sha256" / sha256[:2] / sha256).read_bytes()

    def meta(self, key: str, drive=None) -> str | None:
        """A value a library saved in its state (`delta_link`, `scope`, ...): of `drive`
        (a fake `Drive`), by default the source's first library."""
        from ingestd_sharepoint.layout import library_file

        path = self.state / "sources" / "docs" / "libraries" / library_file((drive or self.drive).id)
        if not path.exists():
            return None
        db = sqlite3.connect(path)
        try:
            row = db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
            return row[0] if row else None
        finally:
            db.close()

    def index(self, table: str) -> list[tuple]:
        """The rows of a table of the source's index (`libraries`, `lookups`)."""
        db = sqlite3.connect(self.state / "sources" / "docs" / "sharepoint.sqlite")
        try:
            return db.execute(f"SELECT * FROM {table}").fetchall()
        finally:
            db.close()

    def workspace_files(self) -> list[Path]:
        """Downloads (finished or not) still in any job workspace."""
        return list((self.state / "workspace").rglob("*.download"))

    def downloads(self, since: int = 0) -> list[str]:
        """Item ids whose bytes were requested from the download host (through the URL a
        listing gave, or one `/content` redirected to), in order, from record `since`."""
        guids = {node.guid: node.id for site in self.fake.sites for drive in site.drives
                 for node in drive.nodes.values()}
        return [guids[r.query["UniqueId"][0]] for r in self.fake.records[since:]
                if r.kind == "download" and r.query.get("UniqueId", [""])[0] in guids]

    def content_calls(self, since: int = 0) -> list[str]:
        """Item ids Graph's `/content` was asked for (each answer: a redirect)."""
        return [r.path.split("/")[-2] for r in self.fake.records[since:] if r.path.endswith("/content")]


@pytest.fixture
def sp(tmp_path, fake, ca):
    env = SP(tmp_path, fake, ca)
    yield env
    env.close()
