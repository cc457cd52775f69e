"""The one job queue every trigger goes through (watch, schedule, API, CLI-in-daemon).

At most one job per source is queued or running at a time: a second request for a busy
source is refused with the job that holds it, which the API turns into 409 and the
scheduler into a counted "skipped: overlapping run".
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable

from ingestd._lib import logs
from ingestd.errors import Code, IngestdError
from ingestd.jobs.manifest import JobError, Manifest, Trigger


class Busy(IngestdError):
    def __init__(self, manifest: Manifest):
        self.manifest = manifest
        super().__init__(f"source {manifest.source!r} already has job {manifest.job_id} {manifest.status}")


class Workers:
    def __init__(self, app, size: int, on_done: Callable[[Manifest, object], None] | None = None):
        self.app = app
        self._queue: queue.Queue = queue.Queue()
        self._active: dict[str, Manifest] = {}
        self._lock = threading.Lock()
        self.stop = threading.Event()  # set past the shutdown timeout: running jobs end `interrupted`
        self._on_done = on_done
        self._log = logs.get("ingestd.workers")
        self._threads = [threading.Thread(target=self._loop, name=f"worker-{i}", daemon=True) for i in range(size)]
        self.running = 0

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def submit(self, source: str, trigger: Trigger, hint=None) -> Manifest:
        """Queue a job for `source`; raises Busy if one is already queued or running.

        Returns a copy of the job as queued: from `put` on, the manifest belongs to the
        worker thread, and a caller reading it (the API answering 202) must not race it.
        """
        connector = self.app.connector(source)  # raises for unknown or unavailable sources
        with self._lock:
            if source in self._active:  # until its worker is done, finish included
                raise Busy(self._active[source].model_copy())
            manifest = self.app.jobs.create(source, connector.kind, trigger)
            self._active[source] = manifest
        self._log.info("job queued", job_id=manifest.job_id, source=source, trigger=trigger)
        queued = manifest.model_copy(deep=True)
        self._queue.put((manifest, hint))
        return queued

    def busy(self, source: str) -> Manifest | None:
        with self._lock:
            return self._active.get(source)

    def jobs(self) -> list[Manifest]:
        """The queued and running jobs, live (their counters move while they run)."""
        with self._lock:
            return list(self._active.values())

    def depth(self) -> int:
        return self._queue.qsize()

    def alive(self) -> bool:
        return all(t.is_alive() for t in self._threads)

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            manifest, hint = item
            with self._lock:
                self.running += 1
            try:
                if self.stop.is_set():
                    manifest = self.app.failed_before_start(manifest, Code.INTERRUPTED, "daemon stopped before the job started")
                else:
                    manifest = self.app.run_job(manifest.source, manifest.trigger, hint=hint, stop=self.stop,
                                                manifest=manifest)
            except Exception:
                self._log.exception("job could not run", job_id=manifest.job_id, source=manifest.source)
                manifest = self._fail(manifest)
            finally:
                with self._lock:
                    self.running -= 1
                    self._active.pop(manifest.source, None)
            if self._on_done is not None:
                try:
                    self._on_done(manifest, hint)
                except Exception:
                    self._log.exception("job completion callback failed", job_id=manifest.job_id)

    def _fail(self, manifest: Manifest) -> Manifest:
        try:
            current = self.app.jobs.get(manifest.job_id)
            if current.terminal:
                return current
            if current.status == "queued":
                self.app.jobs.transition(current, "running")
            current.add_error(JobError(code=Code.INTERNAL, message="the job could not run; see the daemon log"))
            return self.app.jobs.transition(current, "failed")
        except Exception:
            return manifest

    def shutdown(self, timeout: float) -> None:
        """Let running jobs finish for `timeout` seconds, then interrupt them."""
        self._drain_queued()
        for _ in self._threads:
            self._queue.put(None)
        end = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(timeout=max(0.0, end - time.monotonic()))
        if any(t.is_alive() for t in self._threads):
            self._log.warning("shutdown timeout reached; interrupting running jobs", timeout_s=timeout)
            self.stop.set()
            for thread in self._threads:
                thread.join(timeout=30)

    def _drain_queued(self) -> None:
        """Jobs queued but not started are closed now; their files wait for the next start."""
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is None:
                continue
            manifest, _ = item
            self.app.failed_before_start(manifest, Code.INTERRUPTED, "daemon stopped before the job started")
            with self._lock:
                self._active.pop(manifest.source, None)
