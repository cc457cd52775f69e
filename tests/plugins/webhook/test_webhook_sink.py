"""The webhook sink against a real receiver: order, batches, signature, retries, outages,
filters, replays, and a sink plugin's mistakes kept to that sink."""

from __future__ import annotations

import json
import threading

import pytest

from ingestd.errors import NotFoundError, UsageError
from ingestd.plugin import DeliveryError, Sink
from ingestd.sinks import cursor as cursors
from ingestd.store.feed import FIRST, CursorExpired, format_cursor
from tests.support.helpers import wait_for
from tests.support.receiver import verify

DEADLINE = 30.0


def expect(rig, cursors_, message="the receiver to have every change"):
    want = [format_cursor(c) for c in cursors_]
    wait_for(lambda: rig.receiver.cursors() == want, DEADLINE, message=message)


def test_every_change_in_order_in_signed_batches_and_the_cursor_saved(rig):
    path, secret = rig.secret_file()
    first = rig.commit(7)
    rig.start(rig.sink(batch_max=3, secret_file=str(path)))
    expect(rig, first)
    posts = rig.receiver.posts
    assert [len(json.loads(p["body"])["changes"]) for p in posts] == [3, 3, 1]
    for post in posts:
        changes = json.loads(post["body"])["changes"]
        assert verify(secret, post["body"], post["headers"]["X-Ingestd-Signature"])
        assert post["headers"]["X-Ingestd-Delivery"] == f"{changes[0]['cursor']}..{changes[-1]['cursor']}"
        assert post["headers"]["X-Ingestd-Sink"] == "hook" and post["path"] == "/hook"
        assert set(changes[0]) == {"cursor", "type", "doc_id", "source", "origin_uri", "version", "sha256", "size",
                                   "mime", "job_id", "at"}
    assert not verify(b"another key of sixteen", posts[0]["body"], posts[0]["headers"]["X-Ingestd-Signature"])
    later = rig.commit(2)  # woken by the commit
    expect(rig, first + later)
    wait_for(lambda: cursors.load(rig.state, "hook") == format_cursor(later[-1]), DEADLINE)
    status = rig.status()
    assert status.lag == 0 and status.deliveries == {"ok": 4, "failed": 0} and status.delivered_changes == 9
    assert status.last_error is None and status.state == "idle" and status.last_delivery_at is not None


def test_a_restarted_sink_goes_on_from_its_saved_cursor(rig):
    done = rig.commit(3)
    rig.start()
    expect(rig, done)
    rig.fleet.stop()
    more = rig.commit(2)
    rig.start()
    expect(rig, done + more, "only the new changes after the restart")


def test_500s_and_timeouts_are_retried_with_the_same_batch_never_dropped(rig):
    rig.receiver.script = [500, 503, "hang", 404]
    done = rig.commit(4)
    rig.start(rig.sink(timeout=0.5))
    expect(rig, done)
    posts = rig.receiver.posts
    assert len(posts) == 5 and len({p["headers"]["X-Ingestd-Delivery"] for p in posts}) == 1  # the same batch
    assert {p["body"] for p in posts} == {posts[0]["body"]}
    # the receiver holds the batch before the runner has read its answer: wait for the count
    wait_for(lambda: rig.status().deliveries["ok"] == 1, DEADLINE, message="the accepted batch counted")
    status = rig.status()
    assert status.deliveries == {"ok": 1, "failed": 4} and status.failing_since is None
    assert status.last_error.code == "http_status" and status.last_error.message == "the receiver answered HTTP 404"


def test_a_timeout_is_typed(rig):
    rig.receiver.script = ["hang"] * 50
    rig.commit(1)
    rig.start(rig.sink(timeout=0.3))
    wait_for(lambda: rig.status().last_error is not None, DEADLINE)
    status = rig.status()
    assert status.last_error.code == "timeout" and status.cursor == FIRST and status.lag == 1
    assert status.failing_since is not None


def test_a_receiver_down_for_a_while_then_back_loses_nothing(rig):
    rig.receiver.down()
    done = rig.commit(3)
    rig.start()
    wait_for(lambda: rig.status().deliveries["failed"] >= 3, DEADLINE, message="refused attempts")
    assert rig.status().last_error.code == "connection" and rig.status().state == "retrying"
    done += rig.commit(2)
    ingest_went_on = rig.commit(1)  # a sink that is down never holds a commit
    rig.receiver.up()
    expect(rig, done + ingest_went_on)


def test_sources_filter_the_changes_and_the_cursor_passes_the_others(rig):
    a1 = rig.commit(2, "a")
    rig.commit(3, "b")
    a2 = rig.commit(1, "a")
    rig.start(rig.sink(sources=["a"]))
    expect(rig, a1 + a2)
    rig.commit(2, "b")
    wait_for(lambda: rig.status().lag == 0, DEADLINE, message="the filtered sink to pass the other source's changes")
    assert {c["source"] for c in rig.receiver.accepted()} == {"a"}


