"""The daemon as a real process: drop files, signal it, kill it, restart it."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import threading
import time
from pathlib import Path

import pytest

from ingestd._lib.paths import file_uri
from tests.support.helpers import wait_for

HOSTILE = ["new\nline.txt", os.fsdecode(b"bytes-\xff\xfe.txt"), "\u202etxt.exe", "-rf", "ｆｕｌｌ.txt", "a b  c.txt"]


def content(i: int) -> bytes:
    return f"document {i}\n".encode() * (1 + i % 7) + os.urandom(16)


def drained(d, inbox: Path):
    """Nothing left to take: no regular file in the drop folder and no open job."""
    leftovers = [p for p in inbox.rglob("*") if (p.is_file() or p.is_symlink()) and not p.name.startswith(".")]
    return not leftovers and d.idle()


def test_mixed_burst_is_ingested_exactly_once(daemon_env):
    d = daemon_env.daemon().start()
    inbox = daemon_env.inbox
    expected: dict[Path, bytes] = {}
    lock = threading.Lock()

    def in_place(i):
        path = inbox / f"dir{i % 5}" / f"sub{i % 3}" / f"in-place-{i}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        data = content(i)
        path.write_bytes(data)
        with lock:
            expected[path] = data

    def renamed(i):
        path = inbox / f"renamed-{i}.bin"
        data = content(i) + b"\x00binary"
        tmp = inbox / f".{path.name}.tmp"
        tmp.write_bytes(data)
        os.rename(tmp, path)
        with lock:
            expected[path] = data

    def slow():
        path = inbox / "slow-writer.csv"
        with open(path, "wb") as fh:
            for n in range(3):
                fh.write(b"a,b,c\n%d,2,3\n" % n)
                fh.flush()
                time.sleep(0.6)  # the slow writer under test: pauses longer than settle_seconds
        with lock:
            expected[path] = b"".join(b"a,b,c\n%d,2,3\n" % n for n in range(3))

    writers = [threading.Thread(target=slow)]
    writers += [threading.Thread(target=lambda k=k: [in_place(i) for i in range(k, 300, 4)]) for k in range(4)]
    writers += [threading.Thread(target=lambda k=k: [renamed(i) for i in range(300 + k, 480, 2)]) for k in range(2)]
    for t in writers:
        t.start()
    for i, name in enumerate(HOSTILE):
        path = inbox / "hostile" / name
        path.parent.mkdir(exist_ok=True)
        expected[path] = content(1000 + i)
        path.write_bytes(expected[path])
    for i in range(5):
        (inbox / f"empty-{i}.dat").write_bytes(b"")
    (inbox / "passwd").symlink_to("/etc/passwd")
    for t in writers:
        t.join()
    assert len(expected) == 300 + 180 + 1 + len(HOSTILE)

    wait_for(lambda: drained(d, inbox), timeout=60, message="the burst to drain")
    docs = d.documents()
    assert len(docs) == len(expected)
    for path, data in expected.items():
        versions = docs[file_uri(path)]
        assert len(versions) == 1, path  # stored exactly once
        sha, size, mime = versions[0]
        assert sha == hashlib.sha256(data).hexdigest() and size == len(data)
    assert docs[(inbox / "slow-writer.csv").as_uri()][0][2] == "text/csv"
    assert docs[(inbox / "renamed-301.bin").as_uri()][0][2] == "application/octet-stream"
    processed = [p for p in (daemon_env.state / "processed" / "inbox").rglob("*") if p.is_file()]
    assert len(processed) == len(expected)
    # the refusals are typed and kept beside their files
    errors = [e for m in d.manifests() for e in m["errors"]]
    assert sorted(e["code"] for e in errors) == ["empty"] * 5 + ["symlink"]
    assert os.path.exists("/etc/passwd")
    # a burst is batched, not one job per file
    assert len(d.manifests()) < len(expected) / 4
    assert all(m["trigger"] == "watch" for m in d.manifests())
    assert d.stop() == 0


def test_files_present_at_start_are_caught_up(daemon_env):
    for i in range(20):
        (daemon_env.inbox / f"early-{i}.txt").write_bytes(content(i))
    d = daemon_env.daemon().start()
    wait_for(lambda: drained(d, daemon_env.inbox), timeout=30, message="catch-up")
    assert len(d.documents()) == 20
    assert d.stop() == 0


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sigkill_during_a_burst_loses_nothing_and_stores_nothing_twice(daemon_env, seed):
    rng = random.Random(seed)
    daemon_env.write(settle_seconds=0.1, batch_max=40)
    inbox = daemon_env.inbox
    expected = {}
    for i in range(300):
        path = inbox / f"d{i % 7}" / f"file-{i}.txt"
        path.parent.mkdir(exist_ok=True)
        expected[path] = content(i)
        path.write_bytes(expected[path])
    d = daemon_env.daemon()
    for kill in range(3):
        d.start()
        target = rng.randint(1, 250)
        # kill once `target` files have been moved out (or the folder is drained)
        wait_for(lambda: sum(1 for _ in (daemon_env.state / "processed").rglob("*.txt")) >= min(target, 300)
                 or drained(d, inbox), timeout=60, message="progress before the kill")
        d.kill()
    d.start()
    wait_for(lambda: drained(d, inbox), timeout=60, message="drain after restarts")
    docs = d.documents()
    assert set(docs) == {p.as_uri() for p in expected}
    for path, data in expected.items():
        assert [v[0] for v in docs[path.as_uri()]] == [hashlib.sha256(data).hexdigest()]
    manifests = d.manifests()  # every one parses
    assert all(m["status"] in ("succeeded", "partial", "failed") for m in manifests)
    interrupted = [m for m in manifests if any(e["code"] == "interrupted" for e in m["errors"])]
    assert all(m["status"] == "failed" for m in interrupted)
    assert d.stop() == 0
    leftovers = list((daemon_env.state / "blobs" / "tmp").iterdir())
    assert leftovers == []


def test_sigterm_exits_0_and_sd_notify_lifecycle(daemon_env):
    d = daemon_env.daemon(env={"WATCHDOG_USEC": "200000"}).start()
    ready = d.notify.messages[-1]
    assert ready["READY"] == "1" and "watching 1 folder" in ready["STATUS"]
    d.notify.wait("WATCHDOG", "1", timeout=5)
    (daemon_env.inbox / "a.txt").write_bytes(b"a")
    wait_for(lambda: drained(d, daemon_env.inbox), timeout=20)
    mark = len(d.notify.messages)
    d.signal(signal.SIGHUP)
    reloading = d.notify.wait("RELOADING", "1", after=mark)
    assert int(reloading["MONOTONIC_USEC"]) > 0
    d.notify.wait("READY", "1", after=mark)
    started = time.monotonic()
    assert d.stop(timeout=15) == 0
    assert time.monotonic() - started < 10
    d.notify.wait("STOPPING", "1")
    assert not (daemon_env.state / "daemon.json").exists()


def test_sighup_adds_a_drop_folder_and_rejects_a_bad_config(daemon_env):
    d = daemon_env.daemon().start()
    second = daemon_env.root / "second"
    second.mkdir()
    daemon_env.write(extra_sources=[{"name": "second", "kind": "local", "path": "second", "settle_seconds": 0.2}])
    mark = len(d.notify.messages)
    d.signal(signal.SIGHUP)
    d.notify.wait("READY", "1", after=mark)
    (second / "new.txt").write_bytes(b"arrived after reload")
    wait_for(lambda: any(m["source"] == "second" and m["status"] == "succeeded" for m in d.manifests()), timeout=20)

    good = daemon_env.config.read_text()
    daemon_env.config.write_text(good + "\n[daemon]\nworkers = 0\n")  # invalid: rejected, old config runs on
    mark = len(d.notify.messages)
    d.signal(signal.SIGHUP)
    d.notify.wait("READY", "1", after=mark)
    wait_for(lambda: "reload rejected" in d.log_text(), timeout=10)
    (daemon_env.inbox / "still-watched.txt").write_bytes(b"x")
    wait_for(lambda: drained(d, daemon_env.inbox), timeout=20, message="old config keeps running")
    assert d.proc.poll() is None
    assert d.stop() == 0


def test_bad_config_exits_78_with_one_line(daemon_env):
    daemon_env.config.write_text('[daemon]\nstate_dir = "state"\nworkers = -1\n')
    d = daemon_env.daemon().start(ready=False)
    assert d.proc.wait(timeout=30) == 78
    assert "daemon.workers" in d.log_text()


def test_http_status_of_a_watch_job(daemon_env):
    d = daemon_env.daemon().start()
    (daemon_env.inbox / "a.txt").write_bytes(b"hello")
    wait_for(lambda: drained(d, daemon_env.inbox), timeout=20)
    job_id = d.manifests()[0]["job_id"]
    status, body = d.get(f"/ingest/{job_id}")
    assert status == 200 and body["status"] == "succeeded" and body["counters"]["ingested"] == 1
    assert d.get("/healthz")[0] == 200
    assert d.stop() == 0


def test_every_log_line_is_json_and_job_lines_carry_ids(daemon_env):
    d = daemon_env.daemon().start()
    (daemon_env.inbox / "a.txt").write_bytes(b"hello")
    wait_for(lambda: drained(d, daemon_env.inbox), timeout=20)
    assert d.stop() == 0
    events = d.log_events()
    assert events and all(e["event"] != "<not json>" for e in events)
    job_lines = [e for e in events if e["event"] in ("job started", "document stored", "job finished")]
    assert len(job_lines) == 3 and all(e.get("job_id") and e.get("source") == "inbox" for e in job_lines)


def test_a_broken_source_does_not_stop_the_others(daemon_env):
    daemon_env.write(extra_sources=[{"name": "gone", "kind": "local", "path": "does-not-exist"},
                                    {"name": "inside", "kind": "local", "path": "state/inner"}])
    (daemon_env.state / "inner").mkdir(parents=True)
    d = daemon_env.daemon().start()
    status, health = d.get("/healthz")
    assert status == 200
    unavailable = health["checks"]["sources"]["unavailable"]
    assert "is not a directory" in unavailable["gone"]
    assert "must never write inside a watched folder" in unavailable["inside"]
    (daemon_env.inbox / "a.txt").write_bytes(b"a")
    wait_for(lambda: drained(d, daemon_env.inbox), timeout=20)
    assert d.stop() == 0
