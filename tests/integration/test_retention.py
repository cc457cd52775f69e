"""Retention as the running daemon applies it: at start, before anything else is served."""

from ingestd.jobs.manifest import Manifest
from tests.support.helpers import wait_for


def old_job(state, job_id, status="succeeded", source="inbox"):
    m = Manifest(job_id=job_id, source=source, kind="local", trigger="watch", status=status,
                 created_at="2020-01-01T00:00:00.000Z", started_at="2020-01-01T00:00:00.000Z",
                 finished_at="2020-01-01T00:00:01.000Z", items_file=f"{job_id}.items.jsonl")
    jobs = state / "jobs"
    jobs.mkdir(parents=True, exist_ok=True)
    (jobs / f"{job_id}.json").write_text(m.model_dump_json(by_alias=True))
    (jobs / m.items_file).write_text("")
    return jobs / f"{job_id}.json"


def test_the_daemon_expires_old_job_records_at_start(daemon_env):
    daemon_env.write(daemon={"job_retention": "30d"})
    expired = old_job(daemon_env.state, "20200101T000000000000Z-aaaaaaaa", status="failed")
    last_ok = old_job(daemon_env.state, "20200102T000000000000Z-bbbbbbbb")
    d = daemon_env.daemon().start()
    wait_for(lambda: not expired.exists(), timeout=10, message="the expired manifest to go")
    assert not expired.with_name("20200101T000000000000Z-aaaaaaaa.items.jsonl").exists()
    assert last_ok.exists(), "the source's last success is kept"
    status, _ = d.get("/ingest/20200101T000000000000Z-aaaaaaaa")
    assert status == 404


def test_without_retention_nothing_is_expired(daemon_env):
    kept = old_job(daemon_env.state, "20200101T000000000000Z-cccccccc", status="failed")
    d = daemon_env.daemon().start()
    status, _ = d.get("/ingest/20200101T000000000000Z-cccccccc")
    assert status == 200 and kept.exists()
