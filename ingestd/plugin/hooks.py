"""Calling plugins' downstream hooks without letting them into a job's way.

`Hooks` is the typed facade core calls (the pipeline after each commit, the job's end):
the one place that knows the hooks' keyword names. It snapshots the arguments on the
caller's thread (cheap, and only when some plugin implements the hook) and hands each
plugin's calls to that plugin's lane: a bounded queue and a worker, so a slow or stuck
hook delays only its own plugin, never a job, its source or another plugin.

A call gets a time budget; past it, it is given up on (logged with the job's context,
counted) and the lane goes on with a fresh thread. A thread cannot be killed, so the
given-up thread runs on by itself; a lane with too many of those stalls, and its calls
are dropped and counted until one returns.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pluggy

from ingestd.plugin.events import DeletedDocument, Job, StoredDocument, snapshot

BUDGET_SECONDS = 30.0  # one call's time before it is given up on
QUEUE_LIMIT = 1000  # calls waiting per plugin; more are dropped
STRANDED_MAX = 2  # given-up calls still running before a lane stops taking calls
DRAIN_SECONDS = 10.0  # at close, how long queued calls may still run


@dataclass
class _Call:
    hook: str
    function: Callable[..., Any]
    kwargs: dict[str, Any]
    context: dict[str, Any]  # job_id, source, doc_id: for every line about this call
    queued: float = field(default_factory=time.monotonic)


@dataclass
class LaneStats:
    """One plugin's hook calls since start: outcomes are counters, the rest gauges."""

    ok: int = 0
    failed: int = 0
    overran: int = 0
    dropped: int = 0
    queued: int = 0
    lag_s: float = 0.0  # how long the oldest waiting call has waited
    stranded: int = 0


class Hooks:
    """The downstream hooks as core calls them."""

    def __init__(self, pm: pluggy.PluginManager, log, *, budget: float = BUDGET_SECONDS,
                 limit: int = QUEUE_LIMIT):
        self._pm = pm
        self._log = log
        self._budget = budget
        self._limit = limit
        self._lanes: dict[str, _Lane] = {}
        self._lock = threading.Lock()
        self._recent = threading.local()  # per job thread: the last job snapshot and what it was of

    def document_stored(self, document: StoredDocument, job: Job, cursor: str | None = None) -> None:
        self._dispatch("document_stored", {"job_id": job.job_id, "source": job.source, "doc_id": document.doc_id},
                       document=lambda: snapshot(document), job=lambda: self._job(job), cursor=lambda: cursor)

    def document_deleted(self, document: DeletedDocument, job: Job, cursor: str | None = None) -> None:
        self._dispatch("document_deleted", {"job_id": job.job_id, "source": job.source, "doc_id": document.doc_id},
                       document=lambda: snapshot(document), job=lambda: self._job(job), cursor=lambda: cursor)

    def job_finished(self, manifest: Job) -> None:
        self._dispatch("job_finished", {"job_id": manifest.job_id, "source": manifest.source},
                       manifest=lambda: snapshot(manifest))

    def _job(self, job: Job) -> Job:
        """The job's snapshot, shared by the calls of one commit: the documents of a batch
        are announced together, and the manifest does not change between them."""
        key = (job.job_id, job.status, job.finished_at, len(job.errors), job.errors_dropped,
               tuple(vars(job.counters).values()))
        cached = getattr(self._recent, "job", None)
        if cached is None or cached[0] != key:
            cached = self._recent.job = (key, snapshot(job))
        return cached[1]

    def stats(self) -> dict[str, LaneStats]:
        with self._lock:
            lanes = dict(self._lanes)
        return {name: lane.stats() for name, lane in sorted(lanes.items())}

    def close(self, timeout: float = DRAIN_SECONDS) -> None:
        """Let queued calls run for up to `timeout` seconds in all, then drop the rest."""
        deadline = time.monotonic() + timeout
        with self._lock:
            lanes, self._lanes = list(self._lanes.values()), {}
        for lane in lanes:
            lane.close(deadline)

    def _dispatch(self, hook: str, context: dict[str, Any], **snapshots: Callable[[], Any]) -> None:
        """Queue a call for each plugin implementing `hook`; the arguments are snapshotted
        (on the caller's thread, as they are now) only when there is one."""
        impls = getattr(self._pm.hook, hook).get_hookimpls()
        if not impls:
            return
        frozen = {name: make() for name, make in snapshots.items()}
        for impl in impls:
            args = {name: frozen[name] for name in impl.argnames if name in frozen}
            self._lane(impl.plugin_name).put(_Call(hook, impl.function, args, {"plugin": impl.plugin_name,
                                                                               "hook": hook, **context}))

    def _lane(self, plugin: str) -> _Lane:
        with self._lock:
            lane = self._lanes.get(plugin)
            if lane is None:
                lane = self._lanes[plugin] = _Lane(plugin, self._log, self._budget, self._limit)
            return lane


