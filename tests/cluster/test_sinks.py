"""Sinks in cluster mode: two instances (processes) on one PostgreSQL, the HMAC webhook
sink pointed at a receiver on 127.0.0.1. Exactly one instance delivers a sink at a time;
every change arrives in cursor order; SIGKILL of the deliverer mid-stream hands the sink to
the other with no gap; a stale holder (SIGSTOPped past its lease) cannot move the cursor;
GET /sinks, the reset and `ingestd sinks` work from any instance. And, in-process on the
real database: the fence and the reset generation refuse a stale save."""

from __future__ import annotations

import os
import signal

import pytest

from ingestd.cluster import sinks as cluster_sinks
from ingestd.cluster.leases import LeaseLost
from ingestd.sinks.cursor import CursorMoved, NotHolder
from ingestd.store.feed import FIRST, format_cursor
from tests.conftest import make_secret
from tests.integration.test_api_support import Client, trigger, wait_job
from tests.support.helpers import wait_for
from tests.integration.test_sinks import receiver  # noqa: F401 - the receiver fixture, shared
from tests.support.receiver import verify

from .nodes import contents, put_all

DEADLINE = 120.0
pytestmark = pytest.mark.slow


def start(cluster, receiver, tmp_path, n: int = 40, **options) -> bytes:
    """Instances a and b with one webhook sink; `n` objects waiting in the bucket."""
    key = tmp_path / "hook.secret"
    secret = make_secret("hook").encode()
    key.write_bytes(secret)
    key.chmod(0o600)
    cluster.http = True
    cluster.sinks = [{"name": "hook", "kind": "webhook", "url": receiver.url, "secret_file": str(key),
                      "retry_max": "0.5s", **options}]
    put_all(cluster.moto, contents(n))
    cluster.start("a", "b")
    return secret


def client(cluster, name: str) -> Client:
    return Client(cluster.instances[name].base_url)


def sink(cluster, name: str) -> dict:
    return next(s for s in client(cluster, name).get("/sinks").json["sinks"] if s["name"] == "hook")


def head(cluster) -> int:
    return cluster.conn.execute("SELECT last FROM feed WHERE id = 1").fetchone()[0]


def row(cluster) -> tuple:
    return cluster.conn.execute("SELECT cursor, fence, holder FROM sinks WHERE name = 'hook'").fetchone()


def gapless(cursors: list[str], last: int) -> None:
    """Every cursor 1..last seen, in order: each batch starts at most one past the one
    before it (a replay starts earlier: duplicates, never a gap)."""
    numbers = [int(c) for c in cursors]
    assert numbers and numbers[0] == 1, numbers[:5]
    for before, now in zip(numbers, numbers[1:]):
        assert now <= before + 1, f"gap after {before}: next was {now}"
    assert max(numbers) == last and set(numbers) == set(range(1, last + 1))


def settled_and_delivered(cluster, receiver, n_changes: int):
    wait_for(lambda: head(cluster) == n_changes, DEADLINE, message=f"{n_changes} changes committed")
    wait_for(lambda: row(cluster)[0] == n_changes, DEADLINE, message="the sink's cursor at the head")


def test_one_instance_delivers_every_change_in_order_and_any_instance_shows_it(cluster, receiver, tmp_path):
    secret = start(cluster, receiver, tmp_path, batch_max=7)
    settled_and_delivered(cluster, receiver, 40)
    assert receiver.cursors() == [format_cursor(n) for n in range(1, 41)]  # once each, in order
    assert all(verify(secret, p["body"], p["headers"]["X-Ingestd-Signature"]) for p in receiver.posts)
    assert all(len(eval_batch(p)) <= 7 for p in receiver.posts)
    _cursor, fence, holder = row(cluster)
    assert holder in ("a", "b") and fence >= 1
    for name in ("a", "b"):  # the same view from the holder and from the other
        view = wait_for(lambda: (v := sink(cluster, name))["state"] == "idle" and v, DEADLINE)
        assert (view["cursor"], view["lag"], view["holder"]) == (format_cursor(40), 0, holder)
        assert view["last_error"] is None and view["deliveries"]["ok"] >= 6 and view["delivered_changes"] == 40
    # a failing receiver: the error is shown by both instances, nothing is skipped
    receiver.script = [503] * 3
    put_all(cluster.moto, {"late/one.txt": b"one more\n"})
    wait_job(client(cluster, "a"), trigger(client(cluster, "a"), "bucket", timeout=60).json["job_id"], timeout=120)
    settled_and_delivered(cluster, receiver, 41)
    assert receiver.cursors()[-1] == format_cursor(41)
    assert [p["status"] for p in receiver.posts[-4:]] == [503, 503, 503, 200]
    assert sink(cluster, "b")["deliveries"]["failed"] >= 3
    logs = "".join(d.log_text() for d in cluster.instances.values())
    assert secret.decode() not in logs


