"""The status API's payloads, as pydantic models.

Handlers build their responses from these models and parse their inputs with them, and
`openapi.py` generates the published schema from the very same classes, so the document
cannot say one thing while the code does another. Every field of a response is always
written (null where it has no value), and the document marks every one `required`.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from ingestd._lib import redact
from ingestd._lib.paths import ID_PATTERN
from ingestd._lib.times import Timestamp
from ingestd.config import SOURCE_NAME
from ingestd.extract.lookup import TextState
from ingestd.jobs.manifest import Counters, JobError, LiveProgress, Manifest, Status, Trigger
from ingestd.store.catalogue import KIND_DESCRIPTION, KINDS, Document, Version
from ingestd.store.feed import CURSOR_PATTERN, FeedChange, JsonPage

MAX_PAGE = 500  # the most jobs one `GET /jobs` returns, and the most items one `GET /ingest/{id}/items`
JobId = Annotated[str, StringConstraints(pattern=ID_PATTERN, min_length=8, max_length=64)]
"""A job id: checked against this before anything looks it up (no path can be smuggled in)."""
DocId = Annotated[str, StringConstraints(pattern=ID_PATTERN, min_length=8, max_length=64)]
SourceName = Annotated[str, StringConstraints(pattern=SOURCE_NAME, max_length=63)]
Cursor = Annotated[str, StringConstraints(pattern=CURSOR_PATTERN)]
"""A change-feed cursor: opaque, fixed width, ordered as a string."""
MAX_DOCUMENTS = 500  # the most documents one `GET /documents` returns
MAX_CHANGES = 1000  # the most changes one `GET /changes` returns
MAX_WAIT = 30  # seconds a `GET /changes` long-poll may wait


class Payload(BaseModel):
    """Base of every response: plain data, serialised exactly as declared."""

    model_config = ConfigDict(populate_by_name=True)


class Input(BaseModel):
    """Base of every request model: unknown keys and loose types are client errors."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


# -- errors ------------------------------------------------------------------------------


class ErrorResponse(Payload):
    """Every error: a stable machine-readable code and a sentence for the operator."""

    error: str
    message: str


class Links(Payload):
    self_: str = Field(alias="self")


class BusyResponse(ErrorResponse):
    """409: the source already has a job queued or running; this names it."""

    job_id: str
    status: Status
    links: Links


class UnavailableResponse(ErrorResponse):
    """503 `connector_unavailable`: what to install to make the source work."""

    remediation: str


# -- health ------------------------------------------------------------------------------


class HealthResponse(Payload):
    status: Literal["ok", "unhealthy"]
    version: str
    uptime_s: float
    checks: dict[str, dict[str, Any]]
    failing: list[str] = []


class UnhealthyResponse(HealthResponse):
    """503: the health body with the error shape's `error` and `message`."""

    status: Literal["unhealthy"] = "unhealthy"
    error: Literal["unhealthy"] = "unhealthy"
    message: str


# -- jobs --------------------------------------------------------------------------------


class IngestRequest(Input):
    """The only thing a client may ask for: run a configured source now."""

    source: SourceName


class JobLinks(Payload):
    self_: str = Field(alias="self")
    source_jobs: str


class IngestionStatusResponse(Payload):
    job_id: str
    source: str
    kind: str
    trigger: Trigger
    status: Status
    created_at: Timestamp
    started_at: Timestamp | None
    finished_at: Timestamp | None
    duration_s: float | None
    counters: Counters
    errors: list[JobError]
    errors_dropped: int
    progress: LiveProgress | None = Field(
        default=None, description="while the job runs: phase, items and bytes done (of the total, once known)")
    links: JobLinks

    @classmethod
    def of(cls, m: Manifest) -> "IngestionStatusResponse":
        return cls(
            job_id=m.job_id, source=m.source, kind=m.kind, trigger=m.trigger, status=m.status,
            created_at=m.created_at, started_at=m.started_at, finished_at=m.finished_at,
            duration_s=m.duration_s(), counters=m.counters, errors=m.errors, errors_dropped=m.errors_dropped,
            progress=m.progress, links=JobLinks(self_=f"/ingest/{m.job_id}", source_jobs=f"/jobs?source={m.source}"),
        )


