"""The job lifecycle: one owner for create → run → finish/fail, completion published once
to subscribers, and no phantom job when the state dir refuses a manifest."""

from __future__ import annotations

import shutil

import pytest

from ingestd.errors import Code
from ingestd.jobs.jobstore import JobStore
from ingestd.jobs.lifecycle import Busy, JobsUnwritable, Lifecycle
from ingestd.plugin.progress import Progress
from tests.support.helpers import wait_for


def test_a_job_holds_its_source_until_done_and_is_published_once(tmp_path):
    life = Lifecycle(JobStore(tmp_path))
    heard = []
    life.subscribe(lambda done: heard.append(("watcher", done.manifest.job_id, done.manifest.status, done.hint, done.ok)))
    m = life.create("inbox", "local", "watch")
    assert life.holder("inbox").job_id == m.job_id
    with pytest.raises(Busy) as busy:
        life.create("inbox", "local", "api")
    assert busy.value.manifest.job_id == m.job_id
    assert life.create("other", "local", "api").source == "other"  # only that source is held
    life.start(m, Progress())
    life.settle(m, "succeeded")
    assert life.holder("inbox") is not None, "settled is not done: the connector's finish still runs"
    life.done(m, ["/in/a"])
    life.done(m, ["/in/a"])
    assert heard == [("watcher", m.job_id, "succeeded", ["/in/a"], True)]
    assert life.holder("inbox") is None
    life.close()


def test_late_subscribers_hear_last_and_a_failing_one_stops_nobody(tmp_path):
    life = Lifecycle(JobStore(tmp_path))
    order = []
    life.subscribe(lambda done: order.append("hooks"), late=True)
    life.subscribe(lambda done: 1 / 0)
    life.subscribe(lambda done: order.append("metrics"))
    m = life.create("s", "local", "cli")
    life.fail(m, Code.INTERRUPTED, "stopped before it started")
    assert order == ["metrics", "hooks"]
    final = life.jobs.get(m.job_id)
    assert final.status == "failed" and final.errors[-1].code == Code.INTERRUPTED
    assert life.holder("s") is None


def test_an_unwritable_jobs_dir_makes_no_job_and_is_retried_with_backoff(tmp_path):
    jobs = JobStore(tmp_path)
    life = Lifecycle(jobs)
    shutil.rmtree(jobs.dir)
    jobs.dir.write_text("not a folder")  # every manifest write fails, even as root
    with pytest.raises(JobsUnwritable) as refused:
        life.create("inbox", "local", "watch")
    assert str(tmp_path) in str(refused.value)
    assert jobs.memory() == {"indexed": 0, "live": 0, "cached": 0, "unsaved": 0}, "a phantom job stayed in memory"
    assert life.holder("inbox") is None
    health = life.health()
    assert health["ok"] is False and health["state_dir"] == str(tmp_path)
    assert life.deferring()
    jobs.dir.unlink()
    jobs.dir.mkdir()
    with pytest.raises(JobsUnwritable):  # within the delay nothing is tried, even though it would work now
        life.create("inbox", "local", "watch")
    wait_for(lambda: life.health()["ok"], timeout=10, message="health to recover once jobs/ is writable")
    assert life.create("inbox", "local", "watch").status == "queued"


def test_a_refused_create_leaves_nothing_in_the_job_store(tmp_path):
    jobs = JobStore(tmp_path)
    shutil.rmtree(jobs.dir)
    jobs.dir.write_text("not a folder")
    with pytest.raises(OSError):
        jobs.create("inbox", "local", "watch")
    assert jobs.memory() == {"indexed": 0, "live": 0, "cached": 0, "unsaved": 0}
    assert jobs.list() == [] and jobs.active() == []
