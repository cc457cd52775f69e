"""The status HTTP API, served by the daemon over the transport in `transport/`.

`ApiServer` is what the daemon sees: it binds (and reads the token) at start, serves from
a background thread, and stops letting requests in flight finish. Per request it decides
what to answer: Host, bearer token, route, then validation of everything the client
sent, then the handler; anything unexpected becomes a 500 without detail. The transport
gets its state object (limits, counters, these callables) and knows nothing else of the
service; handlers (`routes.py`) get the daemon's narrow `Backend` and nothing more.
"""

from __future__ import annotations

import functools
import json
import threading
from urllib.parse import parse_qs, unquote, urlsplit

from pydantic import BaseModel, TypeAdapter, ValidationError

from ingestd._lib import allocator, logs, redact
from ingestd._lib.paths import display
from ingestd.api import openapi
from ingestd.api.auth import BearerAuth
from ingestd.api.backend import Backend, NotServed
from ingestd.api.hosts import HostCheck
from ingestd.api.metrics import Collector, Metrics, registry_for
from ingestd.api.models import ErrorResponse
from ingestd.api.routes import ApiError, Context, Reply, Request, Route, match, public
from ingestd.api.transport.http import Request as HttpRequest
from ingestd.api.transport.http import Response, method_label
from ingestd.api.transport.pacer import Pacer
from ingestd.api.transport.server import bind
from ingestd.api.transport.state import Exchange, Limits, ServerState
from ingestd.config import HttpConfig
from ingestd.errors import ConfigError

STOP_GRACE = 15.0  # how long stop() waits for requests in flight


class ApiServer:
    """Serves the API for one daemon on `http.listen` from a background thread."""

    def __init__(self, backend: Backend, cfg: HttpConfig, limits: Limits | None = None):
        # the server's threads share malloc arenas with ingestion: see allocator.py
        allocator.pin_malloc_thresholds()
        self.backend = backend
        self.version = backend.version
        self.log = logs.get("ingestd.http")
        self.auth = self._auth(cfg)
        self.hosts = HostCheck(cfg.host, cfg.allowed_hosts)
        self.metrics = Metrics()
        self.metrics.seed(backend.last_succeeded())  # O(sources), not O(jobs)
        backend.on_job_finished(self.metrics.job_finished)
        self._document: bytes | None = None
        limits = limits or Limits(max_per_client=cfg.max_connections_per_client)
        self.state = ServerState(limits, self.respond, self.finished, Pacer(cfg.max_requests_per_second), self.log)
        registry = registry_for(Collector(backend, self.metrics, lambda: dict(self.state.refused),
                                         held=lambda: self.server.held))
        self.context = Context(backend=backend, registry=registry, openapi=self._openapi,
                               draining=lambda: self.state.draining)
        self.server = bind(cfg.host, cfg.port, self.state)
        # held long-polls (GET /changes?wait=) are answered the moment a change commits;
        # another process's commits are looked for while any is held
        backend.on_change(self.server.wake_held)
        self.state.poll_held = backend.poll_changes
        serve = functools.partial(self.server.serve_forever, poll_interval=0.1)  # stop() waits at most this
        self._thread = threading.Thread(target=serve, name="http", daemon=True)

    @staticmethod
    def _auth(cfg: HttpConfig) -> BearerAuth | None:
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
            doc = openapi.build(self.version, secured=self.auth is not None)
            self._document = json.dumps(doc, ensure_ascii=True).encode()
        return self._document

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def drain(self) -> None:
        """The daemon is stopping: refuse new jobs, keep answering status requests, and
        answer held long-polls now (empty) instead of when their wait is over."""
        self.state.draining = True
        self.server.wake_held()

    def reload(self) -> None:
        """SIGHUP: re-read the token file (a bad one keeps the old token)."""
        if self.auth is not None:
            self.auth.reload()

    def stop(self, grace: float = STOP_GRACE) -> None:
        """Stop accepting, let requests in flight finish (up to `grace` s), close.

        Safe from any thread but the server's own; idle keep-alive connections are closed."""
        self.state.draining = True
        if self._thread.is_alive():
            self.server.shutdown()
        if not self.state.wait_idle(grace):
            self.log.warning("stopping with requests still in flight", requests=self.state.inflight)
        self.server.server_close()

    # -- one request (called by the transport) ----------------------------------------------

    def respond(self, req: HttpRequest) -> Response:
        """Answer one request; a reply the service could not make is a 500 without detail."""
        route_name = "unmatched"
        try:
            route, request = self._parse(req)
            route_name = route.path
            reply = route.handler(self.context, request)
        except ApiError as exc:
            reply = Reply(exc.status, exc.body, headers=exc.headers)
        except NotServed as exc:
            reply = Reply(501, ErrorResponse(error="not_served", message=str(exc)))
        except Exception:
            self.log.exception("request failed", method=method_label(req.method), path=display(req.path)[:200])
            reply = Reply(500, ErrorResponse(error="internal", message="internal error; see the daemon log"))
        return Response(reply.status, _encode(reply.body), reply.headers, reply.content_type, route_name,
                        hold_until=reply.hold_until)

    def finished(self, x: Exchange) -> None:
        """The one access-log line and the metrics of every answer, the transport's own included."""
        busy = x.duration - x.held  # a long-poll's wait is not slowness
        self.metrics.request(x.route, method_label(x.method), x.status, busy)
        log = self.log.warning if busy > self.state.limits.slow_request else self.log.info
        path = display(x.path)[:200] if x.path is not None else None
        extra = {"held_ms": round(x.held * 1000, 2)} if x.held else {}
        log("http request", method=x.method[:32] if x.method else None, path=path, status=int(x.status),
            duration_ms=round(x.duration * 1000, 2), client=x.client, **extra)

    def _parse(self, req: HttpRequest) -> tuple[Route, Request]:
        """Host, then authentication, then the route: an anonymous client learns nothing
        about which paths exist. Then everything the client sent is validated before a
        handler sees it: ids first, so a malformed one never reaches anything that could
        touch a file."""
        if not self.hosts.allows(req.headers.get("Host")):
            raise ApiError(400, "invalid_host", "the Host header names no address this daemon answers to; "
                           "list the name in http.allowed_hosts to use it")
        url = urlsplit(req.target)
        segments = _segments(url.path)
        authorized = self.auth is None or self.auth.allows(req.headers.get("Authorization"))
        if not authorized and not public(segments):
            raise ApiError(401, "unauthorized", "missing or invalid bearer token",
                           headers={"WWW-Authenticate": 'Bearer realm="ingestd"'})
        route, raw_params, allowed = match(req.method, segments)
        if route is None and allowed:
            raise ApiError(405, "method_not_allowed", f"this path answers {', '.join(allowed)}",
                           headers={"Allow": ", ".join(allowed)})
        if route is None:
            raise ApiError(404, "not_found", "no such endpoint")
        params = {name: _valid_param(name, kind, raw_params[name]) for name, kind in route.params.items()}
        query = _valid_query(route, url.query)
        body = _valid_body(route, req)
        return route, Request(req.method, url.path, params, query, body, detailed=authorized, received=req.received)


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


