"""`ingestd documents`, `cat` and `changes`, as processes, reading the catalogue directly."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading

import pytest

from tests.support.helpers import ROOT, run_cli

DEADLINE = 60.0


def ingest(env) -> dict:
    result = run_cli("ingest", "inbox", "--json", "--config", env.config)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def cli_json_lines(env, *args) -> list[dict]:
    result = run_cli(*args, "--json", "--config", env.config)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def tombstone(env, doc_id: str) -> None:
    """What an S3 or SharePoint deletion does to the catalogue (a drop folder never deletes)."""
    from ingestd.store.catalogue import Store

    store = Store(env.state)
    try:
        assert store.commit([], [(doc_id, "job-by-the-test")]).gone == ["deleted"]
    finally:
        store.close()


@pytest.fixture
def stocked(env):
    """Two documents, one of them edited (two versions), the other then deleted."""
    (env.inbox / "a.txt").write_bytes(b"alpha one\n")
    (env.inbox / "b.txt").write_bytes(b"bravo\n")
    ingest(env)
    (env.inbox / "a.txt").write_bytes(b"alpha two\n")
    ingest(env)
    docs = {d["origin_uri"].rsplit("/", 1)[1]: d for d in cli_json_lines(env, "documents")}
    tombstone(env, docs["b.txt"]["doc_id"])
    return env, docs


def test_documents_lists_live_documents_and_deleted_on_request(stocked):
    env, docs = stocked
    assert set(docs) == {"a.txt", "b.txt"}
    assert docs["a.txt"]["version"] == 2 and docs["a.txt"]["source"] == "inbox" and "versions" not in docs["a.txt"]
    live = cli_json_lines(env, "documents")
    assert [d["origin_uri"].rsplit("/", 1)[1] for d in live] == ["a.txt"]
    every = cli_json_lines(env, "documents", "--include-deleted", "--source", "inbox")
    assert len(every) == 2 and [d["doc_id"] for d in every] == sorted(d["doc_id"] for d in every)
    assert cli_json_lines(env, "documents", "--source", "elsewhere") == []
    text = run_cli("documents", "--config", env.config)
    assert text.returncode == 0 and docs["a.txt"]["doc_id"] in text.stdout
    assert "ingestd changes --after 0000000000000004" in text.stderr  # where a follower goes on from


def test_cat_writes_the_bytes_of_any_version(stocked):
    env, docs = stocked
    a, b = docs["a.txt"]["doc_id"], docs["b.txt"]["doc_id"]
    assert raw_cli("cat", a, "--config", env.config) == b"alpha two\n"
    assert raw_cli("cat", a, "--version", "1", "--config", env.config) == b"alpha one\n"
    gone = run_cli("cat", b, "--config", env.config)
    assert gone.returncode == 1 and "deleted" in gone.stderr and "Traceback" not in gone.stderr
    assert raw_cli("cat", b, "--version", "1", "--config", env.config) == b"bravo\n"
    missing = run_cli("cat", a, "--version", "9", "--config", env.config)
    assert missing.returncode == 1 and "no version 9" in missing.stderr
    assert run_cli("cat", "../../etc/passwd", "--config", env.config).returncode == 2


def test_changes_lists_the_feed_oldest_first(stocked):
    env, docs = stocked
    changes = cli_json_lines(env, "changes")
    assert [(c["type"], c["origin_uri"].rsplit("/", 1)[1], c["version"]) for c in changes] == [
        ("stored", "a.txt", 1), ("stored", "b.txt", 1), ("updated", "a.txt", 2), ("deleted", "b.txt", 1)]
    assert [c["cursor"] for c in changes] == [f"{n:016d}" for n in range(1, 5)]
    assert set(changes[0]) == {"cursor", "type", "doc_id", "source", "origin_uri", "version", "sha256", "size",
                               "mime", "job_id", "at"}
    assert cli_json_lines(env, "changes", "--after", changes[1]["cursor"]) == changes[2:]
    bad = run_cli("changes", "--after", "yesterday", "--config", env.config)
    assert bad.returncode == 2 and "malformed cursor" in bad.stderr


def test_changes_follow_without_a_daemon_sees_new_commits(env):
    (env.inbox / "first.txt").write_bytes(b"1")
    ingest(env)
    with Follower(env) as follower:
        assert follower.next()["origin_uri"].endswith("first.txt")
        (env.inbox / "second.txt").write_bytes(b"2")
        ingest(env)  # another process commits: the follower polls the database
        got = follower.next()
        assert got["origin_uri"].endswith("second.txt") and got["cursor"] == "0000000000000002"


def raw_cli(*args) -> bytes:
    result = subprocess.run([sys.executable, "-m", "ingestd", *map(str, args)], capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


class Follower:
    """`ingestd changes --follow --json` running, its lines read on a thread."""

    def __init__(self, env, *extra):
        self.proc = subprocess.Popen([sys.executable, "-m", "ingestd", "changes", "--follow", "--json", "--config",
                                      str(env.config), *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(json.loads(line))

    def next(self) -> dict:
        try:
            return self.lines.get(timeout=DEADLINE)
        except queue.Empty:
            raise AssertionError(f"no change within {DEADLINE}s; stderr: {self.proc.stderr.read1(4000)!r}") from None

    def __enter__(self) -> "Follower":
        return self

    def __exit__(self, *exc) -> None:
        self.proc.kill()
        self.proc.wait(10)


def test_changes_follow_waits_on_the_running_daemon(daemon_env):
    """With a daemon running, `--follow` long-polls its API (the daemon's log shows the
    held request) and prints each change as it commits."""
    d = daemon_env.daemon().start()
    with Follower(daemon_env) as follower:
        (daemon_env.inbox / "live.txt").write_bytes(b"live\n")
        got = follower.next()
        assert got["origin_uri"].endswith("live.txt") and got["type"] == "stored"
        (daemon_env.inbox / "later.txt").write_bytes(b"later\n")
        assert follower.next()["origin_uri"].endswith("later.txt")
    held = [e for e in d.log_events() if e.get("path") == "/changes" and e.get("held_ms")]
    assert held, "the follower did not wait on the daemon's API"
    assert d.stop() == 0
