"""The rest of the coordination against the real server: schedule ticks claimed once
across instances, LISTEN/NOTIFY wake-ups, sync-state snapshots behind the fence, and the
lease keeper stopping its own job when the database goes silent (a blackholing proxy)."""

from __future__ import annotations

import threading
from datetime import timedelta

import psycopg
import pytest

from ingestd.cluster import jobs, schedule, sync_state
from ingestd.cluster.blobs import BlobStore
from ingestd.cluster.keeper import Keeper, cut
from ingestd.cluster.leases import LeaseLost
from ingestd.cluster.wake import Waker
from tests.support.helpers import wait_for

from .conftest import BUCKET, add_sources
from .proxy import Proxy


def hourly(_name, now):
    return now + timedelta(hours=1)


def test_each_due_tick_is_taken_by_one_instance(pg, db):
    names = [f"s{i}" for i in range(6)]
    add_sources(db, *names)
    for n in names:
        db.execute("UPDATE sources SET next_run_at = now() - interval '1 minute' WHERE name = %s", (n,))
    taken, barrier = [], threading.Barrier(3)

    def instance(i):
        with pg.connect(autocommit=True) as conn:
            barrier.wait()
            taken.extend(schedule.claim_due(conn, f"i{i}", hourly, limit=2))
            taken.extend(schedule.claim_due(conn, f"i{i}", hourly))

    threads = [threading.Thread(target=instance, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(n for n, _ in taken) == names and all(job for _, job in taken)
    assert db.execute("SELECT count(*) FROM jobs WHERE trigger = 'schedule'").fetchone()[0] == 6
    assert schedule.claim_due(db, "i0", hourly) == []  # next run is an hour away


def test_a_tick_for_a_busy_source_is_consumed_not_queued(db):
    add_sources(db, "bucket")
    live = jobs.enqueue(db, "bucket", "s3", "api")
    db.execute("UPDATE sources SET next_run_at = now() - interval '1 second'")
    assert schedule.claim_due(db, "i0", hourly) == [("bucket", None)]
    assert [m.job_id for m in jobs.listing(db)] == [live.job_id]


def test_a_pinned_source_fires_only_on_its_node(db):
    add_sources(db, "inbox", node="host-b", kind="local")
    schedule.arm(db, "inbox", None)
    db.execute("UPDATE sources SET next_run_at = now() - interval '1 second'")
    assert schedule.claim_due(db, "host-a", hourly) == []
    assert [n for n, _ in schedule.claim_due(db, "host-b", hourly)] == ["inbox"]


def test_an_idle_instance_wakes_when_a_job_is_queued(pg, db):
    add_sources(db, "bucket")
    waker = Waker(lambda **kw: pg.connect(autocommit=True))
    try:
        assert waker.wait(0.2) == []  # nothing queued: the wait times out
        got = []
        t = threading.Thread(target=lambda: got.extend(waker.wait(60)))
        t.start()
        jobs.enqueue(db, "bucket", "s3", "api")
        t.join(30)
        assert not t.is_alive() and got == ["bucket"]
    finally:
        waker.close()


def test_state_snapshots_become_current_only_for_the_newest_fence(db, s3):
    blobs = BlobStore(s3.client(), BUCKET, "p")
    add_sources(db, "bucket")
    jobs.enqueue(db, "bucket", "s3", "api")
    old = jobs.claim(db, "a", ttl=30)
    assert sync_state.load(db, blobs, "bucket") is None
    sync_state.save(db, blobs, old.lease, b"cursor-1")
    db.execute("UPDATE sources SET lease_expires_at = now() - interval '1 second'")
    jobs.reap(db, "b")
    new = jobs.claim(db, "b", ttl=30)
    sync_state.save(db, blobs, new.lease, b"cursor-2")
    with pytest.raises(LeaseLost):
        sync_state.save(db, blobs, old.lease, b"cursor-stale")
    assert sync_state.load(db, blobs, "bucket") == b"cursor-2"


def test_a_holder_cut_off_from_the_database_stops_before_its_lease_ends(pg, db):
    """The proxy swallows every byte (no reset, no error: TCP keeps waiting). The keeper
    declares the lease lost after ttl/2 of silence, sets the job's stop, and cuts the job's
    connection under a query blocked on it; all while the lease is still valid in the
    database, so no other instance could have taken the source yet."""
    ttl = 6.0
    add_sources(db, "bucket")
    jobs.enqueue(db, "bucket", "s3", "api")
    claim = jobs.claim(db, "a", ttl=ttl)
    proxy = Proxy(pg.server.host, pg.server.port)
    params = {**pg.server.params(pg.name), "port": proxy.port}

    def connect():
        return psycopg.connect(**params, autocommit=True)

    stop = threading.Event()
    keeper = Keeper(connect, claim.lease, ttl, stop).start()
    job_conn = connect()
    keeper.on_lost.append(lambda: cut(job_conn))
    seen = {}

    def still_valid():
        try:
            with pg.connect(autocommit=True) as direct:
                seen["valid"] = direct.execute("SELECT lease_expires_at > now() FROM sources "
                                               "WHERE name = 'bucket'").fetchone()[0]
        except Exception as exc:  # noqa: BLE001 - shown by the assertion below
            seen["valid"] = repr(exc)

    keeper.on_lost.append(still_valid)
    try:
        wait_for(lambda: keeper.beats >= 1, timeout=30, message="a first heartbeat")
        proxy.blackhole()
        outcome = []

        def blocked_query():
            try:
                job_conn.execute("SELECT 1")
                outcome.append("answered")
            except psycopg.Error as exc:
                outcome.append(type(exc).__name__)

        t = threading.Thread(target=blocked_query)
        t.start()
        wait_for(keeper.lost.is_set, timeout=4 * ttl, message="the keeper to give the lease up")
        assert stop.is_set() and "no heartbeat reached the database" in keeper.reason
        assert seen == {"valid": True}  # it stopped while its lease still stood
        t.join(30)
        assert not t.is_alive() and outcome and outcome != ["answered"]
    finally:
        keeper.close()
        job_conn.close()
        proxy.close()


def test_a_state_directory_travels_between_hosts_through_its_snapshot(db, s3, tmp_path):
    blobs = BlobStore(s3.client(), BUCKET, "p")
    add_sources(db, "bucket")
    jobs.enqueue(db, "bucket", "s3", "api")
    c = jobs.claim(db, "a", ttl=30)
    here, there = tmp_path / "a" / "bucket", tmp_path / "b" / "bucket"
    (here / "sub").mkdir(parents=True)
    (here / "cursor.json").write_text('{"after": "k/0042"}')
    (here / "sub" / "state.sqlite").write_bytes(b"\0sqlite bytes")
    key = sync_state.publish(db, blobs, c.lease, here)
    assert sync_state.publish(db, blobs, c.lease, here) == key  # same state, same snapshot
    (there / "stale").mkdir(parents=True)
    assert sync_state.restore(db, blobs, "bucket", there) == key
    assert sorted(str(p.relative_to(there)) for p in there.rglob("*")) == [
        sync_state.MARKER, "cursor.json", "sub", "sub/state.sqlite"]
    assert (there / "sub" / "state.sqlite").read_bytes() == b"\0sqlite bytes"


def test_a_hostile_snapshot_cannot_write_outside_the_state_directory(db, s3, tmp_path):
    import io
    import tarfile

    blobs = BlobStore(s3.client(), BUCKET, "p")
    add_sources(db, "bucket")
    jobs.enqueue(db, "bucket", "s3", "api")
    c = jobs.claim(db, "a", ttl=30)
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:") as tar:
        info = tarfile.TarInfo("../escaped")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    sync_state.save(db, blobs, c.lease, out.getvalue())
    target = tmp_path / "state" / "bucket"
    with pytest.raises(tarfile.FilterError):
        sync_state.restore(db, blobs, "bucket", target)
    assert not (tmp_path / "state" / "escaped").exists()
