"""The status HTTP API, on the standard library's http.server.

(First cut: health and job status. The full surface — job listing, triggering, sources,
documents, metrics, OpenAPI, bearer tokens — is issue 4.)
"""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from . import logs
from .errors import NotFoundError, UsageError

_JOB = re.compile(r"^/ingest/([^/]+)$")


def _split(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class ApiServer:
    def __init__(self, daemon):
        host, port = _split(daemon.config.http.listen)
        if ":" in host:
            _Server.address_family = __import__("socket").AF_INET6
        self.server = _Server((host, port), _handler_for(daemon))
        self._thread = threading.Thread(target=self.server.serve_forever, name="http", daemon=True)

    @property
    def address(self) -> str:
        host, port = self.server.server_address[:2]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _handler_for(daemon):
    log = logs.get("ingestd.http")

    class Handler(BaseHTTPRequestHandler):
        timeout = 10
        server_version = "ingestd"
        sys_version = ""

        def log_message(self, fmt, *args):  # access log through structlog
            log.debug("http request", client=self.client_address[0], request=fmt % args)

        def do_GET(self):
            path = self.path.split("?", 1)[0]
            if path == "/healthz":
                checks = daemon.health()
                ok = all(c["ok"] for c in checks.values())
                body = {"status": "ok" if ok else "unhealthy", "version": daemon.version,
                        "uptime_s": round(time.time() - daemon.started_at, 3), "checks": checks}
                return self._send(200 if ok else 503, body)
            match = _JOB.match(path)
            if match:
                try:
                    manifest = daemon.app.jobs.get(match.group(1))
                except UsageError:
                    return self._send(400, {"error": "bad_request", "message": "malformed job id"})
                except NotFoundError:
                    return self._send(404, {"error": "not_found", "message": "no such job"})
                return self._send(200, manifest.to_json())
            return self._send(404, {"error": "not_found", "message": "no such endpoint"})

        def _send(self, status: int, body) -> None:
            data = json.dumps(body, allow_nan=False, default=str).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler
