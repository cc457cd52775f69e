"""A fault-injecting HTTP/1.1 reverse proxy on 127.0.0.1, for the remote-fault campaign.

It sits between a connector and its fake service (moto for S3, the fake Graph for
SharePoint) and, per request, either passes the exchange through or injects one fault:

    500        an internal error, in the service's own error format
    503        service unavailable (S3: `ServiceUnavailable`; Graph: with Retry-After)
    slowdown   S3's throttling answer: 503 with `<Code>SlowDown</Code>`
    429        too many requests, with Retry-After
    reset      the connection is reset (RST) before any response byte
    stall      headers and half the body, then nothing for `stall_seconds`, then close
    truncate   headers with the full Content-Length, half the body, then close
    short      half the body, with a Content-Length saying that is all (a well-formed
               answer that lies: only a size or hash check can catch it)

Faults come from rules (`Rule(kind, match, times)`, first match wins, each a bounded
number of times) and, for requests no rule takes, from a seeded random draw. The draw is
a pure function of (seed, method, path, how many times that path was asked before), so
a run's faults do not depend on how threads interleave.

Random faults and rules without a `match` apply only to the service's data requests
(`Flavour.eligible`): for Graph that leaves sign-in (OpenID configuration, token) alone,
and moto's control API is never touched; a rule with a `match` takes what it matches.

Status faults are answered by the proxy without asking upstream; body faults forward
the request and damage the real answer. For TLS services the proxy terminates TLS with a
certificate from the test CA and talks TLS to the upstream.
"""

from __future__ import annotations

import hashlib
import http.client
import random
import socket
import socketserver
import ssl
import struct
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

STATUS_FAULTS = ("500", "503", "slowdown", "429")
BODY_FAULTS = ("stall", "truncate", "short")
KINDS = STATUS_FAULTS + ("reset",) + BODY_FAULTS
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization", "te",
              "trailer", "trailers", "transfer-encoding", "upgrade", "content-length"}
MAX_HEAD = 64 * 1024
REASONS = {500: "Internal Server Error", 503: "Service Unavailable", 429: "Too Many Requests"}


@dataclass(frozen=True)
class Request:
    method: str
    target: str  # as sent: path and query, still percent-encoded
    headers: dict  # lower-cased names

    @property
    def path(self) -> str:
        return unquote(urlsplit(self.target).path)

    @property
    def query(self) -> str:
        return urlsplit(self.target).query


@dataclass
class Rule:
    """Inject `kind` into the next `times` requests that `match` (None: any eligible)."""

    kind: str
    match: object = None  # callable(Request) -> bool
    times: int = 1
    used: int = 0

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; one of {KINDS}")


@dataclass
class Exchange:
    """One request the proxy saw, and what it did with it."""

    method: str
    path: str
    fault: str | None  # the fault injected, None when passed through
    status: int | None  # the status the client was sent (None: reset before any)
    request_id: str
    target: str = ""  # path and query as sent
    at: float = field(default_factory=time.monotonic)  # when the request had been read


class Flavour:
    """What a service's errors look like, and which of its requests may be faulted."""

    name = "generic"
    kinds: tuple[str, ...] = KINDS

    def eligible(self, req: Request) -> bool:
        return True

    def error(self, kind: str, request_id: str, retry_after: str) -> tuple[int, list[tuple[str, str]], bytes]:
        status = {"500": 500, "503": 503, "slowdown": 503, "429": 429}[kind]
        body = f"injected {kind}".encode()
        return status, [("Content-Type", "text/plain")], body


