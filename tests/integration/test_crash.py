"""SIGKILL in the middle of blob and manifest writes must leave a consistent store."""

import hashlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time

from ingestd.jobs.jobstore import JobStore
from tests.support.helpers import ROOT, wait_for

KILLS = 50


def test_sigkill_during_writes_leaves_every_manifest_and_blob_valid(env):
    env.write(after="delete")
    rng = random.Random(1234)
    child = ROOT / "tests" / "integration" / "crash_child.py"
    jobs_dir = env.state / "jobs"
    for _ in range(KILLS):
        before = _manifests(jobs_dir)
        proc = subprocess.Popen([sys.executable, str(child), str(env.config)], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert proc.stdout.readline().strip() == b"ready"
        # each child is killed inside its work, however slow the machine: once its first job exists
        wait_for(lambda: _manifests(jobs_dir) > before, timeout=60, message="the child's first job")
        time.sleep(rng.uniform(0.0, 0.25))  # the kill point, not a synchronisation
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

    finals = [p for p in jobs_dir.iterdir() if p.name.endswith(".json") and not p.name.startswith(".")]
    assert len(finals) >= KILLS  # every child got at least one job going
    for path in finals:
        json.loads(path.read_text())  # parses
    blobs = [p for p in (env.state / "blobs" / "sha256").rglob("*") if p.is_file()]
    assert blobs
    for path in blobs:
        assert hashlib.sha256(path.read_bytes()).hexdigest() == path.name
    # no record names bytes that are not there
    db = sqlite3.connect(env.state / "documents.sqlite")
    named = {row[0] for row in db.execute("SELECT sha256 FROM versions")}
    db.close()
    assert named and named <= {p.name for p in blobs}
    # a restart closes what the kills left open
    store = JobStore(env.state)
    store.load_all()
    store.recover()
    assert not store.active()
    assert not [p for p in jobs_dir.iterdir() if p.name.endswith(".tmp")]


def _manifests(jobs_dir) -> int:
    if not jobs_dir.exists():
        return 0
    return sum(1 for p in jobs_dir.iterdir() if p.name.endswith(".json")
               and not p.name.startswith("."))
