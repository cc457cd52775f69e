"""Test support for the s3 connector: moto's threaded server on 127.0.0.1 with a request
log, and a per-test environment (state dir, registry, config, runs, secret scan).

The request log is a WSGI wrapper around moto's app, installed on the running server,
so every request the connector sends over real HTTP is seen (and can be answered by a
test hook instead: throttling, a mid-sync change). The fixture proves the wrapper is in
the request path before any test relies on its counts.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import threading
import urllib.request
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote_to_bytes

import boto3
from botocore.config import Config

from tests.conftest import make_secret
from tests.support.helpers import run_cli, write_config

BUCKET = "docs"
SOURCE = "bucket"
ACCESS_KEY = "AKIAINGESTDTEST00001"


@dataclass(frozen=True)
class Request:
    method: str
    bucket: str
    key: str
    query: dict
    access_key: str | None = None  # from the SigV4 Authorization header (or presigned query)

    @property
    def per_object(self) -> bool:
        return bool(self.key)

    @property
    def is_list(self) -> bool:
        return self.method == "GET" and not self.key and "list-type" in self.query


class RequestLog:
    """WSGI middleware: records each request; a hook may answer it instead of moto."""

    def __init__(self, app):
        self.app = app
        self.lock = threading.Lock()
        self.requests: list[Request] = []
        self.hooks: list = []
        self.hook_errors: list[BaseException] = []

    def __call__(self, environ, start_response):
        req = _describe(environ)
        with self.lock:
            self.requests.append(req)
            hooks = list(self.hooks)
        for hook in hooks:
            try:
                answer = hook(req)
            except BaseException as exc:  # surfaced by the fixture: a hook bug must fail the test
                self.hook_errors.append(exc)
                answer = None
            if answer is not None:
                status, headers, body = answer
                start_response(status, headers)
                return [body]
        return self.app(environ, start_response)

    def clear(self) -> None:
        with self.lock:
            self.requests.clear()
            self.hooks.clear()
            self.hook_errors.clear()

    def count(self, method: str | None = None, *, per_object: bool | None = None, key: str | None = None) -> int:
        with self.lock:
            rows = list(self.requests)
        return sum(
            1 for r in rows
            if (method is None or r.method == method) and (per_object is None or r.per_object == per_object)
            and (key is None or r.key == key) and r.bucket != "moto-api"
        )

    def lists(self) -> int:
        with self.lock:
            return sum(1 for r in self.requests if r.is_list)

    def access_keys(self, *, s3_only: bool = True) -> set[str]:
        """The access key ids that signed requests (S3 requests name a bucket)."""
        with self.lock:
            return {r.access_key for r in self.requests if r.access_key and (r.bucket or not s3_only)}

    def summary(self) -> Counter:
        with self.lock:
            return Counter((r.method, "object" if r.per_object else "bucket") for r in self.requests)


def _describe(environ) -> Request:
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI") or environ.get("PATH_INFO", "")
    path, _, query = raw.partition("?")
    text = unquote_to_bytes(path).decode("utf-8", "surrogateescape")
    bucket, _, key = text.lstrip("/").partition("/")
    params = parse_qs(query, keep_blank_values=True)
    auth = environ.get("HTTP_AUTHORIZATION", "")
    credential = auth.partition("Credential=")[2] or (params.get("X-Amz-Credential") or [""])[0]
    return Request(environ["REQUEST_METHOD"], bucket, key, params, credential.partition("/")[0] or None)


def s3_error(status: str, code: str, message: str, request_id: str):
    """A hook answer shaped like S3's own error responses."""
    body = (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>{message}</Message>'
            f"<RequestId>{request_id}</RequestId></Error>").encode()
    headers = [("Content-Type", "application/xml"), ("Content-Length", str(len(body))),
               ("x-amz-request-id", request_id)]
    return status, headers, body


