"""The status API's HTTP layer on the standard library's http.server.

Everything that touches a client's socket lives here: limits on the request line,
headers and body; the socket timeout for idle or stalling clients; reading the body
outside a slot and computing the answer inside one; writing every answer, the stdlib's
own errors included, as JSON. What to answer is `ApiServer.handle`'s business (service.py).
"""

from __future__ import annotations

import json
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from urllib.parse import urlsplit

from pydantic import BaseModel

from ingestd._lib import redact
from ingestd._lib.paths import display
from ingestd.api.models import ErrorResponse
from ingestd.api.routes import ApiError, Reply

MAX_REQUEST_LINE = 8 * 1024
MAX_HEADER_BYTES = 16 * 1024
MAX_BODY_BYTES = 4 * 1024  # a trigger is `{"source": "..."}`; nothing legitimate is bigger
DRAIN_BYTES = 64 * 1024  # an oversized body up to this is read and dropped, so the client sees its 413
SLOW_REQUEST = 1.0  # seconds; a request slower than this is logged at warning

_STDLIB_CODES = {400: "bad_request", 408: "request_timeout", 414: "uri_too_long", 431: "headers_too_large",
                 501: "not_implemented", 505: "http_version_not_supported"}


class _Budget:
    """A reader that hands out at most `limit` bytes, so headers cannot grow without bound
    (the stdlib alone allows 100 lines of 64 KiB each)."""

    def __init__(self, raw, limit: int):
        self.raw, self.left, self.exceeded = raw, limit, False

    def readline(self, size: int = -1) -> bytes:
        if self.left <= 0:
            self.exceeded = True
            return b""
        want = self.left if size is None or size < 0 else min(size, self.left)
        line = self.raw.readline(want)
        self.left -= len(line)
        if self.left <= 0 and not line.endswith(b"\n"):
            self.exceeded = True
        return line


