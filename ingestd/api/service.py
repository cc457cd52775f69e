"""The status HTTP API, served by the daemon on the standard library's http.server.

`ApiServer` is what the daemon sees: it binds (and reads the token) at start, serves from
a background thread, and stops letting requests in flight finish. Per request it decides
what to answer: bearer token, then route, then validation of everything the client sent,
then the handler; anything unexpected becomes a 500 without detail. The socket side lives
in `transport/handler.py`, what each endpoint does in `routes.py`.
"""

from __future__ import annotations

import contextlib
import functools
import json
import threading
import time
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, unquote, urlsplit

from pydantic import BaseModel, TypeAdapter, ValidationError

from ingestd._lib import allocator, logs
from ingestd._lib.paths import display
from ingestd.api import openapi
from ingestd.api.auth import BearerAuth
from ingestd.api.metrics import Metrics, registry_for
from ingestd.api.models import ErrorResponse
from ingestd.api.routes import ApiError, Context, Reply, Request, Route, match
from ingestd.api.transport.server import bind
from ingestd.errors import ConfigError

if TYPE_CHECKING:
    from ingestd.api.transport.handler import Handler

SOCKET_TIMEOUT = 10.0  # the handler timeout: an idle keep-alive or a client stalling mid-request is dropped
MAX_CONNECTIONS = 256  # beyond this a connection gets 503 at once instead of a thread
ACTIVE_REQUESTS = 2  # requests being computed at once; the rest wait without using the CPU
STOP_GRACE = 15.0  # how long stop() waits for requests in flight


class Pacer:
    """Spaces requests out to at most `rate` a second (with a short burst allowance).

    Under the GIL, every busy handler thread takes CPU from ingestion in proportion to
    their number, whatever else limits them; a request waiting its turn here stays parked
    without a thread and costs nothing. So 100 clients in a tight loop slow each other
    down, not the daemon.
    """

    BURST = 0.25  # seconds' worth of requests served without waiting

    def __init__(self, rate: float):
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self._next = 0.0
        self._lock = threading.Lock()

    def reserve(self) -> float:
        """The monotonic time at which the next request may be served."""
        now = time.monotonic()
        if not self.interval:
            return now
        with self._lock:
            slot = max(self._next, now - self.BURST)
            self._next = slot + self.interval
        return max(slot, now)


