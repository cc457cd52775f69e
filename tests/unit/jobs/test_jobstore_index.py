"""The job index over a daemon's life: memory stays small per job and bounded in full
manifests, and listings stay correct and cost what they return, not what exists.

The load campaign found RSS growing while 100 clients polled `GET /jobs` during ingestion:
every listing sorted every job's full manifest (all kept in memory, ~2.6 KB each), so each
request's work and garbage grew with the number of jobs. These tests pin the fix.
"""

from __future__ import annotations

import gc
import json
import random
import sys
import tracemalloc
import types
from functools import partial

import pytest

from ingestd.jobs import jobstore as jobs_mod
from ingestd._lib.atomic import write_json
from ingestd.api.metrics import Metrics
from ingestd.jobs.jobstore import JobStore
from ingestd.jobs.manifest import Manifest, TERMINAL

SOURCES = ("inbox", "bucket", "legal")
STATUSES = ("queued", "running", *TERMINAL)


@pytest.fixture
def fast_disk(monkeypatch):
    """Manifests written without fsync: these tests make thousands of jobs."""
    monkeypatch.setattr(jobs_mod, "write_json", partial(write_json, durable=False))


def finished(jobs: JobStore, source: str, status: str = "succeeded") -> Manifest:
    m = jobs.create(source, "local", "watch")
    jobs.transition(m, "running")
    if status in TERMINAL:
        jobs.transition(m, status)
    return m


def write_manifests(state, count: int, seed: int = 1) -> list[dict]:
    """`count` finished jobs written straight to disk (as a long-lived daemon leaves them)."""
    rng = random.Random(seed)
    folder = state / "jobs"
    folder.mkdir(parents=True, exist_ok=True)
    made = []
    for i in range(count):
        job_id = f"20260101T{i // 3600 % 24:02d}{i // 60 % 60:02d}{i % 60:02d}{i:06d}Z-{rng.getrandbits(32):08x}"
        m = Manifest(job_id=job_id, source=rng.choice(SOURCES), kind="local", trigger="watch",
                     status=rng.choice(TERMINAL), created_at="2026-01-01T00:00:00.000Z",
                     started_at="2026-01-01T00:00:00.000Z", finished_at=f"2026-01-01T00:00:{i % 60:02d}.000Z",
                     items_file=f"{job_id}.items.jsonl")
        (folder / f"{job_id}.json").write_text(json.dumps(m.to_json()))
        made.append({"job_id": job_id, "source": m.source, "status": m.status})
    return made


def expected(rows: list[dict], source=None, status=None, limit=50, before=None) -> list[str]:
    ids = sorted((r["job_id"] for r in rows if (source is None or r["source"] == source)
                  and (status is None or r["status"] == status) and (before is None or r["job_id"] < before)),
                 reverse=True)
    return ids[:limit]


# -- memory --------------------------------------------------------------------------------


def test_memory_per_job_is_small_and_full_manifests_are_bounded(tmp_path, fast_disk):
    jobs = JobStore(tmp_path, cache_size=64)
    for i in range(600):
        finished(jobs, SOURCES[i % 3])
    before = held_bytes(jobs)
    for i in range(600):
        finished(jobs, SOURCES[i % 3], TERMINAL[i % 3])
    per_job = (held_bytes(jobs) - before) / 600
    assert jobs.memory() == {"indexed": 1200, "live": 0, "cached": 64, "unsaved": 0}
    assert per_job < 250, f"{per_job:.0f} bytes per job"  # a full Manifest per job is ~2,600


def test_a_restart_indexes_every_job_without_holding_their_manifests(tmp_path):
    write_manifests(tmp_path, 2000)
    jobs = JobStore(tmp_path, cache_size=64)
    assert jobs.load_all() == 2000
    assert jobs.memory() == {"indexed": 2000, "live": 0, "cached": 0, "unsaved": 0}
    assert held_bytes(jobs) / 2000 < 250


def held_bytes(obj) -> int:
    """Bytes of every object reachable from `obj` (classes, modules and functions excluded):
    what the store itself keeps alive, whatever the interpreter allocates around it."""
    seen, todo, total = set(), [obj], 0
    while todo:
        o = todo.pop()
        if id(o) in seen or isinstance(o, (type, types.ModuleType, types.FunctionType)):
            continue
        seen.add(id(o))
        total += sys.getsizeof(o)
        todo.extend(gc.get_referents(o))
    return total


def test_a_listing_costs_its_page_not_every_job(tmp_path, monkeypatch):
    """Each `GET /jobs` used to sort every job: time and garbage grew with the job count."""
    write_manifests(tmp_path, 6000)
    jobs = JobStore(tmp_path)
    jobs.load_all()
    reads = []
    real_read = jobs_mod._read
    monkeypatch.setattr(jobs_mod, "_read", lambda path: reads.append(path) or real_read(path))
    assert len(jobs.list(limit=20)) == 20 and len(reads) == 20
    tracemalloc.start()
    try:
        assert len(jobs.list(limit=20)) == 20  # the newest page, now cached
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(reads) == 20
    assert peak < 16 * 1024, f"a cached 20-job page allocated {peak} bytes"  # sorting 6,000 jobs: ~100 KB
    assert len(jobs.list(source="legal", status="failed", limit=20)) == 20
    assert len(reads) <= 40  # a filtered page reads only its own manifests


