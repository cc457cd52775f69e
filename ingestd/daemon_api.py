"""The daemon's side of the status API: `api.backend.Backend`, answered from the running
parts the daemon hands over. The API sees these answers and nothing else of the daemon."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from ingestd._lib import logs
from ingestd.api.backend import CredentialStatus, ItemsPage, Runtime, SourceView
from ingestd.config import Source
from ingestd.extract.lookup import TextState, text_state
from ingestd.extract.service import Stats
from ingestd.jobs.items import read_page
from ingestd.jobs.manifest import Manifest
from ingestd.runtime.throughput import Window


class DaemonApi:
    def __init__(self, *, app, plugins, workers, schedule, unavailable: dict[str, str],
                 health: Callable[[], dict], submit: Callable[..., Manifest],
                 throughput: Callable[[], Window], version: str, started_at: float, policy=None, extraction=None):
        self.app, self.plugins, self.workers, self.schedule = app, plugins, workers, schedule
        self.unavailable = unavailable  # the daemon's own dict: sources that could not start, and why
        self._health, self._submit, self._throughput = health, submit, throughput
        self._totals = _Totals(lambda: self.app.store.totals())
        self.on_job_finished(self._totals.job_finished)
        self.version, self.started_at = version, started_at
        self.policy, self.extraction = policy, extraction
        self.log = logs.get("ingestd.http")

    def health(self) -> dict[str, dict]:
        return self._health()

    # -- jobs -------------------------------------------------------------------------------

    def job(self, job_id: str) -> Manifest:
        return self.app.jobs.get(job_id)

    def jobs(self, *, source=None, status=None, limit: int = 50, before=None) -> list[Manifest]:
        return self.app.jobs.list(source=source, status=status, limit=limit, before=before)

    def job_items(self, job_id: str, offset: int, limit: int) -> ItemsPage:
        manifest = self.app.jobs.get(job_id)
        path = self.app.jobs.items_path(manifest)
        if Path(manifest.items_file).name != manifest.items_file:  # a planted manifest naming another file
            records, end, more = [], 0, False
        else:
            records, end, more = read_page(path, offset, limit)
        return ItemsPage(records, end if more or not manifest.terminal else None)

    def last_succeeded(self) -> list[Manifest]:
        return self.app.jobs.last_succeeded()

    def submit(self, source: str) -> Manifest:
        return self._submit(source, "api")

    def on_job_finished(self, listener) -> None:
        """`listener(manifest)` for every finished job: a subscriber of the job lifecycle."""
        self.app.lifecycle.subscribe(lambda done: listener(done.manifest))

    def document(self, doc_id: str):
        return self.app.store.get(doc_id)

    def document_text(self, doc_id: str) -> TextState:
        doc = self.app.store.get(doc_id)
        return text_state(doc, self.app.texts, self.policy, self.app.store)

    def extraction_stats(self) -> Stats | None:
        return self.extraction.snapshot() if self.extraction is not None else None

    # -- documents and the change feed ------------------------------------------------------

    def documents(self, *, source, include_deleted, limit, after, feed_cursor):
        return self.app.store.list(source=source, include_deleted=include_deleted, limit=limit, after=after,
                                   feed_cursor=feed_cursor)

    def content(self, doc_id: str, version: int | None):
        return self.app.store.content(doc_id, version)

    def changes(self, after: str | None, limit: int):
        return self.app.store.feed.read_json(after, limit)

    def on_change(self, listener) -> None:
        self.app.store.feed.on_commit(lambda _last: listener())

    def last_change(self) -> int:
        return self.app.store.feed.latest()

    def poll_changes(self) -> None:
        self.app.store.feed.poll_others()

    # -- sources ----------------------------------------------------------------------------

    def sources(self) -> list[SourceView]:
        return [self._view(s) for s in self.app.config.sources]

    def source(self, name: str) -> SourceView | None:
        source = self.app.config.source(name)
        return self._view(source) if source is not None else None

    def _view(self, source: Source) -> SourceView:
        cls = self.plugins.connectors.get(source.kind)
        if source.name in self.unavailable:
            reason = self.unavailable[source.name]
        elif cls is None or not source.enabled:  # enabled ones were checked at start
            reason = self.plugins.unavailable(source.kind)  # a refused kind or plugin, a dependency
        else:
            reason = None
        watched = bool(cls and cls.watched)
        text = getattr(source.options, "schedule_text", None)
        last = self.app.jobs.list(source=source.name, limit=1)
        documents, size = self._totals.get().get(source.name, (0, 0))
        return SourceView(
            name=source.name, kind=source.kind, enabled=source.enabled, remediation=reason, watched=watched,
            schedule=None if watched or text is None else text(), next_run_at=self._next_run(source.name),
            last_job=last[0] if last else None,
            credential=self._credential(source) if source.enabled and reason is None else CredentialStatus(),
            documents=documents, bytes=size,
        )

    def _next_run(self, name: str) -> float | None:
        moment = self.schedule.next_run(name)
        return moment.timestamp() if moment else None

    def _credential(self, source: Source) -> CredentialStatus:
        connector = self.app.connectors.get(source.name)  # built when the source started
        if connector is None:
            return CredentialStatus()
        try:
            status = connector.credential_status()
        except Exception:  # a plugin's bug must not take /sources or /metrics down with it
            self.log.exception("credential_status failed", source=source.name)
            return CredentialStatus()
        return status if isinstance(status, CredentialStatus) else CredentialStatus()

    # -- gauges -----------------------------------------------------------------------------

    def throughput(self) -> Window:
        return self._throughput()

    def runtime(self) -> Runtime:
        active = {}
        for source in self.app.config.sources:
            job = self.workers.busy(source.name)
            if job is not None:
                active[source.name] = job.status
        hooks = {name: asdict(stats) for name, stats in self.plugins.hooks.stats().items()}
        return Runtime(self.workers.depth(), self.workers.running, active, dict(self.schedule.overlaps), hooks)


class _Totals:
    """Documents and bytes per source, for `/sources`. Counting reads every record, so the
    answer is kept until a job has finished, and then recounted at most every few seconds,
    and never more often than keeps the counting under 2% of a core however big the store
    (a dashboard polling a store of a million documents must not cost a core)."""

    MIN_AGE = 5.0
    SHARE = 0.02

    def __init__(self, count: Callable[[], dict[str, tuple[int, int]]]):
        self._count = count
        self._lock = threading.Lock()
        self._value: dict[str, tuple[int, int]] | None = None
        self._stale = True
        self._at = self._cost = 0.0

    def job_finished(self, _manifest: Manifest) -> None:
        self._stale = True

    def get(self) -> dict[str, tuple[int, int]]:
        with self._lock:
            age = time.monotonic() - self._at
            if self._value is None or (self._stale and age >= max(self.MIN_AGE, self._cost / self.SHARE)):
                self._stale = False  # before counting: a job finishing meanwhile marks it again
                started = time.monotonic()
                self._value = self._count()
                self._at = time.monotonic()
                self._cost = self._at - started
            return self._value
