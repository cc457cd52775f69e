"""Shared pieces of the API tests (no tests here): an HTTP client that shows everything
the server sent, daemons configured for the API tests, and plugins made on the fly."""

from __future__ import annotations

import http.client
import json
import os
import secrets
import socket
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.support.helpers import wait_for, write_config
from tests.support.procs import THIRDPARTY, Daemon, plugin_site

JSON_TYPE = "application/json; charset=utf-8"

# A connector whose dependency is missing, to see 503 connector_unavailable end to end.
NEEDY_PLUGIN = '''
from ingestd import Connector, Requirement, hookimpl
from ingestd.plugin.options import ScheduleOptions


class NeedyConnector(Connector):
    kind = "needy"
    Options = ScheduleOptions
    requires = Requirement(modules=("ingestd_test_absent_dependency",), install="pip install 'ingestd[needy]'")

    def stage(self, ctx):
        return iter(())


@hookimpl
def register_connectors(register):
    register(NeedyConnector)
'''

# Records every file the daemon opens or lists, to prove what a request did not touch.
AUDIT_HOOK = '''
import os, sys, time
_path = os.environ.get("INGESTD_TEST_AUDIT")
if _path:
    _fh = open(_path, "a", buffering=1)
    _EVENTS = {"open", "os.listdir", "os.scandir", "os.rename", "os.remove", "os.mkdir", "os.symlink"}

    def _hook(event, args):
        if event in _EVENTS and args and isinstance(args[0], (str, bytes, os.PathLike)):
            _fh.write(repr((time.time(), event, os.fsdecode(args[0]))) + "\\n")

    sys.addaudithook(_hook)
'''


@dataclass
class Resp:
    status: int
    headers: http.client.HTTPMessage
    data: bytes

    @property
    def json(self):
        return json.loads(self.data)

    def error(self, status: int, code: str | None = None) -> dict:
        """Assert this is the error it should be, in the one error shape."""
        assert self.status == status, (self.status, self.data[:500])
        assert self.headers["Content-Type"] == JSON_TYPE
        body = self.json
        assert isinstance(body["error"], str) and isinstance(body["message"], str), body
        assert "Traceback" not in self.data.decode(errors="replace")
        if code is not None:
            assert body["error"] == code, body
        return body


class Client:
    """One keep-alive connection; reconnects when the server closes it."""

    def __init__(self, base_url: str, token: str | None = None, timeout: float = 15.0):
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname, parts.port
        self.token, self.timeout = token, timeout
        self.conn: http.client.HTTPConnection | None = None

    def call(self, method: str, path: str, body=None, headers: dict | None = None, auth: bool = True) -> Resp:
        headers = dict(headers or {})
        if auth and self.token and "Authorization" not in headers:
            headers["Authorization"] = f"Bearer {self.token}"
        if body is not None and not isinstance(body, bytes):
            body = json.dumps(body).encode()
            headers.setdefault("Content-Type", "application/json")
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self.conn.request(method, path, body=body, headers=headers)
                r = self.conn.getresponse()
                resp = Resp(r.status, r.headers, r.read())
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.close()  # the server closed an idle keep-alive connection: retry once, fresh
                if attempt == 2:
                    raise
                continue
            if r.will_close:
                self.close()
            return resp
        raise AssertionError("unreachable")

    def get(self, path: str, **kw) -> Resp:
        return self.call("GET", path, **kw)

    def post(self, path: str, body=None, **kw) -> Resp:
        return self.call("POST", path, body=body, **kw)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class Setup:
    """A state dir, an inbox and a config for API tests, with optional extras:
    `fixture` (a scheduled third-party source that can be held), `needy` (a source whose
    connector lacks its dependency), `off` (a disabled source), a token, an audit hook."""

    def __init__(self, root: Path):
        self.root = root
        self.state = root / "state"
        self.inbox = root / "inbox"
        self.inbox.mkdir(parents=True, exist_ok=True)
        self.hold = root / "hold"
        self.config = root / "ingestd.toml"
        self.token: str | None = None
        self.token_file = root / "http-token"
        self.audit = root / "audit.log"
        self.daemons: list[Daemon] = []
        self._drained: list = []

    def write(self, *, plugins: bool = False, token: bool = False, listen: str = "127.0.0.1:0",
              settle: float = 0.2, http: dict | None = None, **local) -> "Setup":
        sources = [{"name": "inbox", "kind": "local", "path": "inbox", "settle_seconds": settle, **local}]
        if plugins:
            data = self.root / "fixture-data"
            data.mkdir(exist_ok=True)
            (data / "one.txt").write_text("fixture one\n")
            sources += [
                {"name": "fx", "kind": "fixture", "folder": str(data), "every": "1h", "hold_while": str(self.hold),
                 "credential_expires_in_days": 6},
                {"name": "needy", "kind": "needy"},
                {"name": "off", "kind": "local", "path": "inbox", "enabled": False},
            ]
        http = {"listen": listen, **(http or {})}
        if token:
            self.token = secrets.token_hex(24)
            self.token_file.write_text(self.token + "\n")
            self.token_file.chmod(0o600)
            http["token_file"] = str(self.token_file)
        write_config(self.config, daemon={"state_dir": "state", "log_format": "json", "shutdown_timeout": 10},
                     http=http, sources=sources)
        return self

    def daemon(self, *, plugins: bool = False, audit: bool = False) -> Daemon:
        paths, env = [], {}
        if plugins:
            site = plugin_site(self.root, {"testplugin": "ingestd_testplugin", "needy": "ingestd_needyplugin"})
            mods = self.root / "mods"
            mods.mkdir(exist_ok=True)
            (mods / "ingestd_needyplugin.py").write_text(NEEDY_PLUGIN)
            paths += [site, THIRDPARTY, mods]
        if audit:
            hook = self.root / "audit-site"
            hook.mkdir(exist_ok=True)
            (hook / "sitecustomize.py").write_text(AUDIT_HOOK)
            paths.append(hook)
            env["INGESTD_TEST_AUDIT"] = str(self.audit)
        d = Daemon(self.config, self.state, self.root, env=env, pythonpath=paths)
        self.daemons.append(d)
        return d

    def start(self, d: Daemon) -> Daemon:
        """Start `d` and keep reading its sd_notify socket: the daemon sends a STATUS line
        per job, and an unread datagram queue (10 deep) would block its worker threads."""
        if d.notify not in self._drained:
            self._drained.append(d.notify)
            threading.Thread(target=_drain, args=(d.notify,), daemon=True).start()
        mark = len(d.notify.messages)
        d.start(ready=False)
        wait_for(lambda: d.proc.poll() is not None or any(m.get("READY") == "1" for m in d.notify.messages[mark:]),
                 timeout=30, message="the daemon to be ready")
        assert d.proc.poll() is None, f"daemon exited; log:\n{d.log_text()[-4000:]}"
        return d

    def client(self, d: Daemon, token: str | None = "default") -> Client:
        return Client(d.base_url, self.token if token == "default" else token)

    def close(self) -> None:
        for d in self.daemons:
            d.close()


