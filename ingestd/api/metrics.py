"""Prometheus metrics for `GET /metrics`.

Two kinds of numbers: counters fed by events (a job finished, a request was answered),
kept in plain dicts under one lock, and gauges read live from the daemon at scrape time
(queue depth, watcher health, credential expiry). A scrape touches no file and scans no
job index: it costs the same with ten jobs as with a million.

Every configured source has its series from the first scrape, at zero, including one per
job status and item outcome, and sources added by a reload have theirs from the next
scrape: `increase()` and "never succeeded" alerts work before the first event.
Counters start at zero when the daemon starts, as Prometheus expects; the last-success
time is seeded from the job index so "no successful sync for a day" survives a restart.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from ingestd._lib.times import parse_iso
from ingestd.api.backend import Backend, SourceView
from ingestd.jobs.manifest import TERMINAL, Manifest

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4  # every name here is a classic one: the format every scraper reads
JOB_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
HTTP_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
OUTCOMES = ("ingested", "unchanged", "skipped", "failed", "deleted")
HOOK_OUTCOMES = ("ok", "failed", "overran", "dropped")
OVERFLOW = "overflow"  # errors past a manifest's cap of 100 are counted, but their code is not kept


def _epoch(ts: str) -> float:
    return parse_iso(ts).timestamp()


class _Histogram:
    def __init__(self, bounds: tuple[float, ...]):
        self.bounds = bounds
        self.buckets = [0] * len(bounds)
        self.count = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.count += 1
        self.sum += value
        for i, bound in enumerate(self.bounds):
            if value <= bound:
                self.buckets[i] += 1

    def points(self) -> list[tuple[str, float]]:
        return [*((str(b), n) for b, n in zip(self.bounds, self.buckets)), ("+Inf", self.count)]


class Metrics:
    """Event-fed counters: `job_finished` from the daemon's job listener, `request` from HTTP."""

    def __init__(self):
        self._lock = threading.Lock()
        self.jobs: Counter = Counter()  # (source, status)
        self.items: Counter = Counter()  # (source, outcome)
        self.bytes: Counter = Counter()  # source
        self.item_errors: Counter = Counter()  # (source, code)
        self.job_errors: Counter = Counter()  # (source, code)
        self.durations: dict[str, _Histogram] = {}
        self.last_success: dict[str, float] = {}
        self.requests: Counter = Counter()  # (route, method, status)
        self.latency: dict[tuple[str, str], _Histogram] = {}  # (route, method)

    def seed(self, manifests: Iterable[Manifest]) -> None:
        """Remember each source's last success from the jobs already on disk."""
        for m in manifests:
            if m.status == "succeeded" and m.finished_at:
                self._success(m.source, _epoch(m.finished_at))

    def _success(self, source: str, at: float) -> None:
        self.last_success[source] = max(at, self.last_success.get(source, 0.0))

    def job_finished(self, m: Manifest) -> None:
        duration = m.duration_s()
        with self._lock:
            self.jobs[m.source, m.status] += 1
            for outcome in OUTCOMES:
                self.items[m.source, outcome] += getattr(m.counters, outcome)
            self.bytes[m.source] += m.counters.bytes
            for error in m.errors:
                bucket = self.item_errors if error.item is not None else self.job_errors
                bucket[m.source, error.code.value] += 1
            if m.errors_dropped:
                self.item_errors[m.source, OVERFLOW] += m.errors_dropped
            if duration is not None:
                self.durations.setdefault(m.source, _Histogram(JOB_BUCKETS)).observe(duration)
            if m.status == "succeeded" and m.finished_at:
                self._success(m.source, _epoch(m.finished_at))

    def request(self, route: str, method: str, status: int, seconds: float) -> None:
        """`method` must come from a bounded set (the transport maps unknown verbs to "other")."""
        with self._lock:
            self.requests[route, method, str(status)] += 1
            self.latency.setdefault((route, method), _Histogram(HTTP_BUCKETS)).observe(seconds)

    def families(self, sources: list[str]) -> Iterator[Metric]:
        """Every counter, with a zero series for each of `sources` (the configured ones)."""
        with self._lock:
            jobs = _zeros(self.jobs, ((s, status) for s in sources for status in TERMINAL))
            items = _zeros(self.items, ((s, outcome) for s in sources for outcome in OUTCOMES))
            yield _counter("ingestd_jobs", "Jobs that reached a terminal status, by source and status.",
                           ["source", "status"], jobs)
            yield _counter("ingestd_items", "Items handled by finished jobs, by source and outcome "
                           "(ingested, unchanged, skipped, failed, deleted).", ["source", "outcome"], items)
            yield _counter("ingestd_ingested_bytes", "Bytes of new document versions stored, by source.",
                           ["source"], _zeros({(k,): v for k, v in self.bytes.items()}, ((s,) for s in sources)))
            yield _counter("ingestd_item_errors", "Item-level errors (failed or skipped items), by source and code.",
                           ["source", "code"], self.item_errors)
            yield _counter("ingestd_job_errors", "Job-level errors (the whole job failed), by source and code.",
                           ["source", "code"], self.job_errors)
            yield _counter("ingestd_http_requests", "HTTP requests answered, by route, method and status.",
                           ["route", "method", "status"], self.requests)
            yield _histogram("ingestd_job_duration_seconds", "Duration of finished jobs, by source.", ["source"],
                             {(s,): h for s, h in self.durations.items()}, ((s,) for s in sources), JOB_BUCKETS)
            yield _histogram("ingestd_http_request_duration_seconds",
                             "Time from a request read whole to its answer ready (queueing included), "
                             "by route and method.", ["route", "method"], self.latency, (), HTTP_BUCKETS)
            # 0 = never succeeded (that a source has no success at all is itself worth an alert)
            yield _gauge("ingestd_last_success_timestamp_seconds",
                         "Unix time the last succeeded job of each source finished; 0 if none ever did.", ["source"],
                         {(s,): self.last_success.get(s, 0.0) for s in sources})


