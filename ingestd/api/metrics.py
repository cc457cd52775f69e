"""Prometheus metrics for `GET /metrics`.

Two kinds of numbers: counters fed by events (a job finished, a request was answered),
kept in plain dicts under one lock, and gauges read live from the daemon at scrape time
(queue depth, watcher health). A scrape touches no file and scans no job index: it costs
the same with ten jobs as with a million. Counters start at zero when the daemon starts,
as Prometheus expects; the last-success time is seeded from the job index so an alert on
"no successful sync for a day" survives a restart.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from ingestd._lib.times import parse_iso
from ingestd.jobs.manifest import Manifest

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4  # every name here is a classic one: the format every scraper reads
DURATION_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
OUTCOMES = ("ingested", "unchanged", "skipped", "failed", "deleted")
HOOK_OUTCOMES = ("ok", "failed", "overran", "dropped")
OVERFLOW = "overflow"  # errors past a manifest's cap of 100 are counted, but their code is not kept


def _epoch(ts: str) -> float:
    return parse_iso(ts).timestamp()


class _Histogram:
    def __init__(self):
        self.buckets = [0] * len(DURATION_BUCKETS)
        self.count = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.count += 1
        self.sum += value
        for i, bound in enumerate(DURATION_BUCKETS):
            if value <= bound:
                self.buckets[i] += 1

    def points(self) -> list[tuple[str, float]]:
        return [*((str(b), n) for b, n in zip(DURATION_BUCKETS, self.buckets)), ("+Inf", self.count)]


class Metrics:
    """Event-fed counters: `job_finished` from the daemon's job listener, `request` from HTTP."""

    def __init__(self):
        self._lock = threading.Lock()
        self.jobs: Counter = Counter()  # (source, status)
        self.documents: Counter = Counter()  # (source, outcome)
        self.bytes: Counter = Counter()  # source
        self.item_errors: Counter = Counter()  # (source, code)
        self.job_errors: Counter = Counter()  # (source, code)
        self.durations: dict[str, _Histogram] = {}
        self.last_success: dict[str, float] = {}
        self.requests: Counter = Counter()  # (route, method, status)

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
                self.documents[m.source, outcome] += getattr(m.counters, outcome)
            self.bytes[m.source] += m.counters.bytes
            for error in m.errors:
                bucket = self.item_errors if error.item is not None else self.job_errors
                bucket[m.source, error.code.value] += 1
            if m.errors_dropped:
                self.item_errors[m.source, OVERFLOW] += m.errors_dropped
            if duration is not None:
                self.durations.setdefault(m.source, _Histogram()).observe(duration)
            if m.status == "succeeded" and m.finished_at:
                self._success(m.source, _epoch(m.finished_at))

    def request(self, route: str, method: str, status: int) -> None:
        with self._lock:
            self.requests[route, method, str(status)] += 1

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            yield _counter("ingestd_jobs", "Jobs that reached a terminal status, by source and status.",
                           ["source", "status"], self.jobs)
            yield _counter("ingestd_documents", "Items processed by finished jobs, by source and outcome.",
                           ["source", "outcome"], self.documents)
            yield _counter("ingestd_ingested_bytes", "Bytes of new document versions stored, by source.",
                           ["source"], {(k,): v for k, v in self.bytes.items()})
            yield _counter("ingestd_item_errors", "Item-level errors (failed or skipped items), by source and code.",
                           ["source", "code"], self.item_errors)
            yield _counter("ingestd_job_errors", "Job-level errors (the whole job failed), by source and code.",
                           ["source", "code"], self.job_errors)
            yield _counter("ingestd_http_requests", "HTTP requests answered, by route, method and status.",
                           ["route", "method", "status"], self.requests)
            hist = HistogramMetricFamily("ingestd_job_duration_seconds", "Duration of finished jobs, by source.",
                                         labels=["source"])
            for source, h in sorted(self.durations.items()):
                hist.add_metric([source], h.points(), h.sum)
            yield hist
            yield _gauge("ingestd_last_success_timestamp_seconds",
                         "Unix time the last succeeded job of each source finished.", ["source"],
                         {(k,): v for k, v in self.last_success.items()})


