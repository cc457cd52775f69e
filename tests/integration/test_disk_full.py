"""The state directory on a small filesystem: a file that does not fit fails typed,
stays in the drop folder, and is ingested by itself once space returns."""

import hashlib
import os
import subprocess

import pytest

from tests.support.helpers import wait_for


@pytest.fixture
def small_state(daemon_env):
    mnt = daemon_env.state
    mnt.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mnt)], capture_output=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.decode().strip()}")
    yield mnt
    for d in daemon_env.daemons:
        d.close()
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_disk_full_is_typed_keeps_the_file_and_recovers(daemon_env, small_state):
    d = daemon_env.daemon().start()
    big = daemon_env.inbox / "big.bin"
    data = os.urandom(8 << 20)
    big.write_bytes(data)
    wait_for(lambda: any(m["status"] == "partial" for m in d.manifests()), timeout=30, message="a partial job")
    failed = next(m for m in d.manifests() if m["status"] == "partial")
    assert failed["errors"][0]["code"] == "disk_full"
    assert big.exists()  # not lost, not moved to failed/
    # the daemon keeps serving and keeps ingesting what fits
    assert d.get("/healthz")[0] == 200
    assert d.get(f"/ingest/{failed['job_id']}")[1]["status"] == "partial"
    (daemon_env.inbox / "small.txt").write_bytes(b"fits")
    wait_for(lambda: not (daemon_env.inbox / "small.txt").exists(), timeout=30, message="the small file")
    # space returns: the big file is retried by itself
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_state)], check=True)
    wait_for(lambda: not big.exists(), timeout=60, message="the retry after space returned")
    docs = d.documents()
    assert docs[big.as_uri()] == [(hashlib.sha256(data).hexdigest(), len(data), "application/octet-stream")]
    assert not list((small_state / "blobs" / "tmp").iterdir())
    assert d.stop() == 0
