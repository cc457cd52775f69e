"""Fencing end to end against the real server: every catalogue commit and cursor save
checks the fence in its own transaction; a takeover waits for a commit in flight and
outranks everything after it; the reaper expires leases by the database's clock."""

from __future__ import annotations

import hashlib
import threading

import pytest

from ingestd.cluster import catalogue, jobs, leases
from ingestd.cluster.leases import LeaseLost
from ingestd.store.catalogue import Blob, Change, doc_id_for
from tests.support.helpers import wait_for

from .conftest import add_sources


def change(source: str, name: str, content: bytes, job_id: str, **extra) -> Change:
    sha = hashlib.sha256(content).hexdigest()
    return Change(doc_id_for(source, name), source, f"s3://b/{name}", Blob(sha, len(content), "text/plain"), job_id,
                  **extra)


def claimed(conn, source="bucket", instance="a", ttl=30.0):
    jobs.enqueue(conn, source, "s3", "api")
    return jobs.claim(conn, instance, ttl=ttl)


def test_the_holder_commits_and_the_feed_records_each_change(db):
    add_sources(db, "bucket")
    c = claimed(db)
    job = c.manifest.job_id
    done = catalogue.commit(db, c.lease, [change("bucket", "a", b"1", job), change("bucket", "b", b"2", job)])
    assert done.outcomes == ["ingested", "ingested"] and done.cursors == [1, 2]
    again = catalogue.commit(db, c.lease, [change("bucket", "a", b"1", job),  # unchanged
                                           change("bucket", "b", b"3", job),  # new bytes
                                           change("bucket", "a", b"1", job, metadata={"k": "v"})],  # metadata
                             tombstones=[(doc_id_for("bucket", "b"), job), (doc_id_for("bucket", "zz"), job)])
    assert again.outcomes == ["unchanged", "ingested", "unchanged"] and again.gone == ["deleted", "unchanged"]
    feed = catalogue.changes_after(db, 0)
    assert [(f["cursor"], f["type"], f["version"]) for f in feed] == [
        (1, "stored", 1), (2, "stored", 1), (3, "updated", 2), (4, "updated", 2), (5, "deleted", 2)]
    assert [v["kind"] for v in catalogue.versions(db, doc_id_for("bucket", "a"))] == ["content", "metadata"]
    back = catalogue.commit(db, c.lease, [change("bucket", "b", b"3", job)])
    assert back.outcomes == ["ingested"] and catalogue.changes_after(db, 5)[0]["type"] == "restored"


def test_a_fenced_out_holder_writes_nothing(db):
    add_sources(db, "bucket")
    old = claimed(db)
    db.execute("UPDATE sources SET lease_expires_at = now() - interval '1 second'")
    reaped = jobs.reap(db, "b")
    assert [r.failed.job_id for r in reaped] == [old.manifest.job_id]
    new = jobs.claim(db, "b", ttl=30)
    assert new.manifest.trigger == "recovery" and new.lease.fence > old.lease.fence
    with pytest.raises(LeaseLost):
        catalogue.commit(db, old.lease, [change("bucket", "late", b"x", old.manifest.job_id)])
    assert db.execute("SELECT count(*) FROM versions").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM changes").fetchone()[0] == 0
    assert catalogue.commit(db, new.lease, [change("bucket", "late", b"x", new.manifest.job_id)]).cursors == [1]


def test_an_expired_lease_writes_nothing_even_before_the_reaper_runs(db):
    add_sources(db, "bucket")
    c = claimed(db)
    db.execute("UPDATE sources SET lease_expires_at = now() - interval '1 second'")
    with pytest.raises(LeaseLost):
        catalogue.commit(db, c.lease, [change("bucket", "a", b"1", c.manifest.job_id)])
    with pytest.raises(LeaseLost):
        leases.heartbeat(db, c.lease, ttl=30)


def test_a_takeover_waits_for_the_commit_in_flight_and_outranks_what_follows(pg, db):
    """The commit's FOR SHARE holds the row: the reaper's bump waits for the commit to
    end, so a write is either wholly before the new fence or refused."""
    add_sources(db, "bucket")
    c = claimed(db)
    writer = pg.connect()  # a transaction left open mid-commit
    cur = writer.cursor()
    leases.check(cur, c.lease)
    cur.execute("INSERT INTO documents (doc_id, source, origin_uri, current_seq) VALUES ('d', 'bucket', 'u', 1)")
    bumped = threading.Event()

    def take_over():
        with pg.connect(autocommit=True) as other:
            other.execute("UPDATE sources SET fence = fence + 1 WHERE name = 'bucket'")
            bumped.set()

    t = threading.Thread(target=take_over)
    t.start()
    assert not bumped.wait(1.0), "the takeover did not wait for the commit in flight"
    writer.commit()
    t.join(30)
    assert bumped.is_set()
    assert db.execute("SELECT count(*) FROM documents").fetchone()[0] == 1  # the earlier write stands
    with pytest.raises(LeaseLost):  # and nothing after the bump lands
        catalogue.commit(db, c.lease, [change("bucket", "a", b"1", c.manifest.job_id)])
    writer.close()