class JobsQuery(Input):
    """`GET /jobs` query parameters (strings on the wire, so `limit` is converted)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)
    source: SourceName | None = None
    status: Status | None = None
    limit: int = Field(default=50, ge=1, le=MAX_PAGE)
    before: JobId | None = Field(default=None, description="cursor: only jobs older than this id")


class ListLinks(Payload):
    self_: str = Field(alias="self")
    next: str | None


class JobListResponse(Payload):
    """Newest first. `next_before` is the cursor for the following page (null on the last)."""

    jobs: list[IngestionStatusResponse]
    next_before: str | None
    links: ListLinks


class ItemsQuery(Input):
    """`GET /ingest/{job_id}/items` query parameters."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)
    limit: int = Field(default=100, ge=1, le=MAX_PAGE)
    after: Annotated[str, StringConstraints(pattern=r"^[0-9]{1,18}$")] | None = Field(
        default=None, description="cursor: the `next_after` of the previous page")


class ItemError(Payload):
    code: str
    message: str


class ItemResponse(Payload):
    """One item the job handled. Unchanged items are counted in the job's counters, not listed."""

    outcome: Literal["ingested", "skipped", "failed", "deleted"]
    origin_uri: str
    doc_id: str | None
    sha256: str | None
    size: int | None
    mime: str | None
    error: ItemError | None

    @classmethod
    def of(cls, record: dict[str, Any]) -> "ItemResponse":
        code = record.get("error")
        return cls(outcome=record["outcome"], origin_uri=record["origin_uri"], doc_id=record.get("doc_id"),
                   sha256=record.get("sha256"), size=record.get("size"), mime=record.get("mime"),
                   error=ItemError(code=code, message=record.get("message") or "") if code else None)


class ItemListResponse(Payload):
    """In the order the job recorded them. `next_after` continues (null once the job is
    finished and every item has been listed; a running job's list may still grow)."""

    job_id: str
    items: list[ItemResponse]
    next_after: str | None
    links: ListLinks


# -- sources -----------------------------------------------------------------------------


class LastJob(Payload):
    job_id: str
    status: Status
    finished_at: Timestamp | None
    links: Links


class CredentialInfo(Payload):
    """What the connector says about its credential: warnings (e.g. a certificate close to
    expiry) and when it expires; `expires_at` is null when it does not expire or is not known."""

    warnings: list[str]
    expires_at: Timestamp | None


class SourceInfo(Payload):
    name: str
    kind: str
    enabled: bool
    available: bool
    remediation: str | None
    trigger: Literal["watch", "schedule"]
    schedule: str | None
    next_run_at: Timestamp | None
    last_job: LastJob | None
    credential: CredentialInfo
    documents: int = Field(description="live documents in the store (recounted once a job has finished)")
    bytes: int = Field(description="the size of their current versions")


class SourceListResponse(Payload):
    sources: list[SourceInfo]


class SessionResponse(Payload):
    """`GET /ui/session` (the dashboard's own): whether the caller may read the data."""

    authorized: bool


# -- throughput --------------------------------------------------------------------------


class ThroughputResponse(Payload):
    """The last hour in fixed slots, oldest first, kept in the daemon's memory (empty after a
    restart). Each list has one number per slot of `slot_s` seconds, the newest ending at
    `end`: items handled, bytes stored, item errors (failed or skipped items, plus one per
    job that failed as a whole), and the deepest the job queue was seen in the slot."""

    slot_s: int
    end: Timestamp
    files: list[int]
    bytes: list[int]
    errors: list[int]
    queue_depth: list[int]


