"""What outlives its retention is swept; what was never ingested never is."""

import os
import time

from ingestd.runtime.housekeeping import sweep

DAY = 86400.0


def job_folder(root, *parts, age_days):
    path = root.joinpath(*parts)
    path.mkdir(parents=True)
    (path / "a.pdf").write_bytes(b"%PDF")
    then = time.time() - age_days * DAY
    os.utime(path, (then, then))
    return path


def test_old_workspaces_and_processed_originals_go_failed_ones_stay(tmp_path):
    old_ws = job_folder(tmp_path, "workspace", "job-old", age_days=8)
    new_ws = job_folder(tmp_path, "workspace", "job-new", age_days=1)
    old_done = job_folder(tmp_path, "processed", "inbox", "job-old", age_days=31)
    new_done = job_folder(tmp_path, "processed", "inbox", "job-new", age_days=29)
    old_failed = job_folder(tmp_path, "failed", "inbox", "job-old", age_days=400)

    removed = sweep(tmp_path, workspace_retention=7 * DAY, originals_retention=30 * DAY)

    assert removed == {"workspace": 1, "processed": 1}
    assert not old_ws.exists() and not old_done.exists()
    assert new_ws.is_dir() and new_done.is_dir() and (old_failed / "a.pdf").exists()


def test_originals_are_kept_for_ever_by_default(tmp_path):
    old_done = job_folder(tmp_path, "processed", "inbox", "job-old", age_days=3650)
    assert sweep(tmp_path, workspace_retention=7 * DAY, originals_retention=0) == {"workspace": 0}
    assert (old_done / "a.pdf").exists()


def test_a_state_dir_without_those_areas_is_fine(tmp_path):
    assert sweep(tmp_path / "nothing-here", 1.0, 1.0) == {"workspace": 0, "processed": 0}


def test_the_schedule_runs_tasks_apart_from_its_sources():
    import threading

    from ingestd.plugin.options import ScheduleOptions
    from ingestd.runtime.schedule import Schedule

    ran = threading.Event()
    calls = []

    def task():
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("a failing run must not stop the next one")
        ran.set()

    schedule = Schedule(submit=lambda name, trigger: None)
    schedule.start()
    try:
        schedule.add("bucket", ScheduleOptions(every=3600))
        schedule.every("housekeeping", 0.05, task)
        assert ran.wait(10), "the task did not run twice"
        assert schedule.names() == ["bucket"]
    finally:
        schedule.stop()
