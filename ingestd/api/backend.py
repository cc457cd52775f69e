"""What the API asks of the daemon, and nothing more: the narrow interface its handlers and
metrics read through. The daemon implements it (`ingestd.daemon_api`); nothing in
`ingestd.api` imports the daemon or reaches into its parts, and a test can serve the API
from any object that fits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ingestd.extract.lookup import TextState
from ingestd.extract.service import Stats as ExtractionStats
from ingestd.jobs.manifest import Manifest, Status
from ingestd.plugin.connector import CredentialStatus
from ingestd.jobs.lifecycle import JobsUnwritable
from ingestd.runtime.queue import Busy
from ingestd.runtime.throughput import Window
from ingestd.store.catalogue import Content, Document, Listing
from ingestd.store.feed import JsonPage

__all__ = ["Backend", "Busy", "CredentialStatus", "ExtractionStats", "ItemsPage", "JobsUnwritable", "NotServed", "Runtime",
           "SourceView", "TextState", "Window"]


class NotServed(Exception):
    """This backend does not serve the endpoint yet (cluster mode's feed): a typed 501 the
    client can tell apart from a fault, not an internal error."""


@dataclass(frozen=True)
class SourceView:
    """One configured source as the API shows it."""

    name: str
    kind: str
    enabled: bool
    remediation: str | None  # why it cannot run; None when it can
    watched: bool
    schedule: str | None  # "every 3600s", a cron line; None for watched sources
    next_run_at: float | None  # Unix time
    last_job: Manifest | None
    credential: CredentialStatus = CredentialStatus()
    documents: int = 0  # live documents in the store
    bytes: int = 0  # their current versions' sizes

    @property
    def available(self) -> bool:
        return self.remediation is None


@dataclass(frozen=True)
class ItemsPage:
    items: list[dict[str, Any]]  # records of the job's items file
    next_offset: int | None  # where the next page starts; None when the job is finished and read to the end


@dataclass(frozen=True)
class Runtime:
    """The daemon's moving parts at this instant, for gauges (all in memory, O(sources))."""

    queue_depth: int
    running: int
    active: dict[str, Status] = field(default_factory=dict)  # source → status of its queued or running job
    schedule_skipped: dict[str, int] = field(default_factory=dict)  # source → runs skipped (overlaps)
    plugin_hooks: dict[str, dict[str, float]] = field(default_factory=dict)  # plugin → its hook lane's numbers


class Backend(Protocol):
    version: str
    started_at: float  # Unix time

    def health(self) -> dict[str, dict[str, Any]]:
        """Named checks, each with `ok` and details (the /healthz body's `checks`)."""

    def job(self, job_id: str) -> Manifest:
        """Raises NotFoundError."""

    def jobs(self, *, source: str | None, status: Status | None, limit: int, before: str | None) -> list[Manifest]:
        """Newest first."""

    def job_items(self, job_id: str, offset: int, limit: int) -> ItemsPage:
        """Raises NotFoundError for an unknown job."""

    def last_succeeded(self) -> list[Manifest]:
        """Each source's newest succeeded job."""

    def document(self, doc_id: str) -> Document:
        """Raises NotFoundError."""

    def documents(self, *, source: str | None, include_deleted: bool, limit: int, after: str | None,
                  feed_cursor: str | None) -> Listing:
        """A page of documents in doc_id order (store.catalogue.Store.list)."""

    def content(self, doc_id: str, version: int | None) -> Content:
        """Where a version's bytes are. Raises NotFoundError, and Tombstoned for the
        current content of a deleted document."""

    def changes(self, after: str | None, limit: int) -> JsonPage:
        """A page of the change feed, each change as JSON text. Raises CursorExpired,
        UsageError (malformed cursor)."""

    def on_change(self, listener: Callable[[], None]) -> None:
        """Call `listener()` after each commit that adds changes (from the committing
        thread: it must only wake something up)."""

    def last_change(self) -> int:
        """The feed's last committed cursor as a number (in memory: no read)."""

    def poll_changes(self) -> None:
        """Look for changes committed by another process, calling the `on_change`
        listeners if there are some (cheap: one small read)."""
    def document_text(self, doc_id: str) -> TextState:
        """Where the document's text stands (extracted, failed, pending, not extracted).
        Raises NotFoundError."""

    def extraction_stats(self) -> ExtractionStats | None:
        """The extraction queue's counters and depth; None when extraction is off."""

    def sources(self) -> list[SourceView]:
        """Every configured source, in config order."""

    def source(self, name: str) -> SourceView | None: ...

    def submit(self, source: str) -> Manifest:
        """Queue a job (trigger `api`). Raises Busy (a job holds the source), UsageError (no
        such source, e.g. removed by a reload), ConfigError (its connector cannot run),
        JobsUnwritable (the state dir refuses job records; no job was made)."""

    def runtime(self) -> Runtime: ...

    def throughput(self) -> Window:
        """The last hour's throughput in fixed slots (the dashboard's charts)."""

    def on_job_finished(self, listener: Callable[[Manifest], None]) -> None:
        """Call `listener` with each job's manifest once it is terminal."""