class DaemonCollector:
    """Gauges read from the running daemon at scrape time: all in memory, all O(sources)."""

    def __init__(self, daemon):
        self.daemon = daemon

    def collect(self) -> Iterator[Metric]:
        d = self.daemon
        checks = d.health()
        watchers = checks["watchers"]["sources"]
        yield _gauge("ingestd_info", "Always 1; the version is a label.", ["version"], {(d.version,): 1})
        yield _gauge("ingestd_start_time_seconds", "Unix time the daemon started.", [], {(): d.started_at})
        yield _gauge("ingestd_queue_depth", "Jobs queued and not yet started.", [], {(): d.workers.depth()})
        yield _gauge("ingestd_jobs_running", "Jobs running now.", [], {(): d.workers.running})
        yield _gauge("ingestd_health_check_ok", "1 when the named health check passes.", ["check"],
                     {(name, ): int(bool(c["ok"])) for name, c in checks.items()})
        yield from self._sources(d)
        yield _gauge("ingestd_watcher_up", "1 when the drop-folder watcher of the source is alive.",
                     ["source", "mode"], {(n, w["mode"]): int(bool(w["alive"])) for n, w in watchers.items()})
        yield _gauge("ingestd_watcher_degraded", "1 when the watcher fell back or lost events (see the log).",
                     ["source"], {(n,): int(bool(w["degraded"])) for n, w in watchers.items()})
        yield _gauge("ingestd_watcher_pending_files", "Files seen and waiting to settle or to be taken.",
                     ["source"], {(n,): w["pending"] + w["ready"] for n, w in watchers.items()})
        yield _counter("ingestd_watcher_restarts", "Times a watcher was restarted after it died.",
                       ["source"], {(n,): w["restarts"] for n, w in watchers.items()})
        yield _counter("ingestd_schedule_skipped_runs", "Scheduled runs skipped because the last was still going.",
                       ["source"], {(n,): v for n, v in dict(d.schedule.overlaps).items()})
        yield from self._hooks(d.plugins.hooks.stats())

    def _hooks(self, lanes) -> Iterator[Metric]:
        calls = {(name, outcome): getattr(s, outcome) for name, s in lanes.items() for outcome in HOOK_OUTCOMES}
        yield _counter("ingestd_plugin_hook_calls", "Plugin hook calls by outcome (overran: given up after the "
                       "time budget; dropped: queue full, stalled or closed).", ["plugin", "outcome"], calls)
        yield _gauge("ingestd_plugin_hook_queue", "Plugin hook calls waiting in the plugin's queue.", ["plugin"],
                     {(name,): s.queued for name, s in lanes.items()})
        yield _gauge("ingestd_plugin_hook_lag_seconds", "How long the plugin's oldest waiting hook call has waited.",
                     ["plugin"], {(name,): s.lag_s for name, s in lanes.items()})

    def _sources(self, d) -> Iterator[Metric]:
        available, active = {}, {}
        for source in d.config.sources:
            available[(source.name,)] = int(source.name not in d.unavailable)
            job = d.workers.busy(source.name)
            for status in ("queued", "running"):
                active[(source.name, status)] = int(job is not None and job.status == status)
        yield _gauge("ingestd_source_available", "1 when the source's connector can run (dependencies installed).",
                     ["source"], available)
        yield _gauge("ingestd_jobs_active", "Jobs queued or running now, by source and status.",
                     ["source", "status"], active)


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


def registry_for(daemon, metrics: Metrics) -> CollectorRegistry:
    """A private registry (not the library's global one), so two daemons in one test
    process, or a plugin using prometheus_client, never collide."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(metrics)
    registry.register(DaemonCollector(daemon))
    ProcessCollector(registry=registry)  # memory, CPU, open fds of the daemon process
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)


__all__ = ["CONTENT_TYPE", "DaemonCollector", "Metrics", "registry_for", "render"]
