"""The example scheduled connector and hooks (examples/ingestd-example-http), pip-installed,
run by a daemon against a small catalogue server the test starts: what docs/plugins.md
promises a plugin author, end to end."""

from __future__ import annotations

import ast
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.plugins.examples.conftest import EXAMPLES
from tests.support.helpers import run_cli, wait_for, write_config


class Catalogue:
    """`GET /catalogue.json` lists `files`; `GET /files/<id>` serves one."""

    def __init__(self):
        self.files: dict[str, tuple[str, bytes, str]] = {}  # id → name, bytes, modified
        catalogue = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path == "/catalogue.json":
                    items = [{"id": i, "name": n, "modified": m, "href": f"files/{i}"}
                             for i, (n, _, m) in sorted(catalogue.files.items())]
                    self._send(json.dumps({"items": items}).encode())
                elif self.path.startswith("/files/") and self.path[7:] in catalogue.files:
                    self._send(catalogue.files[self.path[7:]][1])
                else:
                    self.send_error(404)

            def _send(self, body: bytes):
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/catalogue.json"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def catalogue():
    c = Catalogue()
    yield c
    c.close()


def events(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_the_example_imports_only_the_plugin_api():
    for path in (EXAMPLES / "ingestd-example-http").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else []
            for name in names:
                assert not name.startswith("ingestd") or name in ("ingestd.plugin", "ingestd.plugin.kit"), \
                    f"{path.name} imports {name}"


def test_scheduled_example_syncs_a_catalogue_and_its_hooks_hear_of_it(daemon_env, catalogue, example_env):
    catalogue.files = {"a": ("a.txt", b"alpha\n", "1"), "b": ("b.txt", b"beta\n", "1")}
    hooks = daemon_env.root / "hooks.jsonl"
    daemon_env.write(extra_sources=[{"name": "remote", "kind": "http-catalogue", "url": catalogue.url,
                                     "every": "1s"}])
    check = run_cli("check-config", "--config", daemon_env.config, env=example_env)
    assert check.returncode == 0, check.stderr
    d = daemon_env.daemon(env={**example_env, "INGESTD_EXAMPLE_CATALOGUE": str(hooks)}).start()

    _, body = d.get("/sources")
    remote = next(s for s in body["sources"] if s["name"] == "remote")
    assert remote["available"] and remote["trigger"] == "schedule" and remote["schedule"] == "every 1s"
    first = wait_for(lambda: next((m for m in d.manifests() if m["source"] == "remote" and m["status"] == "succeeded"),
                                  None), timeout=30, message="the first scheduled sync")
    assert first["counters"]["ingested"] == 2

    # in one swap, so no listing sees half of it: `a` removed, `b` changed, `c` new
    catalogue.files = {"b": ("b.txt", b"beta, edited\n", "2"), "c": ("c.txt", b"gamma\n", "1")}
    later = wait_for(lambda: next((m for m in d.manifests(after=first["job_id"])
                                   if m["status"] == "succeeded" and m["counters"]["deleted"]), None),
                     timeout=30, message="a sync that sees the changes")
    assert later["counters"]["ingested"] == 2 and later["counters"]["deleted"] == 1
    docs = d.documents()
    assert [len(docs[f"{catalogue.url}#{i}"]) for i in "abc"] == [1, 2, 1]
    assert d.stop() == 0

    stored = [e for e in events(hooks) if e["event"] == "stored"]
    assert {(e["job_id"], e["origin_uri"].rsplit("#")[1]) for e in stored} >= {
        (first["job_id"], "a"), (first["job_id"], "b"), (later["job_id"], "b"), (later["job_id"], "c")}
    finished = {e["job_id"]: e for e in events(hooks) if e["event"] == "finished"}
    assert finished[first["job_id"]]["ingested"] == 2 and finished[later["job_id"]]["status"] == "succeeded"


def test_example_reports_an_unreachable_catalogue(tmp_path, catalogue, example_env):
    url = catalogue.url.replace("catalogue.json", "missing.json")
    config = write_config(tmp_path / "c.toml", daemon={"state_dir": "state"},
                          sources=[{"name": "remote", "kind": "http-catalogue", "url": url}])
    check = run_cli("check-config", "--config", config, env=example_env)
    assert check.returncode == 78 and f'sources "remote": url: GET {url}: HTTP 404' in check.stderr
    listing = run_cli("plugins", env=example_env)
    assert "connector http-catalogue: available - files listed in a JSON catalogue served over HTTP" in listing.stdout
