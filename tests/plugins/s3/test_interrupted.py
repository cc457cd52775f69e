"""An interrupted `ingestd ingest` (issue 24 #7), as a real process against a slow download.

SIGINT or SIGTERM ends its job `failed`/`interrupted` and removes its workspace. A one-shot
killed outright leaves its job `running`; the next entry point that takes the source (a
one-shot or the daemon) closes that job, but never one a live process is still running.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.support.helpers import manifests, wait_for
from tests.support.procs import Daemon

from .kit import BUCKET, SOURCE

SIZE = 16 << 20
CHUNK = 64 << 10


class SlowBody:
    """WSGI middleware: the body of GET /docs/slow.bin trickles out (~1 MiB/s), as over a
    bad link, so a job is certainly mid-download when the test signals it."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if environ["REQUEST_METHOD"] != "GET" or not path.endswith(f"/{BUCKET}/slow.bin"):
            return self.app(environ, start_response)
        return self._trickle(b"".join(self.app(environ, start_response)))

    @staticmethod
    def _trickle(data: bytes):
        for start in range(0, len(data), CHUNK):
            time.sleep(0.05)  # the simulated link's pace, not a test's synchronisation
            yield data[start:start + CHUNK]


@pytest.fixture
def slow(moto):
    wsgi = moto.server._server
    inner = wsgi.app
    wsgi.app = SlowBody(inner)
    moto.put("slow.bin", os.urandom(SIZE))
    yield
    wsgi.app = inner


def start_ingest(s3env) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ingestd", "ingest", SOURCE, "--json", "--config", str(s3env.config)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def downloading(s3env) -> list:
    """The partial files in any job workspace (the download has begun)."""
    workspace = s3env.state / "workspace"
    return [p for p in workspace.rglob("*") if p.is_file() and p.stat().st_size > 0] if workspace.exists() else []


def only_job(s3env) -> dict:
    (job,) = manifests(s3env.state)
    return job


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_ends_the_job_interrupted_and_removes_its_workspace(s3env, slow, sig):
    proc = start_ingest(s3env)
    wait_for(lambda: downloading(s3env), timeout=60, message="the download to begin")
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    s3env.outputs += [out, err]
    assert proc.returncode == 128 + sig, err
    assert "Traceback" not in err
    job = only_job(s3env)
    assert job["status"] == "failed" and [e["code"] for e in job["errors"]] == ["interrupted"]
    assert json.loads(out)["job_id"] == job["job_id"]
    assert not (s3env.state / "workspace" / job["job_id"]).exists()


def test_a_killed_one_shot_is_recovered_by_the_next_one(s3env, slow):
    proc = start_ingest(s3env)
    wait_for(lambda: downloading(s3env), timeout=60, message="the download to begin")
    proc.kill()
    proc.communicate(timeout=30)
    dead = only_job(s3env)
    assert dead["status"] == "running" and (s3env.state / "workspace" / dead["job_id"]).exists()
    s3env.moto.server._server.app = s3env.moto.log  # fast again: the next job may finish
    code, manifest = s3env.ingest_cli()
    assert code == 0 and manifest["status"] == "succeeded"
    jobs = {m["job_id"]: m for m in manifests(s3env.state)}
    assert jobs[dead["job_id"]]["status"] == "failed"
    assert [e["code"] for e in jobs[dead["job_id"]]["errors"]] == ["interrupted"]
    assert not (s3env.state / "workspace" / dead["job_id"]).exists()


def test_a_live_one_shot_is_never_taken_for_a_dead_one(s3env, slow, tmp_path):
    """A second one-shot and a daemon starting meanwhile both leave the running job be."""
    proc = start_ingest(s3env)
    try:
        wait_for(lambda: downloading(s3env), timeout=60, message="the download to begin")
        live = only_job(s3env)["job_id"]
        second = s3env.cli("ingest", SOURCE, "--json")
        assert second.returncode == 1 and "is busy" in second.stderr and not second.stdout
        daemon = Daemon(daemon_config(s3env), s3env.state, tmp_path).start()
        try:
            assert job(s3env, live)["status"] == "running"
        finally:
            assert daemon.stop() == 0
            s3env.outputs.append(daemon.log_text())
        assert proc.poll() is None and job(s3env, live)["status"] == "running"
    finally:
        proc.send_signal(signal.SIGTERM)
        s3env.outputs += list(proc.communicate(timeout=60))
    assert proc.returncode == 128 + signal.SIGTERM
    assert job(s3env, live)["errors"][0]["code"] == "interrupted"


def daemon_config(s3env):
    """The test's config, with the HTTP API off (no port to share with other tests)."""
    path = s3env.root / "daemon.toml"
    path.write_text(s3env.config.read_text().replace("[credentials]", "[http]\nenabled = false\n[credentials]"))
    return path


def job(s3env, job_id: str) -> dict:
    return json.loads((s3env.state / "jobs" / f"{job_id}.json").read_text())


def test_the_daemon_runs_a_killed_one_shots_source_as_recovery(s3env, slow, tmp_path):
    """The manual promises it: a source whose job a crash interrupted runs next as
    `recovery` (scheduled sources too, not only drop folders), then on its schedule."""
    proc = start_ingest(s3env)
    wait_for(lambda: downloading(s3env), timeout=60, message="the download to begin")
    proc.kill()
    proc.communicate(timeout=30)
    dead = only_job(s3env)["job_id"]
    s3env.moto.server._server.app = s3env.moto.log  # fast again: the recovery job may finish
    daemon = Daemon(daemon_config(s3env), s3env.state, tmp_path).start()
    try:
        wait_for(lambda: [m for m in manifests(s3env.state) if m["job_id"] != dead and m["status"] == "succeeded"],
                 timeout=120, message="the daemon's first job of the source")
    finally:
        assert daemon.stop() == 0
        s3env.outputs.append(daemon.log_text())
    jobs = sorted(manifests(s3env.state), key=lambda m: m["job_id"])
    assert [(m["trigger"], m["status"]) for m in jobs] == [("cli", "failed"), ("recovery", "succeeded")]
    assert jobs[0]["errors"][0]["code"] == "interrupted"