def _valid_body(route: Route, req: HttpRequest) -> BaseModel | None:
    if route.body is None:
        return None
    if req.body is None:
        raise ApiError(411, "length_required", "a request body with a Content-Length is required")
    if not _is_json(req.headers.get("Content-Type")):
        raise ApiError(415, "unsupported_media_type", "send the body as application/json (UTF-8)")
    try:
        data = json.loads(req.body.decode("utf-8"), parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ApiError(400, "invalid_json", "the body is not valid JSON (UTF-8)") from None
    try:
        return route.body.model_validate(data)
    except ValidationError as exc:
        raise ApiError(400, "invalid_body", _explain(exc)) from None


def _is_json(content_type: str | None) -> bool:
    if not content_type:
        return False
    media, _, params = content_type.partition(";")
    if media.strip().lower() != "application/json":
        return False
    charset = params.strip().lower()
    return not charset or charset.replace(" ", "") in ("charset=utf-8", 'charset="utf-8"')


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def _explain(exc: ValidationError) -> str:
    """Each problem as `field: message`, without echoing the input back."""
    parts = []
    for err in exc.errors(include_url=False, include_input=False)[:5]:
        where = ".".join(str(p) for p in err["loc"]) or "body"
        parts.append(f"{display(where)[:60]}: {err['msg']}")
    return "; ".join(parts)


def _encode(body):
    """JSON with secrets scrubbed; ASCII-only, so even a lone surrogate from a hostile
    file name cannot make encoding fail. Bytes and file bodies go out as they are."""
    if not isinstance(body, BaseModel):
        return body
    data = redact.scrub(body.model_dump(mode="json", by_alias=True))
    return json.dumps(data, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode()
