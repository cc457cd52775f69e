"""What each endpoint does, and the one table that lists them.

The table (`ROUTES`) is read by the server to dispatch and validate, and by `openapi.py`
to publish the document, so a route, its parameters and every status it can answer are
declared once. Handlers are plain functions of (context, request) → Reply: no HTTP
parsing here, no sockets, and no filesystem path ever built from client input.
"""

from __future__ import annotations

import io
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import urlencode

from pydantic import BaseModel, ValidationError

from ingestd._lib.times import iso_from_timestamp
from ingestd.api import dashboard
from ingestd.api.backend import Backend, Busy, JobsUnwritable, SinkStatus, SourceView
from ingestd.api.metrics import CONTENT_TYPE as METRICS_TYPE
from ingestd.api.metrics import render
from ingestd.api.models import (
    BusyResponse,
    ChangesQuery,
    ChangesResponse,
    ContentQuery,
    CredentialInfo,
    CursorExpiredResponse,
    DocId,
    DocumentListResponse,
    DocumentResponse,
    DocumentsQuery,
    DocumentSummary,
    ErrorResponse,
    HealthResponse,
    IngestionStatusResponse,
    IngestRequest,
    ItemListResponse,
    ItemResponse,
    ItemsQuery,
    JobId,
    JobListResponse,
    JobsQuery,
    LastJob,
    Links,
    ListLinks,
    SinkDeliveries,
    SinkErrorInfo,
    SinkInfo,
    SinkListResponse,
    SinkName,
    SinkResetRequest,
    SourceInfo,
    SourceListResponse,
    TextFailedResponse,
    SessionResponse,
    ThroughputResponse,
    UnavailableResponse,
    UnhealthyResponse,
)
from ingestd.api.content import disposition
from ingestd.api.transport.http import JSON, FileBody
from ingestd.errors import ConfigError, NotFoundError, Unavailable, UsageError
from ingestd.store.catalogue import Tombstoned
from ingestd.store.feed import CursorExpired

MARKDOWN = "text/markdown; charset=utf-8"


