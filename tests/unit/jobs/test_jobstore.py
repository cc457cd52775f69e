import json

import pytest

from ingestd._lib.paths import is_valid_id
from ingestd.errors import Code, NotFoundError, StoreError, UsageError
from ingestd.jobs.jobstore import JobStore
from ingestd.jobs.manifest import JobError, MAX_ERRORS


def test_ids_are_valid_unique_and_sorted(tmp_path):
    jobs = JobStore(tmp_path)
    ids = [jobs.create("s", "local", "cli").job_id for _ in range(200)]
    assert len(set(ids)) == 200 and ids == sorted(ids)
    assert all(is_valid_id(i) for i in ids)


def test_transitions_are_enforced_and_timestamped(tmp_path):
    jobs = JobStore(tmp_path)
    m = jobs.create("s", "local", "cli")
    with pytest.raises(StoreError):
        jobs.transition(m, "succeeded")
    jobs.transition(m, "running")
    assert m.started_at
    jobs.transition(m, "partial")
    assert m.finished_at and m.duration_s() >= 0
    for status in ("running", "succeeded", "failed", "queued"):
        with pytest.raises(StoreError):
            jobs.transition(m, status)
    on_disk = json.loads((tmp_path / "jobs" / f"{m.job_id}.json").read_text())
    assert on_disk["schema"] == 1 and on_disk["status"] == "partial"
    assert set(on_disk["counters"]) == {"discovered", "ingested", "unchanged", "skipped", "failed", "deleted", "filtered",
                                      "bytes"}


def test_errors_are_capped_with_a_count(tmp_path):
    m = JobStore(tmp_path).create("s", "local", "cli")
    for i in range(MAX_ERRORS + 7):
        m.add_error(JobError(code=Code.IO, message=f"e{i}"))
    assert len(m.errors) == MAX_ERRORS and m.errors_dropped == 7


def test_recover_closes_interrupted_jobs(tmp_path):
    jobs = JobStore(tmp_path)
    queued = jobs.create("a", "local", "watch")
    running = jobs.transition(jobs.create("b", "local", "watch"), "running")
    done = jobs.transition(jobs.transition(jobs.create("c", "local", "cli"), "running"), "succeeded")
    fresh = JobStore(tmp_path)
    fresh.load_all()
    recovered = {m.job_id for m in fresh.recover()}
    assert recovered == {queued.job_id, running.job_id}
    for job_id in recovered:
        m = JobStore(tmp_path).get(job_id)
        assert m.status == "failed" and m.errors[-1].code == Code.INTERRUPTED
    assert fresh.get(done.job_id).status == "succeeded"


def test_listing_filters_and_pages(tmp_path):
    jobs = JobStore(tmp_path)
    made = [jobs.create("a" if i % 2 else "b", "local", "cli") for i in range(10)]
    newest = jobs.list(limit=3)
    assert [m.job_id for m in newest] == [m.job_id for m in made[::-1][:3]]
    page2 = jobs.list(limit=3, before=newest[-1].job_id)
    assert [m.job_id for m in page2] == [m.job_id for m in made[::-1][3:6]]
    assert all(m.source == "a" for m in jobs.list(source="a"))
    assert jobs.list(status="running") == []


def test_malformed_ids_never_touch_the_filesystem(tmp_path):
    jobs = JobStore(tmp_path)
    for bad in ("../../etc/passwd", "..%2F..%2Fetc%2Fpasswd", "a\x00bcdefgh", "x" * 300, ""):
        with pytest.raises(UsageError):
            jobs.get(bad)
    with pytest.raises(NotFoundError):
        jobs.get("abcdefgh12345678")


def test_unreadable_manifest_is_reported_not_fatal(tmp_path):
    jobs = JobStore(tmp_path)
    good = jobs.create("a", "local", "cli")
    (tmp_path / "jobs" / "garbage0001.json").write_text("{not json")
    loaded = JobStore(tmp_path)
    assert loaded.load_all() == 1
    assert [m.job_id for m in loaded.list()] == [good.job_id]
    assert loaded.unreadable == ["garbage0001.json"]


def test_a_manifest_dumps_as_its_file_and_the_api_say():
    """Issue 25 #12: `model_dump()` (what a hook's plugin calls) said `schema_version`."""
    from ingestd.jobs.manifest import Manifest

    m = Manifest(job_id="20260101T000000000000Z-abcdef01", source="s", kind="local", trigger="cli",
                 created_at="2026-01-01T00:00:00.000Z", items_file="x")
    assert m.model_dump()["schema"] == 1 and "schema_version" not in m.model_dump()
    assert m.model_dump() == m.to_json() and '"schema":1' in m.model_dump_json()