@pytest.fixture
def api_setup(tmp_path):
    """A Setup whose daemons are killed after the test, whether it passed or not."""
    setup = Setup(tmp_path)
    yield setup
    setup.close()


def _drain(notify) -> None:
    notify.sock.settimeout(None)
    while True:
        try:
            data = notify.sock.recv(65536)
        except OSError:
            return
        notify.messages.append(dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line))


def read_all(sock: socket.socket) -> bytes:
    """Everything the server sends on a raw socket until it closes (a reset ends it too)."""
    chunks = []
    try:
        while data := sock.recv(65536):
            chunks.append(data)
    except (ConnectionResetError, TimeoutError):
        pass
    return b"".join(chunks)


def read_response(stream) -> tuple[bytes, bytes]:
    """One response (head, body) from a raw keep-alive connection's `makefile("rb")`."""
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        line = stream.readline()
        assert line, "the server closed the connection"
        head += line
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    return head, stream.read(length)


def doc_ids(state: Path) -> dict[str, str]:
    """origin_uri → doc_id, straight from the store."""
    db = sqlite3.connect(state / "documents.sqlite")
    try:
        return dict(db.execute("SELECT origin_uri, doc_id FROM documents").fetchall())
    finally:
        db.close()


def wait_job(client: Client, job_id: str, timeout: float = 20.0) -> dict:
    """The job's status once it is terminal."""
    def done():
        body = client.get(f"/ingest/{job_id}").json
        return body if body["status"] in ("succeeded", "partial", "failed") else None

    return wait_for(done, timeout=timeout, message=f"job {job_id} to finish")


def trigger(client: Client, source: str, timeout: float = 20.0) -> Resp:
    """POST /ingest until it is accepted: a 409 names the job in the way, which is waited
    for (a job is reported finished a moment before its source is free again)."""
    def accepted():
        r = client.post("/ingest", {"source": source})
        if r.status == 202:
            return r
        r.error(409, "busy")
        wait_job(client, r.json["job_id"])
        return None

    return wait_for(accepted, timeout=timeout, message=f"a job for {source} to be accepted")


def wait_taken(setup: "Setup", client: Client, timeout: float = 30.0) -> None:
    """Wait until the watcher has taken every file with content (empty ones are refused
    and may stay) and no job is queued or running."""
    def taken():
        for entry in os.scandir(setup.inbox):
            try:
                if entry.is_file() and entry.stat().st_size:
                    return False
            except FileNotFoundError:
                return False
        return not any(client.get(f"/jobs?status={s}").json["jobs"] for s in ("queued", "running"))

    wait_for(taken, timeout=timeout, message="the files to be taken")


def wait_idle(client: Client, timeout: float = 30.0) -> None:
    def idle():
        return all(not client.get(f"/jobs?status={s}").json["jobs"] for s in ("queued", "running"))

    wait_for(idle, timeout=timeout, message="no job queued or running")