class S3Flavour(Flavour):
    name = "s3"
    kinds = KINDS
    _CODES = {"500": ("InternalError", "We encountered an internal error. Please try again."),
              "503": ("ServiceUnavailable", "Please reduce your request rate."),
              "slowdown": ("SlowDown", "Please reduce your request rate."),
              "429": ("TooManyRequests", "Please slow down.")}

    def eligible(self, req: Request) -> bool:
        return not req.path.startswith("/moto-api")

    def error(self, kind, request_id, retry_after):
        status = {"500": 500, "503": 503, "slowdown": 503, "429": 429}[kind]
        code, message = self._CODES[kind]
        body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>'
                f"<RequestId>{request_id}</RequestId><HostId>fault-proxy</HostId></Error>").encode()
        headers = [("Content-Type", "application/xml"), ("x-amz-request-id", request_id)]
        if kind == "429":
            headers.append(("Retry-After", retry_after))
        return status, headers, body


class GraphFlavour(Flavour):
    name = "graph"
    kinds = ("500", "503", "429", "reset", "stall", "truncate", "short")  # Graph has no SlowDown

    def eligible(self, req: Request) -> bool:
        return req.path.startswith("/v1.0/") or req.path.endswith("/_layouts/15/download.aspx")

    def error(self, kind, request_id, retry_after):
        status = {"500": 500, "503": 503, "slowdown": 503, "429": 429}[kind]
        code = {500: "generalException", 503: "serviceNotAvailable", 429: "TooManyRequests"}[status]
        body = ('{"error": {"code": "%s", "message": "injected by the fault proxy", "innerError": '
                '{"request-id": "%s"}}}' % (code, request_id)).encode()
        headers = [("Content-Type", "application/json"), ("request-id", request_id)]
        if status in (429, 503):
            headers.append(("Retry-After", retry_after))
        return status, headers, body


FLAVOURS = {"s3": S3Flavour, "graph": GraphFlavour, "generic": Flavour}


@dataclass
class Chance:
    """The random part of a plan: each eligible request is faulted with probability
    `rate`, the kind drawn uniformly from `kinds`."""

    seed: int
    rate: float
    kinds: tuple[str, ...] = ()

    def draw(self, method: str, path: str, nth: int, kinds: tuple[str, ...]) -> str | None:
        digest = hashlib.sha256(f"{self.seed}\0{method}\0{path}\0{nth}".encode("utf-8", "surrogatepass")).digest()
        rng = random.Random(int.from_bytes(digest[:8], "big"))
        if rng.random() >= self.rate:
            return None
        return rng.choice(self.kinds or kinds)