def test_reset_replays_from_a_cursor(rig):
    done = rig.commit(5)
    rig.start()
    expect(rig, done)
    status = rig.fleet.reset("hook", format_cursor(done[2]))
    assert status.cursor == format_cursor(done[2])
    expect(rig, done + done[3:], "the replay after the reset")
    rig.fleet.reset("hook", FIRST)
    expect(rig, done + done[3:] + done, "the whole feed again")
    with pytest.raises(CursorExpired):
        rig.fleet.reset("hook", format_cursor(99))  # ahead of the feed
    with pytest.raises(UsageError):
        rig.fleet.reset("hook", "12")
    with pytest.raises(NotFoundError):
        rig.fleet.reset("nope", FIRST)


def test_a_reset_during_a_backoff_is_taken_at_once(rig):
    rig.receiver.script = [500]
    done = rig.commit(2)
    rig.start(rig.sink(retry_max=3600))  # the next attempt would be far away
    wait_for(lambda: rig.status().deliveries["failed"] == 1, DEADLINE)
    rig.fleet.reset("hook", FIRST)
    expect(rig, done)


def test_an_expired_cursor_stops_the_sink_until_reset(rig):
    done = rig.commit(3)
    with rig.store._lock:  # what retention does: the first changes are gone
        rig.store._db.execute("BEGIN IMMEDIATE")
        rig.store._db.execute("DELETE FROM changes WHERE cursor <= 2")
        rig.store._db.execute("UPDATE feed SET expired = 2 WHERE id = 1")
        rig.store._db.execute("COMMIT")
    cursors.save(rig.state, "hook", format_cursor(1))
    rig.start()
    wait_for(lambda: rig.status().state == "expired", DEADLINE)
    assert rig.status().last_error.code == "cursor_expired" and rig.receiver.posts == []
    rig.fleet.reset("hook", format_cursor(2))
    expect(rig, done[2:])


class Raising(Sink):
    kind = "raising"
    calls = 0

    def deliver(self, changes):
        Raising.calls += 1
        if Raising.calls < 3:
            raise RuntimeError("plugin bug")
        if Raising.calls < 4:
            raise DeliveryError("rejected", "the broker said no")


class Hanging(Sink):
    kind = "hanging"
    release = threading.Event()

    def deliver(self, changes):
        Hanging.release.wait(60)


def test_a_plugin_that_raises_or_hangs_holds_only_its_own_sink(rig):
    rig.plugins.sinks.update(raising=Raising, hanging=Hanging)
    rig.plugins.option_models()
    done = rig.commit(3)
    rig.start(rig.sink(), {"name": "raises", "kind": "raising", "retry_max": 0.1},
              {"name": "hangs", "kind": "hanging"})
    expect(rig, done)  # the webhook sink beside them delivers
    wait_for(lambda: rig.status("raises").lag == 0, DEADLINE, message="the raising sink to get through")
    assert rig.status("raises").deliveries == {"ok": 1, "failed": 3}
    assert rig.status("raises").last_error.code == "rejected"
    assert rig.status("hangs").state == "delivering" and rig.status("hangs").lag == 3
    runner = rig.fleet._runner("hangs")
    assert runner.stop(0.2) is False  # abandoned: it may never write the cursor again
    Hanging.release.set()
    runner._thread.join(10)
    assert cursors.load(rig.state, "hangs") == FIRST


def test_a_sink_that_cannot_start_is_unavailable_and_the_others_run(rig, tmp_path):
    secret = tmp_path / "gone.secret"
    secret.write_bytes(b"0123456789abcdef0123")
    secret.chmod(0o600)
    config = rig.config(rig.sink("broken", secret_file=str(secret)), rig.sink())
    secret.unlink()  # between the check and the start
    from ingestd.sinks.fleet import Fleet

    rig.fleet = Fleet(rig.store.feed, rig.plugins.sinks, rig.state)
    rig.fleet.start(config.sinks)
    done = rig.commit(1)
    expect(rig, done)
    broken = rig.status("broken")
    assert broken.state == "unavailable" and broken.last_error.code == "config"
    assert "file not found" in broken.last_error.message
    assert rig.fleet.health()["ok"] is True and "broken" in rig.fleet.health()["failing"]


def test_a_damaged_cursor_file_makes_the_sink_unavailable_not_replay_or_skip(rig):
    rig.commit(2)
    path = cursors.path(rig.state, "hook")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('{"cursor": "not a cursor"}')
    rig.start()
    status = rig.status()
    assert status.state == "unavailable" and status.last_error.code == "cursor" and rig.receiver.posts == []
    assert "ingestd sinks reset" in status.last_error.message
    rig.fleet.reset("hook", FIRST)  # the fix the message names
    expect(rig, [1, 2])
    with pytest.raises(ValueError):
        cursors.path(rig.state, "../escape")
