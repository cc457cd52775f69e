"""The schedule's first run after a crash is recorded as `recovery`, once."""

from __future__ import annotations

import threading

from ingestd.jobs.manifest import Manifest
from ingestd.plugin.options import ScheduleOptions
from ingestd.runtime.queue import Busy
from ingestd.runtime.schedule import Schedule


class Submits:
    """Records each run's trigger; refuses the runs it is told to, as a busy source does."""

    def __init__(self, refuse: int = 0):
        self.triggers: list[str] = []
        self.refuse = refuse
        self.done = threading.Event()

    def __call__(self, name: str, trigger: str) -> None:
        if self.refuse:
            self.refuse -= 1
            raise Busy(Manifest(job_id="20261206T000000Z-0001", source=name, kind="s3", trigger="schedule",
                                created_at="2026-12-06T00:00:00Z", items_file="items.jsonl", status="running"))
        self.triggers.append(trigger)
        if len(self.triggers) == 2:
            self.done.set()


def fired(submits: Submits, first: str, runs: int) -> list[str]:
    schedule = Schedule(submit=submits)
    schedule.add("bucket", ScheduleOptions(every=3600), first=first)
    for _ in range(runs):  # what APScheduler's thread calls at each due time
        schedule._fire("bucket")
    return submits.triggers


def test_the_first_run_after_a_crash_is_recovery_then_the_schedule():
    assert fired(Submits(), "recovery", 3) == ["recovery", "schedule", "schedule"]


def test_a_daemon_started_cleanly_runs_on_its_schedule():
    assert fired(Submits(), "schedule", 2) == ["schedule", "schedule"]


def test_a_recovery_run_refused_as_busy_is_still_the_next_one():
    assert fired(Submits(refuse=1), "recovery", 3) == ["recovery", "schedule"]