class FaultProxy:
    """The proxy. Use as a context manager, or call `start()` and `stop()`."""

    def __init__(self, upstream: str, *, flavour: str = "generic", server_tls: ssl.SSLContext | None = None,
                 upstream_tls: ssl.SSLContext | None = None, stall_seconds: float = 3.0, retry_after: str = "0",
                 upstream_timeout: float = 30.0):
        parts = urlsplit(upstream)
        self.upstream_host, self.upstream_port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
        self.upstream_https = parts.scheme == "https"
        self.upstream_tls = upstream_tls
        self.server_tls = server_tls
        self.flavour: Flavour = FLAVOURS[flavour]()
        self.stall_seconds = stall_seconds
        self.retry_after = retry_after
        self.upstream_timeout = upstream_timeout
        self.rules: list[Rule] = []
        self.chance: Chance | None = None
        self.lock = threading.Lock()
        self.exchanges: list[Exchange] = []
        self.errors: list[BaseException] = []  # proxy bugs: a test must fail on them
        self._seen: Counter = Counter()
        self._closing = threading.Event()  # ends stalls early when the proxy stops
        self._server = _Server(("127.0.0.1", 0), _Handler, proxy=self)
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"{'https' if self.server_tls else 'http'}://127.0.0.1:{self.port}"

    def start(self) -> "FaultProxy":
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fault-proxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> "FaultProxy":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- scripting --------------------------------------------------------------------

    def rule(self, kind: str, match=None, times: int = 1) -> Rule:
        rule = Rule(kind, match, times)
        with self.lock:
            self.rules.append(rule)
        return rule

    def randomly(self, seed: int, rate: float, kinds: tuple[str, ...] = ()) -> None:
        unknown = set(kinds) - set(self.flavour.kinds)
        if unknown:
            raise ValueError(f"{sorted(unknown)} cannot be injected into {self.flavour.name} traffic")
        with self.lock:
            self.chance = Chance(seed, rate, tuple(kinds))

    def calm(self) -> None:
        """No more faults: rules and the random draw are dropped (the log is kept)."""
        with self.lock:
            self.rules.clear()
            self.chance = None

    def clear(self) -> None:
        with self.lock:
            self.exchanges.clear()
            self._seen.clear()

    # -- reading the log --------------------------------------------------------------

    def injected(self) -> Counter:
        with self.lock:
            return Counter(e.fault for e in self.exchanges if e.fault)

    def count(self, match=None) -> int:
        with self.lock:
            return sum(1 for e in self.exchanges if match is None or match(e))

    def snapshot(self) -> list[Exchange]:
        with self.lock:
            return list(self.exchanges)

    # -- deciding ---------------------------------------------------------------------

    def decide(self, req: Request) -> str | None:
        """A rule with a `match` applies to whatever it matches (sign-in included); a rule
        without one, and the random draw, only to the service's data requests."""
        eligible = self.flavour.eligible(req)
        with self.lock:
            for rule in self.rules:
                if rule.used < rule.times and (rule.match(req) if rule.match is not None else eligible):
                    rule.used += 1
                    return rule.kind
            if not eligible:
                return None
            nth = self._seen[(req.method, req.path)]
            self._seen[(req.method, req.path)] += 1
            chance = self.chance
        if chance is None:
            return None
        return chance.draw(req.method, req.path, nth, self.flavour.kinds)

    def record(self, req: Request, fault: str | None, status: int | None, request_id: str) -> None:
        with self.lock:
            self.exchanges.append(Exchange(req.method, req.path, fault, status, request_id, req.target))


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address, handler, *, proxy: FaultProxy):
        self.proxy = proxy
        super().__init__(address, handler)

    def finish_request(self, request, client_address):
        """TLS is terminated here, in the connection's own thread."""
        tls = self.proxy.server_tls
        if tls is not None:
            try:
                request = tls.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError):
                return
        try:
            self.RequestHandlerClass(request, client_address, self)
        finally:
            if tls is not None:
                try:
                    request.close()
                except OSError:
                    pass

    def handle_error(self, request, client_address):  # a client hanging up is not news
        pass


class _Closed(Exception):
    """The client closed its connection, or a fault ended it."""


