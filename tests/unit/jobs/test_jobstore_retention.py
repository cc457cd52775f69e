"""`daemon.job_retention`: old job records go, what status still needs stays."""

import time

import pytest

from ingestd.errors import NotFoundError
from ingestd.jobs.jobstore import JobStore


def job(jobs, source, status):
    m = jobs.create(source, "local", "watch")
    jobs.transition(m, "running")
    if status != "running":
        jobs.transition(m, status)
    (jobs.items_path(m)).write_text("{}\n")
    return m


def test_expired_records_go_live_jobs_and_last_successes_stay(tmp_path):
    jobs = JobStore(tmp_path)
    old_ok = job(jobs, "inbox", "succeeded")
    old_failed = job(jobs, "inbox", "failed")
    last_ok = job(jobs, "inbox", "succeeded")
    other_last_ok = job(jobs, "bucket", "succeeded")
    other_partial = job(jobs, "bucket", "partial")
    running = job(jobs, "legal", "running")

    assert jobs.expire(3600, now=time.time() + 7200) == 3

    gone = (old_ok, old_failed, other_partial)
    for m in gone:
        assert not jobs.path(m.job_id).exists() and not jobs.items_path(m).exists()
        with pytest.raises(NotFoundError):
            jobs.get(m.job_id)
    kept = [last_ok, other_last_ok, running]
    assert {m.job_id for m in jobs.list(limit=100)} == {m.job_id for m in kept}
    assert [m.job_id for m in jobs.list(source="inbox", status="succeeded")] == [last_ok.job_id]
    assert all(jobs.path(m.job_id).exists() for m in kept)

    reopened = JobStore(tmp_path)
    reopened.load_all()
    assert {m.job_id for m in reopened.list(limit=100)} == {m.job_id for m in kept}


def test_nothing_younger_than_the_retention_goes(tmp_path):
    jobs = JobStore(tmp_path)
    made = [job(jobs, "inbox", "succeeded") for _ in range(3)]
    assert jobs.expire(3600) == 0
    assert len(jobs.list(limit=100)) == len(made)