class Collector:
    """Everything `/metrics` shows: the event counters, and gauges read from the daemon at
    scrape time (all in memory, O(sources))."""

    def __init__(self, backend: Backend, metrics: Metrics, refused: Callable[[], dict[str, int]],
                 held: Callable[[], int] = lambda: 0):
        self.backend, self.metrics, self.refused, self.held = backend, metrics, refused, held

    def collect(self) -> Iterator[Metric]:
        b = self.backend
        views = b.sources()
        yield from self.metrics.families([v.name for v in views])
        checks = b.health()
        watchers = checks["watchers"]["sources"]
        runtime = b.runtime()
        yield _gauge("ingestd_info", "Always 1; the version is a label.", ["version"], {(b.version,): 1})
        yield _gauge("ingestd_start_time_seconds", "Unix time the daemon started.", [], {(): b.started_at})
        yield _gauge("ingestd_queue_depth", "Jobs queued and not yet started.", [], {(): runtime.queue_depth})
        yield _gauge("ingestd_jobs_running", "Jobs running now.", [], {(): runtime.running})
        yield _gauge("ingestd_health_check_ok", "1 when the named health check passes.", ["check"],
                     {(name, ): int(bool(c["ok"])) for name, c in checks.items()})
        yield from _sources(views, runtime.active)
        yield _gauge("ingestd_watcher_up", "1 when the drop-folder watcher of the source is alive.",
                     ["source", "mode"], {(n, w["mode"]): int(bool(w["alive"])) for n, w in watchers.items()})
        yield _gauge("ingestd_watcher_degraded", "1 when the watcher fell back or lost events (see the log).",
                     ["source"], {(n,): int(bool(w["degraded"])) for n, w in watchers.items()})
        yield _gauge("ingestd_watcher_pending_files", "Files seen and waiting to settle or to be taken.",
                     ["source"], {(n,): w["pending"] + w["ready"] for n, w in watchers.items()})
        yield _counter("ingestd_watcher_restarts", "Times a watcher was restarted after it died.",
                       ["source"], {(n,): w["restarts"] for n, w in watchers.items()})
        yield _counter("ingestd_schedule_skipped_runs", "Scheduled runs skipped because the last was still going.",
                       ["source"], {(n,): v for n, v in runtime.schedule_skipped.items()})
        yield from _extraction(b.extraction_stats())
        yield from _hooks(runtime.plugin_hooks)
        yield _counter("ingestd_http_connections_refused", "Connections refused or evicted at once, by reason "
                       "(per_client: the address holds its share; full: every slot busy; evicted: made room).",
                       ["reason"], _zeros({(k,): v for k, v in self.refused().items()},
                                          [("per_client",), ("full",), ("evicted",)]))
        yield _gauge("ingestd_http_requests_held", "Long-polls (GET /changes?wait=) waiting for a change now.",
                     [], {(): self.held()})
        yield _gauge("ingestd_changes_last_cursor", "The change feed's last cursor, as a number (0: no change yet).",
                     [], {(): b.last_change()})


