"""SIGKILL in the middle of blob and manifest writes must leave a consistent store."""

import hashlib
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

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


def test_an_original_killed_between_its_link_and_its_unlink_leaves_the_folder_with_the_next_job(env):
    """An original leaves by link into processed/, then unlink. Killed in between, the
    file has two names; the next job used to refuse the drop folder's as a hard link, for
    ever (ingested, but never leaving, and a `hardlink` failure to show for it)."""
    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("strace is not installed (.ci/run installs it): it is what kills the job at that instant")
    folder = env.inbox / "sub"
    folder.mkdir()
    contents = {f"f{i}.txt": f"file {i}\n".encode() * (i + 1) for i in range(3)}
    for name, data in contents.items():
        (folder / name).write_bytes(data)
    ingest = [sys.executable, "-m", "ingestd", "ingest", "inbox", "--json", "--config", str(env.config)]
    # SIGKILL on entering the first unlink in that folder: the first original's, right after its link
    killed = subprocess.run([strace, "-f", "-qq", "-o", os.devnull, "-P", str(folder), "-e", "trace=unlinkat",
                             "-e", "inject=unlinkat:signal=KILL", *ingest], cwd=ROOT, capture_output=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert killed.returncode in (-signal.SIGKILL, 128 + signal.SIGKILL), killed.stderr[-2000:]
    twice = [p for p in folder.iterdir() if p.stat().st_nlink == 2]
    assert len(twice) == 1, [(p.name, p.stat().st_nlink) for p in folder.iterdir()]  # the instant was hit

    again = subprocess.run(ingest, cwd=ROOT, capture_output=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
                           timeout=120)
    assert again.returncode == 0, again.stderr[-2000:]
    job = json.loads(again.stdout)
    assert job["counters"]["failed"] == 0 and job["counters"]["ingested"] == 0, job["counters"]
    assert list(folder.iterdir()) == []  # every original left the folder
    assert not (env.state / "failed").exists()
    processed = {p.name: p.read_bytes() for p in (env.state / "processed").rglob("*") if p.is_file()}
    assert processed == contents  # each once, each intact
    assert all(p.stat().st_nlink == 1 for p in (env.state / "processed").rglob("*") if p.is_file())
    db = sqlite3.connect(env.state / "documents.sqlite")
    versions = db.execute("SELECT origin_uri, sha256 FROM versions").fetchall()
    db.close()
    assert sorted(versions) == sorted(((folder / n).as_uri(), hashlib.sha256(d).hexdigest()) for n, d in contents.items())
    assert not (env.state / "sources" / "inbox" / "moving.json").exists()