class _Lane:
    """One plugin's calls, in order, on threads of its own."""

    def __init__(self, plugin: str, log, budget: float, limit: int):
        self.plugin = plugin
        self._log = log
        self._budget = budget
        self._calls: queue.Queue[_Call | None] = queue.Queue(maxsize=limit)
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._pending = 0  # queued or running
        self._closed = False
        self._dropping = 0  # dropped since the last call that got in (one log line per run of drops)
        self._stats = LaneStats()
        self._runner = _Runner(self)
        threading.Thread(target=self._loop, name=f"hooks-{plugin}", daemon=True).start()

    def put(self, call: _Call) -> None:
        with self._lock:
            if self._closed or self._stats.stranded >= STRANDED_MAX:
                self._drop(call, "closed" if self._closed else "stalled by calls over their budget")
                return
            try:
                self._calls.put_nowait(call)
            except queue.Full:
                self._drop(call, "queue full")
                return
            self._pending += 1
            if self._dropping:
                self._log.warning("plugin hook calls dropped", plugin=self.plugin, calls=self._dropping)
                self._dropping = 0

    def _drop(self, call: _Call, why: str) -> None:
        self._stats.dropped += 1
        if not self._dropping:  # the first of a run of drops, with its context; the count when it ends
            self._log.warning("plugin hook call dropped", reason=why, **call.context)
        self._dropping += 1

    def stats(self) -> LaneStats:
        with self._lock:
            s = LaneStats(**vars(self._stats))
            s.queued = self._calls.qsize()
            with self._calls.mutex:
                oldest = self._calls.queue[0] if self._calls.queue else None
            s.lag_s = round(time.monotonic() - oldest.queued, 3) if oldest is not None else 0.0
            return s

    def _loop(self) -> None:
        while True:
            call = self._calls.get()
            if call is None:
                self._runner.retire()
                return
            self._run(call)
            with self._lock:
                self._pending -= 1
                if not self._pending:
                    self._idle.notify_all()

    def _run(self, call: _Call) -> None:
        runner = self._runner
        if runner.run(call, self._budget):
            return
        with self._lock:
            self._stats.overran += 1
            self._stats.stranded += 1
        self._log.error("plugin hook over its time budget; given up", budget_s=self._budget, **call.context)
        self._runner = _Runner(self)

    def finished(self, call: _Call, error: BaseException | None, stranded: bool) -> None:
        """A runner's report on a call it ran (maybe long after it was given up on)."""
        with self._lock:
            if stranded:
                self._stats.stranded -= 1
            elif error is None:
                self._stats.ok += 1
            else:
                self._stats.failed += 1
        if error is not None:
            late = {"given_up": True} if stranded else {}
            self._log.error("plugin hook failed", exc_info=error, **late, **call.context)

    def close(self, deadline: float) -> None:
        with self._lock:
            self._closed = True
            while self._pending and (left := deadline - time.monotonic()) > 0:
                self._idle.wait(left)
            dropped = 0
            while True:
                try:
                    call = self._calls.get_nowait()
                except queue.Empty:
                    break
                if call is not None:
                    dropped += 1
            self._pending -= dropped
            self._stats.dropped += dropped
        if dropped:
            self._log.warning("plugin hook calls dropped at close", plugin=self.plugin, calls=dropped)
        self._calls.put(None)


class _Runner:
    """The thread a lane's calls run on. Given up on when a call overruns: it finishes
    that call by itself, reports it, and ends."""

    def __init__(self, lane: _Lane):
        self._lane = lane
        self._inbox: queue.SimpleQueue[tuple[_Call, threading.Event] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._busy = False
        self._abandoned = False
        threading.Thread(target=self._loop, name=f"hook-{lane.plugin}", daemon=True).start()

    def run(self, call: _Call, budget: float) -> bool:
        """Run `call`; False if it is still running after `budget` seconds (then this
        runner is abandoned: it reports the call when it ends, and takes no more)."""
        done = threading.Event()
        with self._lock:
            self._busy = True
        self._inbox.put((call, done))
        if done.wait(budget):
            return True
        with self._lock:
            if not self._busy:  # it ended just now
                return True
            self._abandoned = True
        return False

    def retire(self) -> None:
        self._inbox.put(None)

    def _loop(self) -> None:
        while True:
            item = self._inbox.get()
            if item is None:
                return
            call, done = item
            error = None
            try:
                call.function(**call.kwargs)
            except BaseException as exc:  # a hook's SystemExit must not end the lane either
                error = exc
            with self._lock:
                self._busy = False
                abandoned = self._abandoned
            self._lane.finished(call, error, stranded=abandoned)  # counted before the lane moves on
            done.set()
            if abandoned:
                return
