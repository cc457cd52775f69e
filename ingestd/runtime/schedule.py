"""Polling remote sources on their schedule (APScheduler 3, in UTC).

The scheduler only enqueues: the sync itself runs on the worker pool, so a long sync
never blocks the scheduler thread, and an overlapping run is refused by the queue
(counted, logged) rather than silently dropped by APScheduler's max_instances.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MISSED
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from ingestd._lib import logs
from ingestd.plugin.options import DEFAULT_EVERY
from ingestd.jobs.lifecycle import JobsUnwritable
from ingestd.runtime.queue import Busy

FIRST_RUN_DELAY = 1.0  # seconds after start: a restarted daemon catches up promptly


def trigger_for(options):
    jitter = int(getattr(options, "jitter", 0) or 0) or None
    if getattr(options, "cron", None):
        return CronTrigger.from_crontab(options.cron, timezone="UTC"), None
    every = getattr(options, "every", None) or DEFAULT_EVERY
    return IntervalTrigger(seconds=every, jitter=jitter, timezone="UTC"), every


class Schedule:
    def __init__(self, submit):
        self._submit = submit
        self._scheduler = BackgroundScheduler(timezone="UTC")
        self._scheduler.add_listener(self._on_event, EVENT_JOB_ERROR | EVENT_JOB_MISSED)
        self._lock = threading.Lock()
        self.overlaps: dict[str, int] = {}
        self._first: dict[str, str] = {}  # the trigger a source's next run is recorded under, once
        self.log = logs.get("ingestd.schedule")

    def start(self) -> None:
        self._scheduler.start()

    def stop(self) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)

    def running(self) -> bool:
        return bool(self._scheduler.running)

    def add(self, name: str, options, first: str = "schedule") -> None:
        """Run a source on its schedule, the first time soon after now. `first` names what
        that first run is recorded as: `recovery` after a crash interrupted the source's job,
        so its manifest says why it ran before its time."""
        with self._lock:
            self._first[name] = first
        trigger, every = trigger_for(options)
        grace = int(every) if every else 3600
        first = datetime.now(timezone.utc) + timedelta(seconds=FIRST_RUN_DELAY)
        self._scheduler.add_job(
            self._fire, trigger=trigger, args=[name], id=f"source:{name}", name=name, replace_existing=True,
            coalesce=True, max_instances=1, misfire_grace_time=max(1, grace), next_run_time=first,
        )

    def every(self, name: str, seconds: float, task) -> None:
        """Run a housekeeping task periodically on the scheduler's thread (not a source)."""
        self._scheduler.add_job(
            self._run_task, trigger=IntervalTrigger(seconds=seconds, timezone="UTC"), args=[name, task],
            id=f"task:{name}", name=name, replace_existing=True, coalesce=True, max_instances=1,
        )

    def _run_task(self, name: str, task) -> None:
        try:
            task()
        except Exception:
            self.log.exception("housekeeping task failed", task=name)

    def remove(self, name: str) -> None:
        with self._lock:
            self._first.pop(name, None)
        job = self._scheduler.get_job(f"source:{name}")
        if job is not None:
            job.remove()

    def names(self) -> list[str]:
        """The scheduled sources."""
        return [job.name for job in self._scheduler.get_jobs() if job.id.startswith("source:")]

    def next_run(self, name: str) -> datetime | None:
        job = self._scheduler.get_job(f"source:{name}")
        return job.next_run_time if job is not None else None

    def _fire(self, name: str) -> None:
        with self._lock:
            trigger = self._first.get(name, "schedule")
        try:
            self._submit(name, trigger)
            with self._lock:  # a run that could not be queued leaves the label for the next
                self._first.pop(name, None)
        except Busy as exc:
            with self._lock:
                self.overlaps[name] = self.overlaps.get(name, 0) + 1
            self.log.warning("scheduled run skipped: previous run still going", source=name,
                             job_id=exc.manifest.job_id, skipped=self.overlaps[name])
        except JobsUnwritable as exc:  # the lifecycle logged the cause; no traceback per run
            self.log.warning("scheduled run skipped: the state dir refuses job records", source=name, error=str(exc))
        except Exception:
            self.log.exception("scheduled run could not be queued", source=name)

    def _on_event(self, event) -> None:
        if event.code == EVENT_JOB_MISSED:
            self.log.warning("scheduled run missed", job=event.job_id)
        else:
            self.log.error("scheduled run failed", job=event.job_id, error=str(event.exception))