def eval_batch(post: dict) -> list:
    import json

    return json.loads(post["body"])["changes"]


def test_sigkill_of_the_deliverer_hands_the_sink_over_without_a_gap(cluster, receiver, tmp_path):
    """The deliverer is killed while a batch is on the wire (the receiver holds it): the
    other instance takes the sink after the lease and delivers from the saved cursor."""
    receiver.script = [200] * 3 + ["hang"]
    start(cluster, receiver, tmp_path, n=60, batch_max=5)
    wait_for(lambda: len(receiver.posts) == 4, DEADLINE, message="the fourth batch on the wire")
    cursor, fence, holder = row(cluster)
    assert cursor == int(receiver.cursors()[-1])  # saved after the third answer, before the fourth batch
    os.kill(cluster.instances[holder].proc.pid, signal.SIGKILL)
    cluster.instances[holder].proc.wait(30)
    receiver.release.set()
    other = "b" if holder == "a" else "a"
    settled_and_delivered(cluster, receiver, 60)
    cursor, new_fence, new_holder = row(cluster)
    assert new_holder == other and new_fence > fence
    gapless(receiver.cursors(), 60)
    # and it goes on: a job's changes reach the receiver through the new holder
    put_all(cluster.moto, {"late/one.txt": b"one more\n", "late/two.txt": b"two more\n"})
    wait_job(client(cluster, other), trigger(client(cluster, other), "bucket", timeout=60).json["job_id"], timeout=120)
    settled_and_delivered(cluster, receiver, 62)
    gapless(receiver.cursors(), 62)
    assert sink(cluster, other)["holder"] == other


def test_a_stale_holder_cannot_move_the_cursor(cluster, receiver, tmp_path):
    """SIGSTOP the deliverer with a batch held by the receiver, past its lease: the other
    instance takes over and delivers to the head; then the receiver answers the stale
    holder's batch 200 and it is SIGCONTed. Its cursor save is refused by the fence: the
    cursor stays at the head, and it stops delivering."""
    receiver.script = [200] * 2 + ["hold"]
    start(cluster, receiver, tmp_path, n=30, batch_max=5, timeout="120s")
    wait_for(lambda: len(receiver.posts) == 3, DEADLINE, message="the third batch held on the wire")
    cursor, fence, holder = row(cluster)
    assert cursor == int(eval_batch(receiver.posts[1])[-1]["cursor"])  # saved after the second answer
    stale = cluster.instances[holder]
    os.kill(stale.proc.pid, signal.SIGSTOP)
    try:
        other = "b" if holder == "a" else "a"
        wait_for(lambda: row(cluster)[2] == other, DEADLINE, message="the other instance taking the sink over")
        settled_and_delivered(cluster, receiver, 30)
        posts_before = len(receiver.posts)
        receiver.release.set()  # the stale holder's batch (cursors 11..15) is answered 200
    finally:
        os.kill(stale.proc.pid, signal.SIGCONT)
    wait_for(lambda: "sink taken over by another instance" in stale.log_text()
             or "sink let go" in stale.log_text(), DEADLINE, message="the stale holder giving the sink up")
    cursor, new_fence, new_holder = row(cluster)
    assert (cursor, new_holder) == (30, other) and new_fence > fence
    assert len(receiver.posts) == posts_before  # the stale holder sent nothing more
    gapless(receiver.cursors(), 30)
    assert sink(cluster, holder)["cursor"] == format_cursor(30)