def _hooks(lanes: dict[str, dict[str, float]]) -> Iterator[Metric]:
    calls = {(name, outcome): s[outcome] for name, s in lanes.items() for outcome in HOOK_OUTCOMES}
    yield _counter("ingestd_plugin_hook_calls", "Plugin hook calls by outcome (overran: given up after the "
                   "time budget; dropped: queue full, stalled or closed).", ["plugin", "outcome"], calls)
    yield _gauge("ingestd_plugin_hook_queue", "Plugin hook calls waiting in the plugin's queue.", ["plugin"],
                 {(name,): s["queued"] for name, s in lanes.items()})
    yield _gauge("ingestd_plugin_hook_lag_seconds", "How long the plugin's oldest waiting hook call has waited.",
                 ["plugin"], {(name,): s["lag_s"] for name, s in lanes.items()})

def _sources(views: list[SourceView], active: dict[str, str]) -> Iterator[Metric]:
    yield _gauge("ingestd_source_available", "1 when the source's connector can run (dependencies installed).",
                 ["source"], {(v.name,): int(v.available) for v in views})
    yield _gauge("ingestd_jobs_active", "Jobs queued or running now, by source and status.", ["source", "status"],
                 {(v.name, status): int(active.get(v.name) == status)
                  for v in views for status in ("queued", "running")})
    yield _gauge("ingestd_credential_warnings", "Warnings the connector reports about the source's credential "
                 "(e.g. a certificate close to expiry).", ["source"],
                 {(v.name,): len(v.credential.warnings) for v in views})
    yield _gauge("ingestd_credential_expiry_timestamp_seconds", "Unix time the source's credential expires "
                 "(sources whose connector knows it).", ["source"],
                 {(v.name,): v.credential.expires_at for v in views if v.credential.expires_at is not None})


EXTRACTION_STATUSES = ("ok", "timeout", "too_large", "encrypted", "unsupported", "corrupt")


def _extraction(stats) -> Iterator[Metric]:
    """Text extraction's series (docs/extraction.md), when it is on."""
    if stats is None:
        return
    yield _gauge("ingestd_extraction_queue_depth", "Document versions waiting to be looked at or extracted.", [],
                 {(): stats.queue_depth})
    yield _gauge("ingestd_extractions_running", "Files being extracted now.", [], {(): stats.running})
    yield _counter("ingestd_extractions", "Files extracted since start, by extractor and status (ok or the typed "
                   "error).", ["extractor", "status"],
                   _zeros(stats.done, ((e, s) for e in stats.extractors for s in EXTRACTION_STATUSES)))
    yield _counter("ingestd_extraction_seconds", "Seconds spent extracting, by extractor.", ["extractor"],
                   _zeros({(k,): v for k, v in stats.seconds.items()}, ((e,) for e in stats.extractors)))


def _zeros(values, keys: Iterable[tuple]) -> dict:
    out = dict(values)
    for key in keys:
        out.setdefault(key, 0)
    return out


def _counter(name: str, doc: str, labels: list[str], values) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=labels)
    for key, value in sorted(values.items()):
        family.add_metric(list(key), value)
    return family


def _gauge(name: str, doc: str, labels: list[str], values) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=labels)
    for key, value in sorted(values.items()):
        family.add_metric(list(key), value)
    return family


def _histogram(name: str, doc: str, labels: list[str], values: dict, zero_keys: Iterable[tuple],
               bounds: tuple[float, ...]) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=labels)
    hists = dict(values)
    for key in zero_keys:
        hists.setdefault(key, _Histogram(bounds))
    for key, h in sorted(hists.items()):
        family.add_metric(list(key), h.points(), h.sum)
    return family


def registry_for(collector: Collector) -> CollectorRegistry:
    """A private registry (not the library's global one), so two daemons in one test
    process, or a plugin using prometheus_client, never collide."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    ProcessCollector(registry=registry)  # memory, CPU, open fds of the daemon process
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)


__all__ = ["CONTENT_TYPE", "Collector", "Metrics", "registry_for", "render"]
