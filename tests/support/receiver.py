"""A webhook receiver for the sink tests: a real stdlib HTTP server on 127.0.0.1 that
records every POST and answers as told (a status, a hang, or not at all when down)."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Receiver:
    def __init__(self, port: int = 0):
        self.posts: list[dict] = []  # {"headers", "body", "status"} for every POST, answered or not
        self.script: list[int | str] = []  # answers for the next POSTs: a status, "hang", or "hold" (200 on release)
        self.release = threading.Event()  # ends every hang
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self.port = port
        self.up()

    def up(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver._lock:
                    answer = receiver.script.pop(0) if receiver.script else 200
                    receiver.posts.append({"headers": dict(self.headers), "body": body,
                                           "status": 200 if answer == "hold" else answer, "path": self.path})
                if answer == "hang":
                    receiver.release.wait(60)
                    return
                if answer == "hold":  # answered 200 once released: a sender paused meanwhile finds it later
                    receiver.release.wait(60)
                    answer = 200
                self.send_response(answer)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def down(self) -> None:
        """Stop listening: connections are refused until `up()` binds the same port again."""
        self._server.shutdown()
        self._server.server_close()

    def close(self) -> None:
        self.release.set()
        self.down()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    # -- what arrived ---------------------------------------------------------------------

    def accepted(self) -> list[dict]:
        """The changes of every batch answered 2xx, in arrival order (duplicates kept)."""
        with self._lock:
            posts = list(self.posts)
        return [c for p in posts if isinstance(p["status"], int) and 200 <= p["status"] < 300
                for c in json.loads(p["body"])["changes"]]

    def cursors(self) -> list[str]:
        return [c["cursor"] for c in self.accepted()]


def verify(secret: bytes, body: bytes, header: str) -> bool:
    """What a receiver does (docs/sinks.md): recompute, compare in constant time."""
    expected = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header)
