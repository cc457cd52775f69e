"""The throughput ring: progress counted while jobs run, each item once, slots emptied as
the clock passes them, a fixed size however long the daemon runs."""

from ingestd.jobs.manifest import Counters, JobError, Manifest
from ingestd.errors import Code
from ingestd.runtime.throughput import SLOT_S, SLOTS, Throughput


class Clock:
    def __init__(self, now: float = 1_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def job(job_id: str, status: str = "running", **counters) -> Manifest:
    return Manifest(job_id=job_id, source="inbox", kind="local", trigger="watch", status=status,
                    created_at="2026-01-01T00:00:00.000Z", items_file=f"{job_id}.items.jsonl", counters=Counters(**counters))


def rig():
    clock, active, depth = Clock(), [], [0]
    return Throughput(lambda: list(active), lambda: depth[0], clock), clock, active, depth


def test_a_running_jobs_progress_lands_in_the_slots_it_was_made_in():
    t, clock, active, _ = rig()
    m = job("j1", ingested=5, bytes=500)
    active.append(m)
    t.sample()
    clock.now += SLOT_S
    m.counters.ingested, m.counters.unchanged, m.counters.bytes = 12, 3, 1200
    t.sample()
    clock.now += SLOT_S
    w = t.window()
    assert len(w.files) == SLOTS - 1 and w.slot_s == SLOT_S
    assert w.files[-2:] == [5, 10] and w.bytes[-2:] == [500, 700]
    assert sum(w.files) == 15 and sum(w.errors) == 0


def test_a_finished_job_is_counted_once_whether_sampled_before_or_not():
    t, clock, active, _ = rig()
    m = job("j1", ingested=4, failed=1, bytes=40)
    active.append(m)
    t.sample()  # 5 items counted while it ran
    active.clear()  # the worker lets go of the job, then the listener hears of it
    t.job_finished(job("j1", status="partial", ingested=9, failed=2, skipped=1, bytes=90))
    t.sample()  # gone from the active list: adds nothing
    t.job_finished(job("j2", status="succeeded", unchanged=3))  # never sampled: counted whole
    clock.now += SLOT_S
    w = t.window()
    assert w.files[-1] == 12 + 3 and w.bytes[-1] == 90 and w.errors[-1] == 3


def test_a_job_that_failed_as_a_whole_is_an_error():
    t, clock, _, _ = rig()
    m = job("j1", status="failed")
    m.errors.append(JobError(code=Code.AUTH, message="no credentials"))
    t.job_finished(m)
    clock.now += SLOT_S
    assert t.window().errors[-1] == 1


def test_queue_depth_keeps_the_deepest_seen_in_a_slot():
    t, clock, _, depth = rig()
    for d in (3, 7, 2):
        depth[0] = d
        t.sample()
    clock.now += SLOT_S
    depth[0] = 0
    assert t.window().queue_depth[-1] == 7


def test_slots_the_clock_passed_are_emptied_and_an_hour_later_all_is_gone():
    t, clock, active, _ = rig()
    active.append(job("j1", ingested=50))
    t.sample()
    clock.now += 5 * SLOT_S
    w = t.window()
    assert w.files[-5] == 50 and w.files[-4:] == [0, 0, 0, 0]
    clock.now += SLOTS * SLOT_S
    assert sum(t.window().files) == 0


def test_a_clock_set_back_keeps_filling_the_current_slot():
    t, clock, active, _ = rig()
    m = job("j1", ingested=1)
    active.append(m)
    t.sample()
    clock.now -= 3600
    m.counters.ingested = 4
    t.sample()
    clock.now += 3600 + SLOT_S
    assert t.window().files[-1] == 4


def test_the_ring_is_a_few_kib():
    t, *_ = rig()
    size = sum(a.itemsize * len(a) for a in (t._files, t._bytes, t._errors, t._queue))
    assert size <= 8 * 1024