class ApiServer:
    """Serves the API for one daemon on `http.listen` from a background thread."""

    def __init__(self, daemon, *, socket_timeout: float = SOCKET_TIMEOUT, max_connections: int = MAX_CONNECTIONS,
                 active_requests: int = ACTIVE_REQUESTS):
        cfg = daemon.config.http
        # the server's threads share malloc arenas with ingestion: see allocator.py
        allocator.pin_malloc_thresholds()
        self.daemon = daemon
        self.log = logs.get("ingestd.http")
        self.socket_timeout = socket_timeout
        self.auth = self._auth(cfg)
        self.metrics = Metrics()
        self.metrics.seed(daemon.app.jobs.last_succeeded())  # O(sources), not O(jobs)
        daemon.app.lifecycle.subscribe(lambda done: self.metrics.job_finished(done.manifest))
        self.context = Context(daemon=daemon, registry=registry_for(daemon, self.metrics),
                               openapi=self._openapi, draining=lambda: self.draining)
        self._document: bytes | None = None
        self.draining = False
        self._inflight = 0
        self._idle = threading.Condition()
        self._slots = threading.BoundedSemaphore(active_requests)
        self.queued = 0  # requests waiting for a slot: the server holds more back (transport/server.py)
        self.pacer = Pacer(cfg.max_requests_per_second)
        self.server = bind(cfg.host, cfg.port, max_connections)
        self.server.api = self
        serve = functools.partial(self.server.serve_forever, poll_interval=0.1)  # stop() waits at most this
        self._thread = threading.Thread(target=serve, name="http", daemon=True)

    @staticmethod
    def _auth(cfg) -> BearerAuth | None:
        if cfg.token_file is None:
            return None
        try:
            return BearerAuth(cfg.token_file)
        except PermissionError:
            raise ConfigError(f"http.token_file: {cfg.token_file}: cannot read: permission denied "
                              "(the daemon's user must own it)") from None
        except ValueError as exc:  # the file changed since the config was checked
            raise ConfigError(f"http.token_file: {exc}") from None

    @property
    def address(self) -> str:
        host, port = self.server.server_address[:2]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def _openapi(self) -> bytes:
        if self._document is None:
            doc = openapi.build(self.daemon.version, secured=self.auth is not None)
            self._document = json.dumps(doc, ensure_ascii=True).encode()
        return self._document

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def drain(self) -> None:
        """The daemon is stopping: refuse new jobs, keep answering status requests."""
        self.draining = True

    def reload(self) -> None:
        """SIGHUP: re-read the token file (a bad one keeps the old token)."""
        if self.auth is not None:
            self.auth.reload()

    def stop(self, grace: float = STOP_GRACE) -> None:
        """Stop accepting, let requests in flight finish (up to `grace` s), close.

        Safe from any thread but the server's own; idle keep-alive connections are not
        waited for (their threads are daemons and see the server closing)."""
        self.draining = True
        if self._thread.is_alive():
            self.server.shutdown()
        with self._idle:
            if not self._idle.wait_for(lambda: self._inflight == 0, timeout=grace):
                self.log.warning("stopping with requests still in flight", requests=self._inflight)
        self.server.server_close()

    @contextlib.contextmanager
    def tracking(self):
        """Counts a request from its first byte read to its last byte written."""
        with self._idle:
            self._inflight += 1
        try:
            yield
        finally:
            with self._idle:
                self._inflight -= 1
                self._idle.notify_all()

    @contextlib.contextmanager
    def slot(self):
        """One of the few places where an answer is computed, taken in turn."""
        with self._idle:
            self.queued += 1
        try:
            self._slots.acquire()
        finally:
            with self._idle:
                self.queued -= 1
        try:
            yield
        finally:
            self._slots.release()

    # -- one request ----------------------------------------------------------------------

    def handle(self, h: "Handler") -> tuple[Reply, str]:
        """Answer one parsed request; returns the reply and the route name for logs/metrics."""
        route_name = "unmatched"
        try:
            url = urlsplit(h.path)
            route, raw_params, authorized = self._route(h, url.path)
            route_name = route.path
            request = self._request(route, h, url, raw_params, authorized)
            return route.handler(self.context, request), route_name
        except ApiError as exc:
            return Reply(exc.status, exc.body, headers=exc.headers), route_name
        except Exception:
            self.log.exception("request failed", method=h.command, path=display(h.path))
            return Reply(500, ErrorResponse(error="internal", message="internal error; see the daemon log")), \
                route_name

    def _route(self, h: "Handler", path: str) -> tuple[Route, dict[str, str], bool]:
        """Authenticate, then find the route: an anonymous client learns nothing about
        which paths exist."""
        segments = _segments(path)
        authorized = self.auth is None or self.auth.allows(h.headers.get("Authorization"))
        if not authorized and segments != ["healthz"]:
            raise ApiError(401, "unauthorized", "missing or invalid bearer token",
                           headers={"WWW-Authenticate": 'Bearer realm="ingestd"'})
        route, raw_params, allowed = match(h.command, segments)
        if route is None and allowed:
            raise ApiError(405, "method_not_allowed", f"{h.command} is not allowed here; use {', '.join(allowed)}",
                           headers={"Allow": ", ".join(allowed)})
        if route is None:
            raise ApiError(404, "not_found", "no such endpoint")
        return route, raw_params, authorized

    def _request(self, route: Route, h: "Handler", url, raw_params: dict[str, str], authorized: bool) -> Request:
        """Validate everything the client sent before a handler sees it: ids first, so a
        malformed one never reaches anything that could touch a file."""
        params = {name: _valid_param(name, kind, raw_params[name]) for name, kind in route.params.items()}
        query = _valid_query(route, url.query)
        body = self._valid_body(route, h)
        return Request(h.command, url.path, params, query, body, detailed=authorized)

    def _valid_body(self, route: Route, h: "Handler") -> BaseModel | None:
        if route.body is None:
            return None
        return _parse_body(route.body, h.read_body())


def _segments(path: str) -> list[str]:
    """Split first, then decode each segment: an encoded `/` (`..%2F..%2Fetc`) stays
    inside its segment, where the id check refuses it."""
    if not path.startswith("/"):
        return ["\0"]  # matches no route
    try:
        return [unquote(s, errors="strict") for s in path[1:].split("/")]
    except UnicodeDecodeError:
        raise ApiError(400, "bad_request", "the path is not valid UTF-8 once decoded") from None


@functools.lru_cache(maxsize=None)
def _adapter(kind) -> TypeAdapter:
    return TypeAdapter(kind)


def _valid_param(name: str, kind, value: str) -> str:
    try:
        return _adapter(kind).validate_python(value)
    except ValidationError:
        raise ApiError(400, "invalid_id", f"malformed {name}: expected 8-64 of A-Z a-z 0-9 _ -") from None


def _valid_query(route: Route, query: str) -> BaseModel | None:
    if route.query is None:
        return None
    try:
        pairs = parse_qs(query, keep_blank_values=True, max_num_fields=16, errors="strict")
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "invalid_query", "the query string cannot be parsed") from None
    repeated = sorted(k for k, v in pairs.items() if len(v) > 1)
    if repeated:
        raise ApiError(400, "invalid_query", f"repeated query parameter: {display(repeated[0])}")
    try:
        return route.query.model_validate({k: v[0] for k, v in pairs.items()})
    except ValidationError as exc:
        raise ApiError(400, "invalid_query", _explain(exc)) from None


def _parse_body(model: type[BaseModel], raw: bytes) -> BaseModel:
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ApiError(400, "invalid_json", "the body is not valid JSON (UTF-8)") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ApiError(400, "invalid_body", _explain(exc)) from None


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def _explain(exc: ValidationError) -> str:
    """Each problem as `field: message`, without echoing the input back."""
    parts = []
    for err in exc.errors(include_url=False, include_input=False)[:5]:
        where = ".".join(str(p) for p in err["loc"]) or "body"
        parts.append(f"{display(where)[:60]}: {err['msg']}")
    return "; ".join(parts)
