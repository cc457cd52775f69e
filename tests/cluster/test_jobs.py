"""Jobs across instances: one live job per source (the unique index → Busy naming the
holder), claims with SKIP LOCKED, fences that grow with every claim, pinned sources."""

from __future__ import annotations

import threading

import pytest

from ingestd.cluster import jobs, leases
from ingestd.cluster.leases import LeaseLost

from .conftest import add_sources


def test_a_second_job_for_a_source_is_busy_naming_the_live_one(db):
    add_sources(db, "bucket")
    first = jobs.enqueue(db, "bucket", "s3", "api")
    with pytest.raises(jobs.Busy) as caught:
        jobs.enqueue(db, "bucket", "s3", "api")
    assert caught.value.manifest.job_id == first.job_id
    assert caught.value.manifest.status == "queued"
    claim = jobs.claim(db, "a", ttl=30)
    with pytest.raises(jobs.Busy) as caught:
        jobs.enqueue(db, "bucket", "s3", "schedule")
    assert (caught.value.manifest.job_id, caught.value.manifest.status) == (first.job_id, "running")
    claim.manifest.status = "succeeded"
    jobs.settle(db, claim.lease, claim.manifest)
    assert jobs.enqueue(db, "bucket", "s3", "api").job_id != first.job_id  # free again


def test_concurrent_requests_from_many_instances_queue_exactly_one(pg, db):
    add_sources(db, "bucket")
    barrier = threading.Barrier(8)
    accepted, busy = [], []

    def request():
        with pg.connect(autocommit=True) as conn:
            barrier.wait()
            try:
                accepted.append(jobs.enqueue(conn, "bucket", "s3", "api").job_id)
            except jobs.Busy as exc:
                busy.append(exc.manifest.job_id)

    threads = [threading.Thread(target=request) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(accepted) == 1 and len(busy) == 7
    assert set(busy) == set(accepted)  # every refusal names the one job that was queued


def test_claimers_never_take_the_same_job(pg, db):
    names = [f"s{i}" for i in range(12)]
    add_sources(db, *names)
    queued = {jobs.enqueue(db, n, "s3", "api").job_id for n in names}
    claimed, lock = [], threading.Lock()

    def worker(instance):
        with pg.connect(autocommit=True) as conn:
            while (c := jobs.claim(conn, instance, ttl=30)) is not None:
                with lock:
                    claimed.append((c.manifest.job_id, instance))

    threads = [threading.Thread(target=worker, args=(f"i{k}",)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(j for j, _ in claimed) == sorted(queued)  # each exactly once
    rows = db.execute("SELECT status, instance_id, fence FROM jobs").fetchall()
    assert all(status == "running" and fence == 1 for status, _, fence in rows)
    assert {i for _, i, _ in rows} <= {"i0", "i1", "i2"}


def test_every_claim_bumps_the_fence(db):
    add_sources(db, "bucket")
    fences = []
    for _ in range(3):
        jobs.enqueue(db, "bucket", "s3", "api")
        c = jobs.claim(db, "a", ttl=30)
        fences.append(c.lease.fence)
        c.manifest.status = "succeeded"
        jobs.settle(db, c.lease, c.manifest)
    assert fences == [1, 2, 3]
    assert jobs.get(db, c.manifest.job_id).status == "succeeded"


def test_a_pinned_source_is_claimed_only_by_its_node(db):
    add_sources(db, "inbox", node="host-b", kind="local")
    jobs.enqueue(db, "inbox", "local", "watch")
    assert jobs.claim(db, "host-a", ttl=30) is None
    assert jobs.claim(db, "host-b", ttl=30).manifest.source == "inbox"


def test_settling_with_an_old_fence_is_refused(db):
    add_sources(db, "bucket")
    jobs.enqueue(db, "bucket", "s3", "api")
    c = jobs.claim(db, "a", ttl=30)
    db.execute("UPDATE sources SET fence = fence + 1")  # someone took the source over
    c.manifest.status = "succeeded"
    with pytest.raises(LeaseLost):
        jobs.settle(db, c.lease, c.manifest)
    assert jobs.get(db, c.manifest.job_id).status == "running"


def test_listing_is_newest_first_and_pages(db):
    add_sources(db, "a", "b")
    made = []
    for n in range(3):
        for s in ("a", "b"):
            m = jobs.enqueue(db, s, "s3", "api")
            made.append(m.job_id)
            c = jobs.claim(db, "x", ttl=30)
            c.manifest.status = "succeeded"
            jobs.settle(db, c.lease, c.manifest)
    assert [m.job_id for m in jobs.listing(db, limit=10)] == made[::-1]
    assert [m.job_id for m in jobs.listing(db, source="a", limit=10)] == made[-2::-2]
    page = jobs.listing(db, limit=2)
    assert [m.job_id for m in jobs.listing(db, limit=2, before=page[-1].job_id)] == made[::-1][2:4]


def test_heartbeat_renews_and_release_frees(db):
    add_sources(db, "bucket")
    jobs.enqueue(db, "bucket", "s3", "api")
    c = jobs.claim(db, "a", ttl=30)
    before = db.execute("SELECT lease_expires_at FROM sources").fetchone()[0]
    leases.heartbeat(db, c.lease, ttl=300)
    after = db.execute("SELECT lease_expires_at FROM sources").fetchone()[0]
    assert (after - before).total_seconds() > 200
