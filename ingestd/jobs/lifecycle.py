"""A job's life, with one owner: created (queued) → started (running) → settled (a
terminal status) → done, or failed at any point before that.

Whoever triggers work (the queue, the CLI) creates a job here; the pipeline starts and
settles it; whatever goes wrong outside the pipeline fails it here. When a job is done
its source is free again and a `JobDone` is published to every subscriber: the queue
and the watcher (release and retry its files), the API's metrics, the plugins'
`job_finished` hook. Completion no longer travels back up through the daemon.

It also guards the state directory: when `jobs/` refuses a manifest, new jobs are
refused outright (no phantom `queued` job in memory) for a delay that doubles up to a
minute, and `health()` names the state dir until a write succeeds again.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ingestd._lib import logs
from ingestd._lib.atomic import write_bytes
from ingestd._lib.files import unlink_quietly
from ingestd.errors import Code, IngestdError, StoreError, io_error_code
from ingestd.jobs.jobstore import JobStore
from ingestd.jobs.manifest import JobError, Manifest, Status, Trigger
from ingestd.plugin.progress import Progress

PROGRESS_SECONDS = 1.0  # how often running jobs' manifest files show their progress
BACKOFF_FIRST, BACKOFF_MAX = 1.0, 60.0


class Busy(IngestdError):
    """The source already has a job queued or running; `manifest` is that job."""

    def __init__(self, manifest: Manifest):
        self.manifest = manifest
        super().__init__(f"source {manifest.source!r} already has job {manifest.job_id} {manifest.status}")


class JobsUnwritable(StoreError):
    """`jobs/` refused the new job's manifest, or did so moments ago: no job was made."""


@dataclass(frozen=True)
class JobDone:
    """Published once per job, after its source is free: `manifest` is a final copy;
    `hint` what the job was asked to take (a drop folder's settled paths)."""

    manifest: Manifest
    hint: list[str] | None = None

    @property
    def ok(self) -> bool:
        return self.manifest.status == "succeeded"


Subscriber = Callable[[JobDone], None]


class Lifecycle:
    def __init__(self, jobs: JobStore):
        self.jobs = jobs
        self.log = logs.get("ingestd.jobs")
        self._lock = threading.Lock()
        self._holders: dict[str, Manifest] = {}  # source → the job holding it
        self._open: set[str] = set()  # created or started here, not yet done
        self._subscribers: list[Subscriber] = []
        self._late: list[Subscriber] = []
        self._guard = _StateGuard(jobs)
        self._ticker: threading.Thread | None = None
        self._closed = threading.Event()

    # -- who hears of finished jobs ---------------------------------------------------

    def subscribe(self, fn: Subscriber, *, late: bool = False) -> None:
        """Call `fn(JobDone)` for every finished job, from the job's thread; `late` ones
        after the others (plugins' hooks, after ingestd's own parts)."""
        (self._late if late else self._subscribers).append(fn)

    def unsubscribe(self, fn: Subscriber) -> None:
        for group in (self._subscribers, self._late):
            if fn in group:
                group.remove(fn)

    # -- the life of a job ------------------------------------------------------------

    def create(self, source: str, kind: str, trigger: Trigger) -> Manifest:
        """A new queued job holding `source` (durable before it is returned). Busy if a job
        holds the source already; JobsUnwritable when the state dir refuses it."""
        with self._lock:
            if source in self._holders:
                raise Busy(self._holders[source].model_copy(deep=True))
            self._guard.gate()
            try:
                manifest = self.jobs.create(source, kind, trigger)
            except OSError as exc:
                raise self._guard.refused(exc) from None
            self._guard.accepted()
            self._holders[source] = manifest
            self._open.add(manifest.job_id)
        return manifest

    def holder(self, source: str) -> Manifest | None:
        """The job holding `source` (queued, running, or finishing), if any."""
        with self._lock:
            return self._holders.get(source)

    def holders(self) -> list[Manifest]:
        """Every job holding a source now: the objects their threads update (counters move
        as results commit), for samplers that only read them."""
        with self._lock:
            return list(self._holders.values())

    def live(self, source: str) -> Manifest | None:
        """The job holding `source` now, as a person watching it should see it: a copy with
        its counters as last committed (at least once a second while results arrive) and
        its live `progress` (None before it starts and once it is done). This is what a
        progress display polls in-process (a one-shot `ingestd ingest`); another process
        reads the same from `GET /ingest/{job_id}` or the manifest file. Cheap enough to
        call several times a second: one lock and one copy."""
        held = self.holder(source)
        return None if held is None else self.jobs.get(held.job_id)

    def start(self, manifest: Manifest, progress: Progress) -> None:
        self.jobs.follow(manifest.job_id, progress)
        with self._lock:
            self._open.add(manifest.job_id)
        self.jobs.transition(manifest, "running")
        self._tick_while_running()

    def settle(self, manifest: Manifest, status: Status) -> None:
        """The job's terminal status, durable before a connector acts on its results
        (OSError if the disk refused: memory has the final state all the same)."""
        self.jobs.transition(manifest, status)

    def done(self, manifest: Manifest, hint: list[str] | None = None) -> None:
        """Free the job's source and tell every subscriber, once per job."""
        self.jobs.unfollow(manifest.job_id)
        with self._lock:
            held = self._holders.get(manifest.source)
            if held is not None and held.job_id == manifest.job_id:
                del self._holders[manifest.source]
            if manifest.job_id not in self._open:
                return
            self._open.discard(manifest.job_id)
        event = JobDone(manifest.model_copy(deep=True), list(hint) if hint is not None else None)
        for fn in (*self._subscribers, *self._late):
            try:
                fn(event)
            except Exception:
                self.log.exception("job subscriber failed", job_id=manifest.job_id, source=manifest.source)

    def fail(self, manifest: Manifest, code: Code, message: str, hint: list[str] | None = None) -> Manifest:
        """End a job that could not run (or ran into a bug) as `failed`, then done. Never
        raises: this is the last resort of whoever holds the job."""
        try:
            current = self.jobs.get(manifest.job_id)
            if not current.terminal:
                if current.status == "queued":
                    self.jobs.transition(current, "running")
                current.add_error(JobError(code=code, message=message))
                self.jobs.transition(current, "failed")
            manifest = current
        except Exception:
            self.log.exception("job could not be marked failed", job_id=manifest.job_id)
        self.done(manifest, hint)
        return manifest

    def recover(self) -> list[Manifest]:
        """At daemon start: every job a dead process left queued or running ends
        failed/interrupted, and its half-done downloads go (a source a live process holds
        is left alone: its job ends on its own)."""
        recovered = self.jobs.recover()
        for manifest in recovered:
            remove_workspace(self.jobs.dir.parent, manifest.job_id)
        return recovered

    def close_stale(self, source: str, previous: str | None) -> None:
        """Called holding `source`'s lock: end the jobs a dead process left running there
        (`previous` is the one the lock file names), and remove their half-done downloads."""
        for stale in self.jobs.close_stale(source, previous):
            remove_workspace(self.jobs.dir.parent, stale.job_id)
            logs.get(job_id=stale.job_id, source=source).warning(
                "recovered a job left running by a process that stopped", code=Code.INTERRUPTED.value)

    # -- the state dir ----------------------------------------------------------------

    def health(self) -> dict:
        """The `state_dir` health check: can job records be written?"""
        return self._guard.health()

    def deferring(self) -> bool:
        """True while new jobs are refused (the state dir refused one moments ago)."""
        return self._guard.waiting()

    # -- progress ---------------------------------------------------------------------

    def _tick_while_running(self) -> None:
        """One thread rewrites running jobs' manifests with their progress about once a
        second, and ends when no job runs."""
        with self._lock:
            if self._ticker is not None and self._ticker.is_alive():
                return
            self._ticker = threading.Thread(target=self._tick, name="progress", daemon=True)
            self._ticker.start()

    def close(self) -> None:
        self._closed.set()

    def _tick(self) -> None:
        while not self._closed.wait(PROGRESS_SECONDS):
            self.jobs.write_progress()
            with self._lock:
                if not self._open:
                    self._ticker = None
                    return


