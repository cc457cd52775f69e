"""The state directory on a small filesystem: a file that does not fit fails typed,
stays in the drop folder, and is ingested by itself once space returns."""

import hashlib
import json
import os
import subprocess

import pytest

from tests.support.helpers import wait_for


@pytest.fixture
def small_state(daemon_env):
    mnt = daemon_env.state
    mnt.mkdir()
    daemon_env.write(daemon={"min_free_bytes": 1 << 20})  # the default reserve is larger than this disk
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


def test_a_sparse_file_that_cannot_fit_is_refused_unwritten_then_given_up(tmp_path):
    """`truncate -s 2G`: every attempt is refused before a byte is written (the state disk
    keeps its room), and after DISK_FULL_ATTEMPTS the file goes to failed/ with the reason."""
    from ingestd.jobs.pipeline import DISK_FULL_ATTEMPTS
    from tests.support.helpers import write_config
    from tests.support.procs import Daemon

    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    d = None
    try:
        (disk / "inbox").mkdir()  # beside the state dir on the same small disk: the original moves by link
        config = write_config(tmp_path / "c.toml", daemon={"state_dir": "disk/state", "min_free_bytes": 1 << 20},
                              http={"listen": "127.0.0.1:0"},
                              sources=[{"name": "inbox", "kind": "local", "path": "disk/inbox", "settle_seconds": 0.2}])
        d = Daemon(config, disk / "state", tmp_path).start()
        sparse = disk / "inbox" / "sparse.bin"
        with open(sparse, "wb") as fh:
            fh.truncate(2 << 30)
        low_water = []

        def given_up():
            st = os.statvfs(disk)
            low_water.append(st.f_bavail * st.f_frsize)
            # the error sidecar is written beside the moved file, after the move: wait for it too
            sidecars = list((disk / "state" / "failed" / "inbox").glob("*/sparse.bin.error.json"))
            return not sparse.exists() and bool(sidecars) and d.idle()
        wait_for(given_up, timeout=120, message="the sparse file to be given up")
        assert min(low_water) > 4 << 20, "the state disk filled up: the file was written before being refused"
        jobs = d.manifests()
        codes = [m["errors"][0]["code"] for m in jobs if m["errors"]]
        assert codes == ["disk_full"] * (DISK_FULL_ATTEMPTS - 1) + ["too_large"]
        last = jobs[-1]
        assert "gave up after" in last["errors"][0]["message"]
        failed = disk / "state" / "failed" / "inbox" / last["job_id"]
        assert (failed / "sparse.bin").stat().st_size == 2 << 30
        assert json.loads((failed / "sparse.bin.error.json").read_text())["code"] == "too_large"
        assert d.stop() == 0
    finally:
        if d is not None:
            d.close()
        subprocess.run(["umount", "-l", str(disk)], check=False)
