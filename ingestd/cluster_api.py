"""The status API on a cluster instance: `api.backend.Backend` answered from the shared
database, so every instance serves the same jobs, sources and documents, and `POST
/ingest` on any of them queues the one job a source may have (the partial unique index
makes the others' answers 409 `busy`, naming it).

The document listing, content (streamed from the S3 blob store) and the change feed
(`cluster.feed`: gapless across instances, long-polls woken by LISTEN/NOTIFY) keep the
embedded daemon's contract, and so do a job's per-item records (`job_items`). Phase 1
limits (docs/cluster.md): the throughput chart counts this instance's
jobs only, `/sources` counts no documents per source, and requests share one database
connection per instance.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ingestd._lib import logs
from ingestd._lib.version import VERSION
from ingestd.api.backend import Busy, CredentialStatus, ItemsPage, Runtime, SourceView, Window
from ingestd.cluster import catalogue, feed, items, jobs
from ingestd.cluster.blobs import BlobStore
from ingestd.cluster.node import Node
from ingestd.config import Source
from ingestd.errors import ConfigError, NotFoundError, UsageError
from ingestd.extract.lookup import TextState
from ingestd.jobs.manifest import Manifest
from ingestd.runtime.throughput import Throughput
from ingestd.store.catalogue import Content


@dataclass(frozen=True)
class BlobContent(Content):
    """A version's bytes in the S3 blob store (`path` is their key, for logs)."""

    blobs: BlobStore | None = None

    def open(self) -> BinaryIO:
        return self.blobs.reader(self.sha256)


class ClusterApi:
    def __init__(self, node: Node):
        self.node = node
        self.version = VERSION
        self.started_at = node.started_at
        self._conn = None
        self._lock = threading.Lock()
        self.log = logs.get("ingestd.http")
        # the dashboard's charts: the jobs this instance finished (not the cluster's, yet)
        self._throughput = Throughput(lambda: [], lambda: 0)
        node.listeners.append(self._throughput.job_finished)
        self._watcher = feed.Watcher(node.database.connect)

    @contextmanager
    def _db(self):
        """The instance's API connection (one, serialised); a broken one is replaced on the
        next request."""
        with self._lock:
            if self._conn is None or self._conn.closed:
                self._conn = self.node.database.connect(autocommit=True, purpose="api")
            try:
                yield self._conn
            except Exception:
                if self._conn.broken:
                    self._conn.close()
                    self._conn = None
                raise

    def close(self) -> None:
        self._watcher.stop()
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def health(self) -> dict[str, dict]:
        return self.node.health()

    # -- jobs ------------------------------------------------------------------------------

    def job(self, job_id: str) -> Manifest:
        with self._db() as conn:
            return jobs.get(conn, job_id)

    def jobs(self, *, source=None, status=None, limit: int = 50, before=None) -> list[Manifest]:
        with self._db() as conn:
            return jobs.listing(conn, source=source, status=status, limit=limit, before=before)

    def job_items(self, job_id: str, offset: int, limit: int) -> ItemsPage:
        """The job's `job_items` rows from row `offset` (the embedded contract: `next_after`
        is null once the job is finished and read to the end)."""
        with self._db() as conn:
            manifest = jobs.get(conn, job_id)  # NotFoundError for an unknown job
            records, end, more = items.page(conn, job_id, offset, limit)
        return ItemsPage(records, end if more or not manifest.terminal else None)

    def last_succeeded(self) -> list[Manifest]:
        with self._db() as conn:
            return jobs.last_succeeded(conn)

    def submit(self, source: str) -> Manifest:
        configured = self.node.sources.get(source)
        if configured is None:
            raise UsageError(f"unknown source {source!r}")
        if source in self.node.unavailable:
            raise ConfigError(self.node.unavailable[source])
        try:
            with self._db() as conn:
                return jobs.enqueue(conn, source, configured.kind, "api")
        except jobs.Busy as busy:
            raise Busy(busy.manifest) from None

    def throughput(self) -> Window:
        return self._throughput.window()

    def on_job_finished(self, listener: Callable[[Manifest], None]) -> None:
        self.node.listeners.append(listener)

    def document(self, doc_id: str):
        with self._db() as conn:
            return catalogue.document(conn, doc_id, self.node.blobs.key)

    def document_text(self, doc_id: str) -> TextState:
        self.document(doc_id)  # NotFoundError for an unknown one
        return TextState("not_extracted", reason="text extraction does not run in cluster mode yet")

    def extraction_stats(self):
        return None  # extraction is off in cluster mode

    # -- documents and the change feed ---------------------------------------------------

    def documents(self, *, source, include_deleted, limit, after, feed_cursor):
        with self._db() as conn:
            return catalogue.listing(conn, self.node.blobs.key, source=source, include_deleted=include_deleted,
                                     limit=limit, after=after, feed_cursor=feed_cursor)

    def content(self, doc_id: str, version: int | None) -> Content:
        with self._db() as conn:
            sha, size, mime, seq, origin = catalogue.content(conn, doc_id, version)
        return BlobContent(doc_id, seq, sha, size, mime, origin, Path(self.node.blobs.key(sha)), self.node.blobs)

    def changes(self, after: str | None, limit: int):
        with self._db() as conn:
            return feed.read(conn, after, limit)

    def on_change(self, listener) -> None:
        """Held long-polls wake when any instance commits changes (LISTEN/NOTIFY, one
        thread per instance)."""
        self._watcher.listeners.append(listener)
        self._watcher.start()

    def last_change(self) -> int:
        return self._watcher.head

    def poll_changes(self) -> None:
        self._watcher.poll()

    # -- sinks: not in cluster mode yet (the config refuses [[sinks]] there) ---------------

    def sinks(self) -> list:
        return []  # none can be configured, so /sinks and /metrics truthfully list none

    def reset_sink(self, name: str, to: str):
        raise NotFoundError(f"no sink named {name!r}: sinks do not run in cluster mode yet")

    # -- sources ---------------------------------------------------------------------------

    def sources(self) -> list[SourceView]:
        return [self._view(s) for s in self.node.config.sources]

    def source(self, name: str) -> SourceView | None:
        source = self.node.config.source(name)
        return self._view(source) if source is not None else None

    def _view(self, source: Source) -> SourceView:
        cls = self.node.plugins.connectors.get(source.kind)
        watched = bool(cls and cls.watched)
        text = getattr(source.options, "schedule_text", None)
        with self._db() as conn:
            row = conn.execute("SELECT extract(epoch FROM next_run_at) FROM sources WHERE name = %s",
                               (source.name,)).fetchone()
            last = jobs.listing(conn, source=source.name, limit=1)
        return SourceView(
            name=source.name, kind=source.kind, enabled=source.enabled,
            remediation=self.node.unavailable.get(source.name), watched=watched,
            schedule=None if watched or text is None else text(),
            next_run_at=float(row[0]) if row and row[0] is not None else None,
            last_job=last[0] if last else None, credential=CredentialStatus(),
        )

    # -- gauges ----------------------------------------------------------------------------

    def runtime(self) -> Runtime:
        with self._db() as conn:
            live = conn.execute("SELECT source, status FROM jobs WHERE status IN ('queued', 'running')").fetchall()
        return Runtime(queue_depth=sum(1 for _s, st in live if st == "queued"), running=len(self.node.running),
                       active={s: st for s, st in live})


def serve(node: Node):
    """The API server for `node` (bound now: a busy port stops the start cleanly)."""
    from ingestd.api.service import ApiServer

    return ApiServer(ClusterApi(node), node.config.http)