def remove_workspace(state_dir: Path, job_id: str) -> None:
    """A job's scratch folder (connectors' downloads in progress), gone."""
    path = state_dir / "workspace" / job_id
    if path.exists():
        shutil.rmtree(path, ignore_errors=True)


class _StateGuard:
    """Refuses new jobs for a while after `jobs/` refused one: the delay doubles from 1 s
    to a minute, so an unwritable state dir costs one attempt (and one log line) per
    delay instead of a retry per event."""

    def __init__(self, jobs: JobStore):
        self.jobs = jobs
        self.log = logs.get("ingestd.jobs")
        self._error: OSError | None = None
        self._delay = 0.0
        self._retry_at = 0.0

    def gate(self) -> None:
        wait = self._retry_at - time.monotonic()
        if self._error is not None and wait > 0:
            raise self._unwritable(self._error, wait)

    def waiting(self) -> bool:
        return self._error is not None and time.monotonic() < self._retry_at

    def refused(self, exc: OSError) -> JobsUnwritable:
        first = self._error is None
        self._error = exc
        self._delay = min(BACKOFF_MAX, max(BACKOFF_FIRST, self._delay * 2))
        self._retry_at = time.monotonic() + self._delay
        (self.log.error if first else self.log.warning)(
            "state dir refuses job records; new jobs wait", state_dir=str(self.jobs.dir.parent),
            error=exc.strerror or str(exc), retry_in_s=self._delay)
        return self._unwritable(exc, self._delay)

    def accepted(self) -> None:
        if self._error is not None:
            self.log.info("state dir takes job records again", state_dir=str(self.jobs.dir.parent))
        self._error, self._delay = None, 0.0

    def health(self) -> dict:
        error = self._error or self.jobs.write_error
        if error is not None and time.monotonic() >= self._retry_at:
            error = self._probe()
        check = {"ok": error is None, "state_dir": str(self.jobs.dir.parent)}
        if error is not None:
            check["error"] = f"{self.jobs.dir}: {error.strerror or error}"
        return check

    def _probe(self) -> OSError | None:
        """Whether `jobs/` takes a file now (so health recovers without waiting for a job)."""
        probe = self.jobs.dir / ".health-probe.tmp"
        try:
            write_bytes(probe, b"", durable=False)
            unlink_quietly(probe)
        except OSError as exc:
            if self._error is not None:
                self._delay = min(BACKOFF_MAX, max(BACKOFF_FIRST, self._delay * 2))
                self._retry_at = time.monotonic() + self._delay
            return exc
        self.jobs.write_error = None
        self.accepted()
        return None

    def _unwritable(self, exc: OSError, wait: float) -> JobsUnwritable:
        return JobsUnwritable(
            f"the state directory {self.jobs.dir.parent} cannot take job records ({exc.strerror or exc}); "
            f"no job was made; new jobs are tried again in {wait:.0f} s", io_error_code(exc))