# -- listings stay correct -----------------------------------------------------------------


def test_listings_match_a_full_sort_wherever_manifests_are(tmp_path, fast_disk):
    """Old jobs only on disk, recent ones cached, live ones in memory: every filter and
    cursor answers exactly what sorting everything would."""
    rows = write_manifests(tmp_path, 600, seed=3)
    jobs = JobStore(tmp_path, cache_size=40)
    jobs.load_all()
    for i in range(120):
        source, status = SOURCES[i % 3], STATUSES[i % 5]
        m = finished(jobs, source, status) if status != "queued" else jobs.create(source, "local", "api")
        rows.append({"job_id": m.job_id, "source": source, "status": status})
    rng = random.Random(7)
    ids = sorted(r["job_id"] for r in rows)
    for _ in range(300):
        query = {"source": rng.choice((None, *SOURCES)), "status": rng.choice((None, *STATUSES)),
                 "limit": rng.choice((1, 7, 50, 500)), "before": rng.choice((None, rng.choice(ids), "20260101T12"))}
        got = [m.job_id for m in jobs.list(**query)]
        assert got == expected(rows, **query), query
        assert all(m.job_id == i for m, i in zip(jobs.list(**query), got))


def test_paging_with_before_walks_every_job_once(tmp_path):
    rows = write_manifests(tmp_path, 1000, seed=5)
    jobs = JobStore(tmp_path, cache_size=10)
    jobs.load_all()
    seen, cursor = [], None
    while True:
        page = jobs.list(source="bucket", limit=33, before=cursor)
        seen += [m.job_id for m in page]
        if len(page) < 33:
            break
        cursor = page[-1].job_id
    assert seen == expected(rows, source="bucket", limit=sys.maxsize)


def test_status_changes_move_a_job_between_filtered_listings(tmp_path):
    jobs = JobStore(tmp_path)
    m = jobs.create("inbox", "local", "api")
    assert [j.job_id for j in jobs.list(status="queued")] == [m.job_id]
    jobs.transition(m, "running")
    assert jobs.list(status="queued") == [] and [j.status for j in jobs.list(source="inbox")] == ["running"]
    jobs.transition(m, "partial")
    assert jobs.list(status="running") == [] and jobs.active() == []
    assert [j.job_id for j in jobs.list(source="inbox", status="partial")] == [m.job_id]


def test_a_vanished_manifest_drops_out_of_listings(tmp_path):
    rows = write_manifests(tmp_path, 30)
    jobs = JobStore(tmp_path, cache_size=1)
    jobs.load_all()
    gone = expected(rows, limit=5)[2]
    (tmp_path / "jobs" / f"{gone}.json").unlink()
    assert gone not in [m.job_id for m in jobs.list(limit=5)]
    assert jobs.memory()["indexed"] == 29


def test_a_manifest_the_disk_refused_stays_authoritative(tmp_path, monkeypatch):
    """Disk full: the newest state lives only in memory, even past the cache's size."""
    jobs = JobStore(tmp_path, cache_size=1)
    m = jobs.create("inbox", "local", "api")
    jobs.transition(m, "running")
    real = jobs_mod.write_json

    def refuse(path, obj, **kw):
        if m.job_id in path.name:
            raise OSError(28, "No space left on device")
        return real(path, obj, **kw)

    monkeypatch.setattr(jobs_mod, "write_json", refuse)
    with pytest.raises(OSError):
        jobs.transition(m, "succeeded")
    for _ in range(3):
        finished(jobs, "other")  # pushes m out of the cache
    assert jobs.get(m.job_id).status == "succeeded"
    assert [j.status for j in jobs.list(source="inbox")] == ["succeeded"]
    on_disk = json.loads((tmp_path / "jobs" / f"{m.job_id}.json").read_text())
    assert on_disk["status"] == "running"


def test_old_jobs_are_read_from_disk_and_returned_as_copies(tmp_path):
    rows = write_manifests(tmp_path, 50)
    jobs = JobStore(tmp_path, cache_size=2)
    jobs.load_all()
    oldest = min(r["job_id"] for r in rows)
    first = jobs.get(oldest)
    first.status = "queued"  # a caller's copy: the store's answer must not change
    assert jobs.get(oldest).status in TERMINAL


# -- metrics seeding ------------------------------------------------------------------------


def test_metrics_seed_the_same_from_last_succeeded_as_from_every_job(tmp_path):
    write_manifests(tmp_path, 500, seed=11)
    jobs = JobStore(tmp_path, cache_size=8)
    jobs.load_all()
    everything, cheap = Metrics(), Metrics()
    everything.seed(jobs.list(limit=sys.maxsize))
    cheap.seed(jobs.last_succeeded())
    assert everything.last_success and cheap.last_success == everything.last_success
    assert len(jobs.last_succeeded()) == len(SOURCES)