def test_the_cursor_moves_only_for_the_newest_fence(db):
    add_sources(db, "bucket")
    old = claimed(db)
    leases.save_state(db, old.lease, "state/bucket/one")
    db.execute("UPDATE sources SET lease_expires_at = now() - interval '1 second'")
    jobs.reap(db, "b")
    new = jobs.claim(db, "b", ttl=30)
    leases.save_state(db, new.lease, "state/bucket/two")
    with pytest.raises(LeaseLost):
        leases.save_state(db, old.lease, "state/bucket/stale")
    assert leases.state_key(db, "bucket") == ("state/bucket/two", new.lease.fence)


def test_the_reaper_fails_the_job_and_queues_recovery_by_the_database_clock(db):
    add_sources(db, "bucket")
    c = claimed(db, ttl=1.0)
    assert jobs.reap(db, "b") == []  # not yet expired
    reaped = wait_for(lambda: jobs.reap(db, "b"), timeout=30, message="the lease to expire")
    (r,) = reaped
    assert r.failed.status == "failed" and [e.code.value for e in r.failed.errors] == ["interrupted"]
    assert "instance a stopped renewing" in r.failed.errors[0].message
    assert r.recovery.trigger == "recovery" and r.fence == c.lease.fence + 1
    assert jobs.get(db, c.manifest.job_id).status == "failed"
    assert jobs.live(db, "bucket").job_id == r.recovery.job_id
    assert jobs.reap(db, "b") == []  # once
    # the stalled holder wakes: its own record of the loss cannot overwrite the reaper's
    final = jobs.lost(db, c.lease, c.manifest, "lease lost")
    assert [e.code.value for e in final.errors] == ["interrupted"]


def test_fences_strictly_increase_across_claims_and_reaps(db):
    add_sources(db, "bucket")
    seen = []
    for round_ in range(4):
        c = claimed(db) if round_ == 0 else jobs.claim(db, "a", ttl=30)
        seen.append(c.lease.fence)
        db.execute("UPDATE sources SET lease_expires_at = now() - interval '1 second'")
        seen.append(jobs.reap(db, "b")[0].fence)
    assert seen == sorted(set(seen)) and len(seen) == 8


def test_the_feed_is_gapless_while_sources_commit_at_once(pg, db):
    """A follower reading after its last cursor never finds, later, a cursor at or below
    one it has seen: what it reads is always the next cursors, in order."""
    names = [f"s{i}" for i in range(4)]
    add_sources(db, *names)
    claims = {n: claimed(db, n) for n in names}
    done = threading.Event()
    problems = []

    def writer(name):
        c = claims[name]
        with pg.connect(autocommit=True) as conn:
            for i in range(40):
                catalogue.commit(conn, c.lease, [change(name, f"{i}-{k}", f"{name}{i}{k}".encode(),
                                                        c.manifest.job_id) for k in range(3)])

    def follower():
        last = 0
        with pg.connect(autocommit=True) as conn:
            while True:
                finished = done.is_set()
                for entry in catalogue.changes_after(conn, last):
                    if entry["cursor"] != last + 1:
                        problems.append((last, entry["cursor"]))
                    last = entry["cursor"]
                if finished:
                    problems.append(("read", last))
                    return

    f = threading.Thread(target=follower)
    f.start()
    writers = [threading.Thread(target=writer, args=(n,)) for n in names]
    for t in writers:
        t.start()
    for t in writers:
        t.join(120)
    done.set()
    f.join(60)
    assert problems == [("read", 4 * 40 * 3)]


def test_a_commit_wakes_the_feed_watcher_by_notify_and_a_page_reads_one_snapshot(pg, db):
    """The long-poll's wake-up is the commit's NOTIFY (the watcher is never asked to poll
    here), and an uncommitted allocation is invisible to a page: `next_after` never passes
    a change the page did not return."""
    from ingestd.cluster import feed

    add_sources(db, "bucket")
    c = claimed(db)
    watcher = feed.Watcher(lambda **kw: pg.connect(autocommit=True))
    woken = threading.Event()
    watcher.listeners.append(woken.set)
    watcher.start()
    try:
        catalogue.commit(db, c.lease, [change("bucket", "w", b"w", c.manifest.job_id)])
        assert woken.wait(30)  # by the NOTIFY, or the head read when it started listening: it listens now
        woken.clear()
        with pg.connect() as writer:  # a transaction left open after taking its cursor
            writer.execute("SELECT 1")  # open it first: the commit's own block becomes a savepoint in it
            catalogue.commit(writer, c.lease, [change("bucket", "x", b"x", c.manifest.job_id)])
            page = feed.read(db, None, 10)
            assert (len(page.changes), page.next_after) == (1, "0" * 15 + "1")
            assert not woken.wait(0.2)
            writer.commit()
        assert woken.wait(30), "the commit's NOTIFY did not wake the watcher"
        page = feed.read(db, "0" * 15 + "1", 10)
        assert len(page.changes) == 1 and page.next_after == "0" * 15 + "2" and watcher.head == 2
    finally:
        watcher.stop()