class _Handler(socketserver.StreamRequestHandler):
    server: _Server
    disable_nagle_algorithm = True

    def handle(self) -> None:
        proxy = self.server.proxy
        upstream: http.client.HTTPConnection | None = None
        try:
            while True:
                try:
                    req, body = self._read_request()
                except _Closed:
                    return
                upstream, keep = self._exchange(proxy, req, body, upstream)
                if not keep:
                    return
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, TimeoutError, _Closed):
            return
        except BaseException as exc:  # a proxy bug: surfaced to the test, never swallowed
            proxy.errors.append(exc)
            raise
        finally:
            if upstream is not None:
                upstream.close()

    # -- one exchange -----------------------------------------------------------------

    def _read_request(self) -> tuple[Request, bytes]:
        line = self.rfile.readline(MAX_HEAD)
        if not line:
            raise _Closed
        try:
            method, target, _version = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
        except ValueError:
            raise _Closed from None
        headers: list[tuple[str, str]] = []
        while True:
            raw = self.rfile.readline(MAX_HEAD)
            if not raw:
                raise _Closed
            if raw in (b"\r\n", b"\n"):
                break
            name, _, value = raw.decode("latin-1").partition(":")
            headers.append((name.strip(), value.strip()))
        lower = {k.lower(): v for k, v in headers}
        if "chunked" in lower.get("transfer-encoding", "").lower():
            raise AssertionError("the fault proxy does not take chunked request bodies")
        if lower.get("expect", "").lower() == "100-continue":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self.wfile.flush()
        length = int(lower.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        self._raw_headers = headers
        return Request(method, target, lower), body

    def _exchange(self, proxy: FaultProxy, req: Request, body: bytes, upstream):
        fault = proxy.decide(req)
        request_id = f"FAULT-{uuid.uuid4().hex[:16].upper()}"
        if fault == "reset":
            proxy.record(req, fault, None, request_id)
            self._reset()  # raises _Closed
        if fault in STATUS_FAULTS:
            status, headers, data = proxy.flavour.error(fault, request_id, proxy.retry_after)
            proxy.record(req, fault, status, request_id)
            self._respond(status, REASONS[status], headers, data, len(data), keep=True)
            return upstream, True
        upstream = upstream or self._connect(proxy)
        try:
            status, reason, headers, data, length = self._forward(upstream, req, body)
        except (OSError, http.client.HTTPException):
            upstream.close()  # a stale keep-alive connection: one fresh try
            upstream = self._connect(proxy)
            status, reason, headers, data, length = self._forward(upstream, req, body)
        keep = not any(k.lower() == "connection" and v.lower() == "close" for k, v in headers)
        if fault in BODY_FAULTS and req.method != "HEAD" and len(data) >= 2:
            proxy.record(req, fault, status, request_id)
            half = len(data) // 2
            if fault == "short":  # consistent framing, missing bytes: the connection may even stay
                self._respond(status, reason, headers, data[:half], half, keep=keep)
                return upstream, keep
            self._respond(status, reason, headers, data[:half], len(data), keep=False)
            if fault == "stall":
                proxy._closing.wait(proxy.stall_seconds)  # the fault itself: the client must time out
            self._shutdown()
            return upstream, False
        proxy.record(req, None, status, request_id)
        self._respond(status, reason, headers, data, length, keep=keep)
        return upstream, keep

    def _connect(self, proxy: FaultProxy) -> http.client.HTTPConnection:
        if proxy.upstream_https:
            return http.client.HTTPSConnection(proxy.upstream_host, proxy.upstream_port,
                                               timeout=proxy.upstream_timeout, context=proxy.upstream_tls)
        return http.client.HTTPConnection(proxy.upstream_host, proxy.upstream_port, timeout=proxy.upstream_timeout)

    def _forward(self, upstream, req: Request, body: bytes):
        upstream.putrequest(req.method, req.target, skip_host=True, skip_accept_encoding=True)
        for name, value in self._raw_headers:
            if name.lower() not in HOP_BY_HOP:
                upstream.putheader(name, value)
        if body or req.method in ("POST", "PUT", "PATCH"):
            upstream.putheader("Content-Length", str(len(body)))
        upstream.endheaders(body or None)
        resp = upstream.getresponse()
        data = resp.read()
        length = len(data)
        if req.method == "HEAD":  # no body, but the length of the one a GET would get
            length = int(resp.getheader("Content-Length") or 0)
        headers = [(k, v) for k, v in resp.getheaders() if k.lower() not in HOP_BY_HOP]
        if resp.will_close:
            headers.append(("Connection", "close"))
            upstream.close()
        return resp.status, resp.reason, headers, data, length

    # -- writing ----------------------------------------------------------------------

    def _respond(self, status: int, reason: str, headers, data: bytes, length: int, *, keep: bool) -> None:
        head = [f"HTTP/1.1 {status} {reason}"]
        head += [f"{k}: {v}" for k, v in headers if k.lower() != "connection"]
        head.append(f"Content-Length: {length}")
        if not keep:
            head.append("Connection: close")
        self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + data)
        self.wfile.flush()

    def _reset(self) -> None:
        """Close with SO_LINGER 0, so the peer gets a RST rather than a clean end of stream.

        The descriptor is detached first: the handler's file objects still reference the
        socket and would otherwise keep it open (and socketserver would send a FIN)."""
        try:
            raw = socket.socket(fileno=self.connection.detach())
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            raw.close()
        except OSError:
            pass
        raise _Closed

    def _shutdown(self) -> None:
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