class MotoS3:
    """moto's ThreadedMotoServer on 127.0.0.1 with a real, OS-chosen port."""

    def __init__(self):
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.server.start()
        self.host, self.port = self.server.get_host_and_port()
        wsgi = getattr(self.server, "_server", None)
        if wsgi is None or not hasattr(wsgi, "app"):
            raise RuntimeError("this moto version does not expose its WSGI server; update RequestLog wiring")
        self.log = RequestLog(wsgi.app)
        wsgi.app = self.log
        self._client = None
        self._post("/moto-api/reset")
        if not self._saw_reset():
            raise RuntimeError("the request log does not see requests; counts would be meaningless")
        self.reset()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _saw_reset(self) -> bool:
        with self.log.lock:
            return any(r.bucket == "moto-api" for r in self.log.requests)

    def _post(self, path: str, data: bytes = b"") -> None:
        req = urllib.request.Request(self.url + path, data=data, method="POST", headers={"Content-Type": "text/plain"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            resp.read()

    def reset(self) -> None:
        """Back to an empty account with authentication off; forget requests and hooks."""
        self._post("/moto-api/reset-auth", b"inf")
        self._post("/moto-api/reset")
        self.log.clear()

    def require_auth(self) -> None:
        """From now on moto checks signatures and IAM policies, as AWS does."""
        self._post("/moto-api/reset-auth", b"0")

    def client(self, service: str = "s3", key: str = ACCESS_KEY, secret: str = "setup-secret"):
        return boto3.client(
            service, endpoint_url=self.url, region_name="us-east-1", aws_access_key_id=key,
            aws_secret_access_key=secret,
            config=Config(s3={"addressing_style": "path"}, request_checksum_calculation="when_required",
                          response_checksum_validation="when_required", retries={"max_attempts": 1}),
        )

    @property
    def s3(self):
        if self._client is None:
            self._client = self.client()
        return self._client

    def put(self, key: str, body: bytes, bucket: str = BUCKET) -> str:
        """Upload and return the ETag (unquoted)."""
        return self.s3.put_object(Bucket=bucket, Key=key, Body=body)["ETag"].strip('"')

    def stop(self) -> None:
        self.server.stop()


_PLUGINS = None


def plugins():
    global _PLUGINS
    if _PLUGINS is None:
        from ingestd.plugin.manager import Plugins

        _PLUGINS = Plugins().load()
    return _PLUGINS


class S3Env:
    """One test's ingestd: a state dir, a registry holding a secret, an s3 source."""

    def __init__(self, root: Path, moto: MotoS3):
        self.root = root
        self.moto = moto
        self.state = root / "state"
        self.config = root / "ingestd.toml"
        self.registry = root / "credentials.json"
        self.secret = make_secret("s3")
        self.outputs: list[str] = []
        self.extra_secrets: list[str] = []  # secrets living outside the registry (AWS files, env)
        self.secret_files: set[Path] = {self.registry}
        self.credentials = {"minio": {"type": "aws", "access_key_id": ACCESS_KEY, "secret_access_key": self.secret}}
        self.write_registry()
        self.write()

    def write_registry(self) -> None:
        self.registry.write_text(json.dumps(self.credentials))
        os.chmod(self.registry, 0o600)

    def write(self, **options) -> Path:
        source = {"name": SOURCE, "kind": "s3", "bucket": BUCKET, "endpoint_url": self.moto.url,
                  "addressing_style": "path", "credentials": "minio", **options}
        source = {k: v for k, v in source.items() if v is not None}
        return write_config(self.config, daemon={"state_dir": "state", "log_format": "json", "log_level": "debug"},
                            credentials={"registry": "credentials.json"}, sources=[source])

    # -- running jobs -----------------------------------------------------------------

    def cli(self, *args: str, timeout: float = 120):
        result = run_cli(*args, "--config", self.config, timeout=timeout)
        self.outputs += [result.stdout, result.stderr]
        assert "Traceback" not in result.stderr, result.stderr
        return result

    def ingest_cli(self) -> tuple[int, dict]:
        """`ingestd ingest` as a child process; (exit code, manifest)."""
        result = self.cli("ingest", SOURCE, "--json")
        return result.returncode, json.loads(result.stdout)

    @contextlib.contextmanager
    def app(self):
        """An in-process App (one connector, one client) whose log output is captured."""
        from ingestd._lib import logs
        from ingestd.app import App, load_config

        stream = io.StringIO()
        logs.setup(level="debug", fmt="json", stream=stream)
        application = App(load_config(self.config, plugins()), plugins())
        try:
            yield application
        finally:
            application.close()
            self.outputs.append(stream.getvalue())

    def run(self, stop: threading.Event | None = None) -> dict:
        """One job in this process (faster than a child; moto sees the same HTTP)."""
        with self.app() as application:
            return application.run_job(SOURCE, "cli", stop=stop).to_json()

    # -- reading results --------------------------------------------------------------

    def items(self, manifest: dict) -> list[dict]:
        path = self.state / "jobs" / manifest["items_file"]
        return [json.loads(line) for line in path.read_text().splitlines()]

    def documents(self) -> dict:
        """origin URI → Document, for every document of the source."""
        import sqlite3

        from ingestd.store.catalogue import Store

        db = sqlite3.connect(self.state / "documents.sqlite")
        try:
            ids = [r[0] for r in db.execute("SELECT doc_id FROM documents")]
        finally:
            db.close()
        store = Store(self.state)
        try:
            docs = [store.get(i) for i in ids]
        finally:
            store.close()
        return {d.origin_uri: d for d in docs}

    def log_lines(self) -> list[dict]:
        out = []
        for text in self.outputs:
            for line in text.splitlines():
                if line.startswith("{"):
                    out.append(json.loads(line))
        return out

    # -- the secret scan ----------------------------------------------------------------

    def secrets(self) -> list[str]:
        found = [v for entry in self.credentials.values() for k, v in entry.items()
                 if ("secret" in k or "token" in k) and isinstance(v, str)]
        return found + self.extra_secrets

    def leaks(self) -> list[str]:
        """Where a secret value appears: any file under the test root but the registry,
        or any captured output. Returns descriptions; empty means clean."""
        found = []
        needles = [s.encode() for s in self.secrets()]
        for path in self.root.rglob("*"):
            if path in self.secret_files or not path.is_file() or path.is_symlink():
                continue
            data = path.read_bytes()
            found += [f"{path.relative_to(self.root)}" for n in needles if n in data]
        for i, text in enumerate(self.outputs):
            found += [f"output #{i}" for s in self.secrets() if s in text]
        return found

    def scanned(self) -> int:
        """How many manifests the scan covered (a scan of nothing proves nothing)."""
        return len(list((self.state / "jobs").glob("*.json"))) if (self.state / "jobs").exists() else 0