def test_reset_from_any_instance_and_from_the_cli(cluster, receiver, tmp_path):
    start(cluster, receiver, tmp_path, n=12, batch_max=50)
    settled_and_delivered(cluster, receiver, 12)
    holder = row(cluster)[2]
    other = "b" if holder == "a" else "a"
    answer = client(cluster, other).post("/sinks/hook/reset", {"to": format_cursor(8)})
    assert answer.status == 200 and answer.json["cursor"] == format_cursor(8)
    wait_for(lambda: len(receiver.cursors()) == 16, DEADLINE, message="the replay after the reset on the non-holder")
    assert receiver.cursors()[12:] == [format_cursor(n) for n in range(9, 13)]
    client(cluster, other).post("/sinks/hook/reset", {"to": "9" * 16}).error(410, "cursor_expired")
    client(cluster, other).post("/sinks/nope/reset", {"to": FIRST}).error(404, "unknown_sink")
    reset = cluster.cli("sinks", "reset", "hook", "--to", format_cursor(11))
    assert reset.returncode == 0, reset.stderr
    wait_for(lambda: len(receiver.cursors()) == 17, DEADLINE, message="the replay after the CLI's reset")
    assert receiver.cursors()[-1] == format_cursor(12)
    listed = cluster.cli("sinks", "--json")
    assert listed.returncode == 0, listed.stderr
    assert f'"holder": "{holder}"' in listed.stdout and '"cursor": "0000000000000012"' in listed.stdout


# -- in-process, on the real database: the compare-and-set itself --------------------------


def test_the_fence_and_the_generation_refuse_a_stale_save(db):
    from ingestd.config import SinkConfig

    config = SinkConfig(name="hook", kind="webhook", enabled=True, sources=None, batch_max=10, retry_max=1.0,
                        options=None)
    db.execute("UPDATE feed SET last = 50")
    cluster_sinks.register(db, (config,))
    conn = db
    link = cluster_sinks._Link(lambda **_kw: conn)
    first, cursor, generation = cluster_sinks.claim(db, "hook", "a", 2)
    old = cluster_sinks.FencedCursors(link, first, cursor, generation)
    old.save("hook", format_cursor(20))
    assert cluster_sinks.claim(db, "hook", "b", 30) is None  # held: nobody else may claim it
    wait_for(lambda: db.execute("SELECT lease_expires_at <= now() FROM sinks").fetchone()[0], 10)
    second, cursor, generation = cluster_sinks.claim(db, "hook", "b", 30)
    assert second.fence == first.fence + 1 and cursor == 20
    with pytest.raises(NotHolder):  # the old holder, late: refused, the cursor does not move back
        old.save("hook", format_cursor(5))
    with pytest.raises(LeaseLost):
        cluster_sinks.heartbeat(db, first, 30)
    new = cluster_sinks.FencedCursors(link, second, cursor, generation)
    new.save("hook", format_cursor(30))
    cluster_sinks.reset(db, "hook", format_cursor(3))  # another instance's reset
    with pytest.raises(CursorMoved) as moved:  # a batch read before it cannot move the cursor
        new.save("hook", format_cursor(40))
    assert moved.value.cursor == format_cursor(3)
    assert db.execute("SELECT cursor FROM sinks").fetchone()[0] == 3
    new.save("hook", format_cursor(10))  # after taking the reset up
    assert db.execute("SELECT cursor FROM sinks").fetchone()[0] == 10
    assert [s.holder for s in cluster_sinks.statuses(db, (config,))] == ["b"]


def test_a_sink_with_sources_reads_only_theirs_and_passes_the_rest_once(db):
    """`sources = [...]` on the cluster's feed, as embedded: a page holds only those
    sources' changes, and a page that reached the head moves past the others'."""
    from ingestd.cluster import feed

    rows = [(n, "stored", f"d{n}", "one" if n % 3 else "two", f"s3://x/{n}", 1, "0" * 64, 1, "text/plain", "j")
            for n in range(1, 10)]
    db.cursor().executemany("INSERT INTO changes (cursor, type, doc_id, source, origin_uri, version, sha256, size, "
                            "mime, job_id, at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, now())", rows)
    db.execute("UPDATE feed SET last = 9")
    page = feed.read_changes(db, None, 2, ["two"])
    assert [c.cursor for c in page.changes] == [format_cursor(3), format_cursor(6)] and page.next_after == format_cursor(6)
    page = feed.read_changes(db, page.next_after, 2, ["two"])
    assert [c.cursor for c in page.changes] == [format_cursor(9)] and page.next_after == format_cursor(9)
    everything = feed.read_changes(db, None, 100)
    assert len(everything.changes) == 9 and everything.changes[0].source == "one"
    assert feed.read_changes(db, format_cursor(9), 5, ["one"]).changes == []