class Handler(BaseHTTPRequestHandler):
    """One client connection. Unlike the stdlib's handlers it does not serve the whole
    connection from its constructor: the server calls `serve_one` on a pool thread each
    time a request arrives, and parks the connection in between (server.py)."""

    protocol_version = "HTTP/1.1"  # keep-alive: a poller reuses its connection
    wbufsize = 64 * 1024  # headers and body leave in one send (the stdlib flushes after each request)
    default_request_version = "HTTP/1.0"  # so even an answer to garbage has a status line and headers
    server_version = "ingestd"
    sys_version = ""

    def __init__(self, request, client_address, server):  # noqa: D107 - the stdlib's would serve here
        self.request, self.client_address, self.server = request, client_address, server
        self.setup()

    def setup(self) -> None:
        self.timeout = self.server.api.socket_timeout  # the handler timeout: idle or stalling clients go
        self._started = time.monotonic()
        super().setup()

    def serve_one(self) -> bool:
        """Answer one request; returns whether the connection stays open for another."""
        self.close_connection = True
        self.handle_one_request()
        return not self.close_connection

    def has_buffered(self) -> bool:
        """Whether the client's next request is already in our read buffer (pipelined),
        where a selector cannot see it. Looks without waiting."""
        self.connection.setblocking(False)
        try:
            return bool(self.rfile.peek(1))
        except OSError:
            return False
        finally:
            self.connection.settimeout(self.timeout)

    def close(self) -> None:
        try:
            self.finish()
        except OSError:
            pass  # the client is gone; what was left unsent stays unsent
        finally:
            self.server.shutdown_request(self.request)

    def version_string(self) -> str:
        return self.server_version

    def parse_request(self) -> bool:
        self._started = time.monotonic()
        self._body, self._body_error = None, None
        if len(self.raw_requestline) > MAX_REQUEST_LINE:
            self.requestline, self.request_version, self.command = "", "", ""
            self.send_error(414, "the request line is too long")
            return False
        raw, self.rfile = self.rfile, _Budget(self.rfile, MAX_HEADER_BYTES)
        try:
            ok = super().parse_request()
        finally:
            budget, self.rfile = self.rfile, raw
        if ok and budget.exceeded:
            self.send_error(431, f"request headers are larger than {MAX_HEADER_BYTES} bytes")
            return False
        if ok and len(self.requestline.split()) != 3:
            self.send_error(400, "HTTP/0.9 requests are not supported")
            return False
        return ok

    # every method goes through one place: unknown paths 404, known paths with the wrong method 405
    def do_GET(self):
        self._serve()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_TRACE = do_GET

    def _serve(self) -> None:
        """Socket I/O happens outside a slot, the CPU work inside one: however many
        clients poll, at most a few requests compete with ingestion for the interpreter,
        and a client that trickles its body or stops reading ties up only its own thread."""
        api = self.server.api
        with api.tracking():
            self._prefetch_body()
            self.server.request_read(self)
            with api.slot():
                reply, route = api.handle(self)
                if api.draining:
                    self.close_connection = True
                data = self._render(reply)
                api.metrics.request(route, self.command, reply.status)
                elapsed = time.monotonic() - self._started
                log = api.log.warning if elapsed > SLOW_REQUEST else api.log.info
                log("http request", method=self.command, path=display(urlsplit(self.path).path)[:200],
                    status=reply.status, duration_ms=round(elapsed * 1000, 2),
                    client=self.client_address[0] if self.client_address else None)
            self._write(data)

    def _prefetch_body(self) -> None:
        """Read a small body now, whatever the route (so the connection stays in step);
        what is wrong with it is kept and reported after authentication and routing."""
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            self._body_error = ApiError(411, "length_required", "send the body with a Content-Length, not chunked")
            return
        declared = self.headers.get("Content-Length")
        if declared is None:
            return
        if not declared.isdigit():
            self.close_connection = True
            self._body_error = ApiError(400, "bad_request", "Content-Length is not a number")
            return
        length = int(declared)
        if length > MAX_BODY_BYTES:
            self._discard(length)
            self._body_error = ApiError(413, "body_too_large", f"the body is larger than {MAX_BODY_BYTES} bytes")
            return
        try:
            self._body = self.rfile.read(length)
        except (TimeoutError, OSError):
            self._body = b""
            self.close_connection = True
            self._body_error = ApiError(408, "request_timeout", "the body did not arrive in time")
            return
        if len(self._body) < length:
            self.close_connection = True
            self._body_error = ApiError(400, "bad_request", "the body is shorter than its Content-Length")

    def read_body(self) -> bytes:
        """The request body for a route that takes one; raises what the client got wrong."""
        if self._body_error is not None:
            raise self._body_error
        if self._body is None:
            raise ApiError(411, "length_required", "a request body with a Content-Length is required")
        if not _is_json(self.headers.get("Content-Type")):
            raise ApiError(415, "unsupported_media_type", "send the body as application/json (UTF-8)")
        return self._body

    def _discard(self, length: int) -> None:
        """Read and drop a small refused body so the client is not reset before it reads
        our answer; a big one is not worth the bandwidth: the connection just closes."""
        if length > DRAIN_BYTES:
            self.close_connection = True
            return
        try:
            self.rfile.read(length)
        except (TimeoutError, OSError):
            self.close_connection = True

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The stdlib's own errors (bad request line, header limits, unknown verbs) as JSON."""
        self.close_connection = True
        text = message or HTTPStatus(code).phrase
        self._write(self._render(Reply(code, ErrorResponse(error=_STDLIB_CODES.get(code, "bad_request"),
                                                           message=text))))
        self.server.api.log.info("http request", method=getattr(self, "command", None) or None, status=code,
                                 client=self.client_address[0] if self.client_address else None)

    def _render(self, reply: Reply) -> bytes:
        """The whole response, status line to body, as bytes (written later, outside a slot)."""
        data = _encode(reply.body)
        headers = {"Server": self.server_version, "Date": self.date_time_string(),
                   "Content-Type": reply.content_type, "Content-Length": str(len(data)),
                   "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", **reply.headers}
        if self.close_connection:
            headers["Connection"] = "close"
        lines = [f"HTTP/1.1 {reply.status} {HTTPStatus(reply.status).phrase}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        return head if self.command == "HEAD" else head + data

    def _write(self, data: bytes) -> None:
        try:
            self.wfile.write(data)
            self.wfile.flush()
        except (TimeoutError, OSError):
            self.close_connection = True  # the client went away or stopped reading

    def log_request(self, code="-", size="-") -> None:
        pass  # one access line per request comes from _serve, through structlog

    def log_error(self, fmt: str, *args) -> None:
        self.server.api.log.warning("http error", detail=display(fmt % args)[:300],
                                    client=self.client_address[0] if self.client_address else None)


def _is_json(content_type: str | None) -> bool:
    if not content_type:
        return False
    media, _, params = content_type.partition(";")
    if media.strip().lower() != "application/json":
        return False
    charset = params.strip().lower()
    return not charset or charset.replace(" ", "") in ("charset=utf-8", 'charset="utf-8"')


def _encode(body: BaseModel | bytes) -> bytes:
    """JSON with secrets scrubbed; ASCII-only, so even a lone surrogate from a hostile
    file name cannot make encoding fail."""
    if isinstance(body, bytes):
        return body
    data = redact.scrub(body.model_dump(mode="json", by_alias=True))
    return json.dumps(data, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode()