class ApiError(Exception):
    """An error answer: raised anywhere in a handler, rendered as `{"error", "message"}`."""

    def __init__(self, status: int, code: str, message: str, body: BaseModel | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.body = body or ErrorResponse(error=code, message=message)
        self.headers = headers or {}


@dataclass
class Reply:
    status: int
    body: BaseModel | bytes | FileBody
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = JSON
    hold_until: float | None = None  # no answer yet: hold the request until then, or until woken


@dataclass
class Request:
    """A request after the server validated it against its route."""

    method: str
    path: str
    params: dict[str, str]
    query: BaseModel | None
    body: BaseModel | None
    detailed: bool  # authenticated (or no token configured): may see internal detail
    received: float = 0.0  # monotonic time the request arrived (a held request keeps it)


@dataclass
class Context:
    """What handlers may use: the daemon's answers, metrics, and the server's own state."""

    backend: Backend
    registry: Any
    openapi: Callable[[], bytes]
    draining: Callable[[], bool]


Responses = dict[int, type[BaseModel] | tuple[type[BaseModel], ...] | str]


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # a template: "/ingest/{job_id}"
    handler: Callable[[Context, Request], Reply]
    operation_id: str
    summary: str
    responses: Responses
    params: dict[str, Any] = field(default_factory=dict)  # path parameter → annotated type
    query: type[BaseModel] | None = None
    body: type[BaseModel] | None = None
    public: bool = False  # served without a token
    documented: bool = True  # in the OpenAPI document (the dashboard's files are not API)

    @property
    def segments(self) -> list[str]:
        return self.path.strip("/").split("/")


# -- handlers -----------------------------------------------------------------------------


def healthz(ctx: Context, req: Request) -> Reply:
    b = ctx.backend
    checks = b.health()
    failing = sorted(name for name, check in checks.items() if not check["ok"])
    if not req.detailed:  # public endpoint: pass/fail only, no source names or paths
        checks = {name: {"ok": check["ok"]} for name, check in checks.items()}
    common = dict(version=b.version, uptime_s=round(time.time() - b.started_at, 3), checks=checks, failing=failing)
    if failing:
        return Reply(503, UnhealthyResponse(**common, message=f"failing checks: {', '.join(failing)}"))
    return Reply(200, HealthResponse(status="ok", **common))


def post_ingest(ctx: Context, req: Request) -> Reply:
    name = req.body.source
    if ctx.draining():
        raise ApiError(503, "shutting_down", "the daemon is stopping; ask again once it has restarted")
    source = ctx.backend.source(name)
    if source is None:
        raise ApiError(404, "unknown_source", f"no source named {name!r}; GET /sources lists them")
    if not source.enabled:
        raise ApiError(409, "source_disabled", f"source {name!r} is disabled in the config")
    try:
        manifest = ctx.backend.submit(name)
    except Busy as exc:
        m = exc.manifest
        raise ApiError(409, "busy", str(exc), BusyResponse(
            error="busy", message=f"source {name!r} already has job {m.job_id} {m.status}",
            job_id=m.job_id, status=m.status, links=Links(self_=f"/ingest/{m.job_id}"))) from None
    except UsageError:  # removed by a reload since the check above
        raise ApiError(404, "unknown_source", f"no source named {name!r}; GET /sources lists them") from None
    except ConfigError:
        raise _unavailable(ctx.backend.source(name) or source) from None
    except JobsUnwritable:
        raise ApiError(503, "state_unwritable", "the daemon cannot record jobs right now: its state directory "
                       "refuses writes (GET /healthz names the check)") from None
    return Reply(202, IngestionStatusResponse.of(manifest), headers={"Location": f"/ingest/{manifest.job_id}"})


def _unavailable(source: SourceView) -> ApiError:
    remedy = source.remediation or f"install the plugin that provides connector {source.kind!r}"
    message = f"source {source.name!r} cannot run: connector {source.kind!r} is unavailable"
    return ApiError(503, "connector_unavailable", message,
                    UnavailableResponse(error="connector_unavailable", message=message, remediation=remedy))


def get_job(ctx: Context, req: Request) -> Reply:
    try:
        manifest = ctx.backend.job(req.params["job_id"])
    except NotFoundError:
        raise ApiError(404, "not_found", "no such job") from None
    return Reply(200, IngestionStatusResponse.of(manifest))


def list_job_items(ctx: Context, req: Request) -> Reply:
    q: ItemsQuery = req.query
    job_id = req.params["job_id"]
    try:
        page = ctx.backend.job_items(job_id, int(q.after or 0), q.limit)
    except NotFoundError:
        raise ApiError(404, "not_found", "no such job") from None
    items = []
    for record in page.items:
        try:
            items.append(ItemResponse.of(record))
        except (KeyError, ValidationError):
            continue  # a record this version cannot describe is left out, not a 500
    cursor = str(page.next_offset) if page.next_offset is not None else None
    base = f"/ingest/{job_id}/items?limit={q.limit}"
    links = ListLinks(self_=base + (f"&after={q.after}" if q.after else ""),
                      next=f"{base}&after={cursor}" if cursor else None)
    return Reply(200, ItemListResponse(job_id=job_id, items=items, next_after=cursor, links=links))


def list_jobs(ctx: Context, req: Request) -> Reply:
    q: JobsQuery = req.query
    rows = ctx.backend.jobs(source=q.source, status=q.status, limit=q.limit + 1, before=q.before)
    page = rows[: q.limit]
    cursor = page[-1].job_id if len(rows) > q.limit else None
    links = ListLinks(self_=_jobs_url(q, q.before), next=_jobs_url(q, cursor) if cursor else None)
    body = JobListResponse(jobs=[IngestionStatusResponse.of(m) for m in page], next_before=cursor, links=links)
    return Reply(200, body)


def _jobs_url(q: JobsQuery, before: str | None) -> str:
    params = {"source": q.source, "status": q.status, "limit": q.limit, "before": before}
    return "/jobs?" + urlencode({k: v for k, v in params.items() if v is not None})


def list_sources(ctx: Context, req: Request) -> Reply:
    return Reply(200, SourceListResponse(sources=[_source_info(s) for s in ctx.backend.sources()]))


def _source_info(s: SourceView) -> SourceInfo:
    last = s.last_job
    expires = s.credential.expires_at
    return SourceInfo(
        name=s.name, kind=s.kind, enabled=s.enabled, available=s.available, remediation=s.remediation,
        trigger="watch" if s.watched else "schedule", schedule=s.schedule,
        next_run_at=iso_from_timestamp(s.next_run_at) if s.next_run_at is not None else None,
        last_job=LastJob(job_id=last.job_id, status=last.status, finished_at=last.finished_at,
                         links=Links(self_=f"/ingest/{last.job_id}")) if last else None,
        credential=CredentialInfo(warnings=list(s.credential.warnings),
                                  expires_at=iso_from_timestamp(expires) if expires is not None else None),
        documents=s.documents, bytes=s.bytes,
    )


def get_document(ctx: Context, req: Request) -> Reply:
    try:
        doc = ctx.backend.document(req.params["doc_id"])
        text = ctx.backend.document_text(req.params["doc_id"])
    except NotFoundError:
        raise ApiError(404, "not_found", "no such document") from None
    return Reply(200, DocumentResponse.of(doc, text))


def get_document_text(ctx: Context, req: Request) -> Reply:
    try:
        text = ctx.backend.document_text(req.params["doc_id"])
    except NotFoundError:
        raise ApiError(404, "not_found", "no such document") from None
    if text.state == "not_extracted":
        raise ApiError(404, "not_extracted", f"this document's text is not extracted: {text.reason}")
    if text.state == "pending":
        raise ApiError(409, "pending", "the text is queued for extraction; ask again later",
                       headers={"Retry-After": "5"})
    r = text.record
    if text.state == "failed":
        message = f"extractor {r.extractor} {r.extractor_version} could not read it: {r.message}"
        raise ApiError(422, r.status, message, TextFailedResponse(
            error=r.status, message=message, extractor=r.extractor, extractor_version=r.extractor_version))
    try:
        fh = open(text.path, "rb")
    except FileNotFoundError:  # the blob store lost it: extract again rather than serve nothing
        raise ApiError(409, "pending", "the text is being extracted again; ask again later") from None
    headers = {"X-Ingestd-Extractor": f"{r.extractor}/{r.extractor_version}"}
    return Reply(200, FileBody(fh, os.fstat(fh.fileno()).st_size, f'"{r.text_sha256}"'), headers, MARKDOWN)


def list_documents(ctx: Context, req: Request) -> Reply:
    q: DocumentsQuery = req.query
    page = ctx.backend.documents(source=q.source, include_deleted=q.include_deleted, limit=q.limit, after=q.after,
                                 feed_cursor=q.next_after)
    params = {"source": q.source, "include_deleted": "true" if q.include_deleted else None, "limit": q.limit}
    links = ListLinks(self_=_url("/documents", {**params, "after": q.after, "next_after": q.next_after}),
                      next=_url("/documents", {**params, "after": page.after, "next_after": page.feed_cursor})
                      if page.after else None)
    body = DocumentListResponse(documents=[DocumentSummary.of(d) for d in page.documents],
                                next_after=page.feed_cursor, links=links)
    return Reply(200, body)


def _url(path: str, params: dict) -> str:
    return path + "?" + urlencode({k: v for k, v in params.items() if v is not None})


def get_content(ctx: Context, req: Request) -> Reply:
    """The bytes, streamed from the blob by the transport (ETag, Range, If-None-Match, HEAD)."""
    q: ContentQuery = req.query
    doc_id = req.params["doc_id"]
    try:
        content = ctx.backend.content(doc_id, q.version)
    except Tombstoned:
        raise ApiError(410, "deleted", "the document was deleted at its source; its earlier versions stay "
                       "readable with ?version=N (GET /documents/{doc_id} lists them)") from None
    except NotFoundError:
        what = "no such document" if q.version is None else f"no such document, or it has no version {q.version}"
        raise ApiError(404, "not_found", what) from None
    try:
        file = content.open()  # the transport closes it once sent
    except FileNotFoundError:
        raise ApiError(404, "content_missing", "the document's content is missing from the blob store; "
                       "the operator should run `ingestd verify`") from None
    except Unavailable:  # the cluster's blob store is down or failing: worth asking again
        raise ApiError(503, "blob_store_unavailable", "the blob store holding the content could not be read; "
                       "ask again later", headers={"Retry-After": "5"}) from None
    headers = {"Content-Disposition": disposition(content.origin_uri, doc_id),
               "Content-Security-Policy": "default-src 'none'; sandbox"}
    return Reply(200, FileBody(file, content.size, etag=f'"{content.sha256}"'), headers, content_type=content.mime)


def list_changes(ctx: Context, req: Request) -> Reply:
    """The feed after `after`. With `wait` and nothing new, the request is held (no thread,
    no slot) until a change commits or the wait is over, then answered."""
    q: ChangesQuery = req.query
    try:
        page = ctx.backend.changes(q.after, q.limit)
    except CursorExpired as exc:
        raise ApiError(410, "cursor_expired", str(exc), CursorExpiredResponse(
            error="cursor_expired", message=str(exc), oldest=exc.oldest, resync="/documents")) from None
    except UsageError as exc:
        raise ApiError(400, "invalid_query", str(exc)) from None
    until = req.received + q.wait
    if not page.changes and q.wait and not ctx.draining() and time.monotonic() < until:
        return Reply(200, b"", hold_until=until)
    return Reply(200, ChangesResponse.encode(page))


def list_sinks(ctx: Context, req: Request) -> Reply:
    return Reply(200, SinkListResponse(sinks=[_sink_info(s) for s in ctx.backend.sinks()]))


def reset_sink(ctx: Context, req: Request) -> Reply:
    """Replay: the sink takes the new cursor up at once (a batch in flight finishes but does
    not move it). The cursor is checked against the feed before anything changes."""
    if ctx.draining():
        raise ApiError(503, "shutting_down", "the daemon is stopping; ask again once it has restarted")
    name, body = req.params["name"], req.body
    try:
        status = ctx.backend.reset_sink(name, body.to)
    except NotFoundError:
        raise ApiError(404, "unknown_sink", f"no sink named {name!r}; GET /sinks lists them") from None
    except CursorExpired as exc:
        raise ApiError(410, "cursor_expired", str(exc), CursorExpiredResponse(
            error="cursor_expired", message=str(exc), oldest=exc.oldest, resync="/documents")) from None
    except UsageError as exc:
        raise ApiError(400, "invalid_body", str(exc)) from None
    return Reply(200, _sink_info(status))


def _sink_info(s: SinkStatus) -> SinkInfo:
    error = s.last_error
    return SinkInfo(
        name=s.name, kind=s.kind, enabled=s.enabled, state=s.state, cursor=s.cursor, lag=s.lag,
        sources=list(s.sources) if s.sources is not None else None,
        last_error=SinkErrorInfo(code=error.code, message=error.message, at=error.at) if error else None,
        failing_since=iso_from_timestamp(s.failing_since) if s.failing_since is not None else None,
        last_delivery_at=iso_from_timestamp(s.last_delivery_at) if s.last_delivery_at is not None else None,
        deliveries=SinkDeliveries(ok=s.deliveries.get("ok", 0), failed=s.deliveries.get("failed", 0)),
        delivered_changes=s.delivered_changes, holder=s.holder,
    )


def get_throughput(ctx: Context, req: Request) -> Reply:
    w = ctx.backend.throughput()
    return Reply(200, ThroughputResponse(slot_s=w.slot_s, end=iso_from_timestamp(w.end), files=w.files,
                                         bytes=w.bytes, errors=w.errors, queue_depth=w.queue_depth))


def ui_file(name: str) -> Callable[[Context, Request], Reply]:
    """A handler serving one of the dashboard's files (ETag and 304 by the transport)."""

    def handler(ctx: Context, req: Request) -> Reply:
        a = dashboard.asset(name)
        return Reply(200, FileBody(io.BytesIO(a.data), len(a.data), etag=a.etag), dict(dashboard.HEADERS),
                     content_type=a.content_type)

    return handler


def ui_session(ctx: Context, req: Request) -> Reply:
    """Whether this request's credentials (or none, when no token is configured) may read the
    data: the dashboard asks before anything else, so a missing or rotated token becomes a
    prompt rather than a 401 in the browser's console. It tells no more than a 401 would."""
    return Reply(200, SessionResponse(authorized=req.detailed), dict(dashboard.POLICY))


def get_metrics(ctx: Context, req: Request) -> Reply:
    return Reply(200, render(ctx.registry), content_type=METRICS_TYPE)


def get_openapi(ctx: Context, req: Request) -> Reply:
    return Reply(200, ctx.openapi())


# -- the table ----------------------------------------------------------------------------

ROUTES: list[Route] = [
    Route("GET", "/healthz", healthz, "getHealth", "Liveness and readiness of watchers, scheduler and workers",
          {200: HealthResponse, 503: UnhealthyResponse}, public=True),
    Route("POST", "/ingest", post_ingest, "startIngestion", "Queue a job for a configured source now",
          {202: IngestionStatusResponse, 404: ErrorResponse, 409: (BusyResponse, ErrorResponse),
           503: UnavailableResponse}, body=IngestRequest),
    Route("GET", "/ingest/{job_id}", get_job, "getIngestion", "One job's status, counters and errors",
          {200: IngestionStatusResponse, 404: ErrorResponse}, params={"job_id": JobId}),
    Route("GET", "/ingest/{job_id}/items", list_job_items, "listIngestionItems",
          "The items a job ingested, skipped, failed or deleted, with their document ids, a page at a time",
          {200: ItemListResponse, 404: ErrorResponse}, params={"job_id": JobId}, query=ItemsQuery),
    Route("GET", "/jobs", list_jobs, "listJobs", "Jobs, newest first, a page at a time",
          {200: JobListResponse}, query=JobsQuery),
    Route("GET", "/sources", list_sources, "listSources", "Configured sources with their schedule and last job",
          {200: SourceListResponse}),
    Route("GET", "/documents", list_documents, "listDocuments",
          "Documents (current versions) in a stable order, a page at a time, with the feed cursor to follow on from",
          {200: DocumentListResponse}, query=DocumentsQuery),
    Route("GET", "/documents/{doc_id}", get_document, "getDocument", "A document's record, provenance and versions",
          {200: DocumentResponse, 404: ErrorResponse}, params={"doc_id": DocId}),
    Route("GET", "/documents/{doc_id}/content", get_content, "getDocumentContent",
          "A document version's bytes, streamed (ETag, Range, If-None-Match)",
          {200: "*/*", 206: "*/*", 304: "", 404: ErrorResponse,
           410: ErrorResponse, 416: ErrorResponse}, params={"doc_id": DocId}, query=ContentQuery),
    Route("GET", "/changes", list_changes, "listChanges",
          "The change feed after a cursor, oldest first; `wait` long-polls for the next change",
          {200: ChangesResponse, 410: CursorExpiredResponse}, query=ChangesQuery),
    Route("GET", "/documents/{doc_id}/text", get_document_text, "getDocumentText",
          "The document's text as UTF-8 Markdown (a derivative of its current version)",
          {200: "text/markdown", 404: ErrorResponse, 409: ErrorResponse, 422: TextFailedResponse},
          params={"doc_id": DocId}),
    Route("GET", "/sinks", list_sinks, "listSinks",
          "Configured sinks: cursor, lag behind the feed, state, last error and last delivery",
          {200: SinkListResponse}),
    Route("POST", "/sinks/{name}/reset", reset_sink, "resetSink",
          "Make a sink deliver again from a cursor (replay)",
          {200: SinkInfo, 404: ErrorResponse, 410: CursorExpiredResponse, 503: ErrorResponse},
          params={"name": SinkName}, body=SinkResetRequest),
    Route("GET", "/throughput", get_throughput, "getThroughput",
          "The last hour's items, bytes, errors and queue depth in 10-second slots (the dashboard's charts)",
          {200: ThroughputResponse}),
    Route("GET", "/metrics", get_metrics, "getMetrics", "Prometheus metrics (text exposition format)",
          {200: "text/plain"}),
    Route("GET", "/openapi.json", get_openapi, "getOpenApi", "This API's OpenAPI 3.1 document",
          {200: "application/json"}),
    # the dashboard (docs/dashboard.md): its files are public, its data comes from the routes above
    Route("GET", "/", ui_file("index.html"), "getDashboard", "The dashboard", {200: "text/html"},
          public=True, documented=False),
    Route("GET", "/ui/session", ui_session, "getDashboardSession", "Whether the caller's token is good",
          {200: SessionResponse}, public=True, documented=False),
    *(Route("GET", f"/ui/{name}", ui_file(name), f"getDashboard{name}", "A dashboard file", {200: kind},
            public=True, documented=False) for name, kind in dashboard.TYPES.items() if name != "index.html"),
]


def responses(route: Route) -> Responses:
    """Every status `route` can answer: its own, plus those the server adds around it."""
    out: dict[int, Any] = dict(route.responses)

    def add(status: int, model=ErrorResponse) -> None:
        mine = out.get(status)
        if mine is None:
            out[status] = model
        elif mine is not model and not (isinstance(mine, tuple) and model in mine):
            out[status] = (*(mine if isinstance(mine, tuple) else (mine,)), model)

    if route.params or route.query or route.body:
        add(400)
    if not route.public:
        add(401)
    if route.body:
        for status in (408, 411, 413, 415):
            add(status)
    add(503)  # too many connections, or (for jobs) the daemon is stopping
    return dict(sorted(out.items()))


def public(segments: list[str]) -> bool:
    """Whether the path is one served without a token (whatever the method: a wrong one
    then learns 405, as with a token)."""
    return any(route.public and _bind(route.segments, segments) is not None for route in ROUTES)


def match(method: str, segments: list[str]) -> tuple[Route | None, dict[str, str], list[str]]:
    """The route for `method` and the decoded path `segments`, its parameters, and the
    methods the path allows (for 405). HEAD is served by every GET route (RFC 9110 §9.3.2)."""
    allowed: list[str] = []
    for route in ROUTES:
        params = _bind(route.segments, segments)
        if params is None:
            continue
        methods = [route.method, "HEAD"] if route.method == "GET" else [route.method]
        if method in methods:
            return route, params, methods
        allowed += methods
    return None, {}, allowed


def _bind(template: list[str], segments: list[str]) -> dict[str, str] | None:
    if len(template) != len(segments):
        return None
    params = {}
    for want, got in zip(template, segments):
        if want.startswith("{"):
            params[want[1:-1]] = got
        elif want != got:
            return None
    return params

