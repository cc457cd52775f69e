"""An unwritable `jobs/` folder: new jobs are retried with a growing delay (not ~100 times a
second), none is made in memory only, `/healthz` names the state dir, and once the folder
takes writes again the waiting file is ingested by one job."""

import json
import subprocess
import time
import urllib.request

import pytest

from tests.support.helpers import wait_for


@pytest.fixture
def read_only_jobs(daemon_env):
    jobs = daemon_env.state / "jobs"
    jobs.mkdir(parents=True)

    def lock():
        for args in (["--bind", str(jobs), str(jobs)], ["-o", "remount,bind,ro", str(jobs)]):
            done = subprocess.run(["mount", *args], capture_output=True)
            if done.returncode != 0:
                pytest.skip(f"cannot bind-mount read-only here: {done.stderr.decode().strip()}")

    def unlock():
        subprocess.run(["umount", str(jobs)], check=False, capture_output=True)

    yield lock, unlock
    unlock()


def post_ingest(d, source: str):
    req = urllib.request.Request(d.base_url + "/ingest", data=json.dumps({"source": source}).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_unwritable_jobs_dir_backs_off_reports_and_recovers(daemon_env, read_only_jobs):
    lock, unlock = read_only_jobs
    d = daemon_env.daemon().start()
    lock()
    dropped = daemon_env.inbox / "waiting.txt"
    dropped.write_bytes(b"waits for the state dir")

    def unhealthy():
        status, body = d.get("/healthz")
        return status == 503 and body["failing"] == ["state_dir"] and body
    body = wait_for(unhealthy, timeout=20, message="/healthz to name the state dir")
    assert body["checks"]["state_dir"]["state_dir"] == str(daemon_env.state)
    assert post_ingest(d, "inbox")[1]["error"] == "state_unwritable"

    started = time.monotonic()
    wait_for(lambda: time.monotonic() - started > 4, timeout=10, message="a few seconds of refusals")
    events = [e.get("event") for e in d.log_events()]
    attempts = events.count("state dir refuses job records; new jobs wait")
    assert 1 <= attempts <= 6, f"{attempts} attempts in a few seconds: not backing off"
    assert "could not queue a watch job" not in events
    assert dropped.exists()

    unlock()
    wait_for(lambda: not dropped.exists(), timeout=90, message="the waiting file, once jobs/ is writable")
    wait_for(lambda: d.get("/healthz")[0] == 200, timeout=30, message="/healthz to recover")
    assert d.stop() == 0
    jobs = d.manifests()
    assert [(m["status"], m["counters"]["ingested"]) for m in jobs] == [("succeeded", 1)], \
        "only the job that ran may exist: no phantom jobs written out as interrupted"