# -- documents ---------------------------------------------------------------------------


class DocumentLinks(Payload):
    self_: str = Field(alias="self")
    job: str
    content: str


def _links(doc: Document) -> DocumentLinks:
    return DocumentLinks(self_=f"/documents/{doc.doc_id}", job=f"/ingest/{doc.job_id}",
                         content=f"/documents/{doc.doc_id}/content?version={doc.version}")


class TextError(Payload):
    code: Literal["timeout", "too_large", "encrypted", "unsupported", "corrupt"]
    message: str


class TextPart(Payload):
    """A page, sheet or slide of the text: characters `start` to `end` of the Markdown."""

    kind: str
    index: int
    start: int
    end: int
    label: str | None


class TextLinks(Payload):
    self_: str = Field(alias="self")


class TextInfo(Payload):
    """The document's text (a derivative of its current version's bytes): `extracted`,
    `failed` (with its typed error), `pending`, or `not_extracted` (`reason` says why).
    `current` is false while a newer extractor version's text is pending and an older
    one is served."""

    status: Literal["extracted", "failed", "pending", "not_extracted"]
    reason: str | None
    extractor: str | None
    extractor_version: str | None
    current: bool
    text_sha256: str | None
    chars: int | None
    pages: int | None
    language: str | None
    extracted_at: Timestamp | None
    error: TextError | None
    parts: list[TextPart]
    links: TextLinks

    @classmethod
    def of(cls, doc_id: str, t: TextState) -> "TextInfo":
        r = t.record
        ok = r is not None and r.ok
        return cls(
            status=t.state, reason=t.reason, extractor=r.extractor if r else None,
            extractor_version=r.extractor_version if r else None, current=t.current,
            text_sha256=r.text_sha256 if ok else None, chars=r.chars if ok else None,
            pages=r.pages if ok else None, language=r.language if ok else None,
            extracted_at=r.extracted_at if r else None,
            error=TextError(code=r.status, message=r.message or "") if r and not ok else None,
            parts=[TextPart(kind=b[0], index=b[1], start=b[2], end=b[3], label=b[4]) for b in (r.boundaries if ok else [])],
            links=TextLinks(self_=f"/documents/{doc_id}/text"),
        )


class TextFailedResponse(ErrorResponse):
    """422: the extractor could not read the document; `error` is the typed code."""

    extractor: str
    extractor_version: str


class DocumentSummary(Payload):
    """A document's current version and provenance (`GET /documents` lists these).

    `version` numbers the document's versions from 1; `kind` is `content` (new bytes),
    `metadata` (the previous version's bytes with a new origin or metadata) or
    `permissions` (the previous version's bytes and origin, new `permissions`). The
    server-side blob path is left out on purpose: it tells a client about the host's file
    layout and gives it nothing it can use over HTTP."""

    doc_id: str
    source: str
    origin_uri: str
    version: int
    kind: str = Field(description=KIND_DESCRIPTION, examples=list(KINDS))
    sha256: str
    size: int
    mime: str
    source_modified_at: Timestamp | None
    ingested_at: Timestamp
    job_id: str
    metadata: dict[str, Any]
    deleted_at: Timestamp | None
    deleted_job: str | None
    links: DocumentLinks

    @classmethod
    def of(cls, doc: Document) -> "DocumentSummary":
        return cls(**doc.model_dump(exclude={"blob_path", "versions"}), links=_links(doc))


class DocumentResponse(DocumentSummary):
    """A document's current version, provenance and history (earlier versions, newest first)."""

    versions: list[Version]
    text: TextInfo

    @classmethod
    def of(cls, doc: Document, text: TextState) -> "DocumentResponse":
        return cls(**doc.model_dump(exclude={"blob_path"}), text=TextInfo.of(doc.doc_id, text), links=_links(doc))


class DocumentsQuery(Input):
    """`GET /documents` query parameters."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)
    source: SourceName | None = None
    include_deleted: bool = Field(default=False, description="list tombstoned documents too")
    limit: int = Field(default=100, ge=1, le=MAX_DOCUMENTS)
    after: DocId | None = Field(default=None, description="page cursor: only documents after this doc_id")
    next_after: Cursor | None = Field(
        default=None, description="carried by `links.next` from the listing's first page: its feed cursor")


class DocumentListResponse(Payload):
    """Documents in doc_id order (stable), a page at a time: follow `links.next`.

    `next_after` is the change-feed cursor taken when the listing's first page was read,
    the same on every page: after listing, follow `GET /changes?after=<next_after>` and
    nothing that changed meanwhile is missed (docs/change-feed.md, resync)."""

    documents: list[DocumentSummary]
    next_after: str
    links: ListLinks


class ContentQuery(Input):
    """`GET /documents/{doc_id}/content` query parameters."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)
    version: int | None = Field(default=None, ge=1, le=2**62,
                                description="a version's number; default: the current version")


# -- the change feed -----------------------------------------------------------------------


class ChangesQuery(Input):
    """`GET /changes` query parameters."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)
    after: Cursor | None = Field(default=None, description="only changes after this cursor; default: from the first")
    limit: int = Field(default=500, ge=1, le=MAX_CHANGES)
    wait: float = Field(default=0, ge=0, le=MAX_WAIT,
                        description="seconds to wait for a change when there is none yet (long-poll)")


class ChangesResponse(Payload):
    """Changes after `after`, oldest first; `next_after` is the `after` of the next call
    (unchanged when there was nothing new). Skip change types you do not know."""

    changes: list[FeedChange]
    next_after: str

    @staticmethod
    def encode(page: JsonPage) -> bytes:
        """This response's JSON, from a page whose changes SQLite wrote as JSON already:
        building and encoding 500 objects here cost several times the query (the feed's
        readers are measured in changes a second). Remembered secrets are scrubbed from
        the text, as the service does for every other answer."""
        text = '{"changes":[' + ",".join(page.changes) + '],"next_after":' + json.dumps(page.next_after) + "}"
        return redact.scrub_json_text(text).encode()


# -- sinks -------------------------------------------------------------------------------


class SinkErrorInfo(Payload):
    """A sink's last failure: `code` is typed (http_status, timeout, connection, protocol,
    rejected, plugin_error, cursor_expired, config, cursor, feed), `message` holds no secret."""

    code: str
    message: str
    at: Timestamp


class SinkDeliveries(Payload):
    ok: int
    failed: int


class SinkInfo(Payload):
    """`state`: idle (caught up), delivering, stalled (one delivery running for minutes),
    retrying (failed; waiting to send the same batch again), expired (its cursor is older
    than the feed keeps: reset it), unavailable (could not start: see last_error),
    disabled, stopped; in cluster mode also unclaimed (no instance delivers it right now). `lag`: changes committed after its cursor."""

    name: str
    kind: str
    enabled: bool
    state: str
    cursor: Cursor | None
    lag: int | None
    sources: list[str] | None
    last_error: SinkErrorInfo | None
    failing_since: Timestamp | None
    last_delivery_at: Timestamp | None
    deliveries: SinkDeliveries
    delivered_changes: int
    holder: str | None = Field(default=None, description="cluster mode: the instance delivering the sink now "
                               "(none between two holders); always null on an embedded daemon")


class SinkListResponse(Payload):
    sinks: list[SinkInfo]


class SinkResetRequest(Input):
    """Deliver again from this cursor (`0000000000000000`: from the first change)."""

    to: Cursor


SinkName = SourceName


class CursorExpiredResponse(ErrorResponse):
    """410 `cursor_expired`: the changes right after this cursor are no longer kept (or the
    cursor is not from this store). Resync: list `resync` (`/documents`), then follow the
    feed from the `next_after` the listing returns."""

    oldest: str
    resync: str
