"""The API's thread pool: threads made only when every one is busy, let go when idle."""

from __future__ import annotations

import threading
import time

from ingestd.api.transport.pool import Pool
from tests.support.helpers import wait_for


def test_sequential_tasks_reuse_one_thread():
    pool, done = Pool("t", linger=30), []
    for i in range(50):
        finished = threading.Event()
        pool.submit(lambda i=i, ev=finished: (done.append((i, threading.current_thread().name)), ev.set()))
        assert finished.wait(10)
        wait_for(lambda: pool.idle == 1, message="the thread to be idle again")
    assert [i for i, _ in done] == list(range(50)) and {name for _, name in done} == {"t-1"}
    assert pool.threads == 1


def test_blocked_tasks_get_threads_of_their_own_and_idle_ones_exit():
    pool, release = Pool("t", linger=0.2), threading.Event()
    entered = threading.Semaphore(0)

    def blocked():
        entered.release()
        release.wait(10)

    for _ in range(5):
        pool.submit(blocked)
    for _ in range(5):
        assert entered.acquire(timeout=10), "a task waited for another one to finish"
    assert pool.threads == 5
    release.set()
    wait_for(lambda: pool.threads == 0, message="idle threads to exit")
    ran = threading.Event()
    pool.submit(ran.set)  # and the pool still works after they left
    assert ran.wait(10) and pool.threads <= 1


def test_no_task_is_lost_when_threads_time_out_while_work_arrives():
    pool, count, lock = Pool("t", linger=0.001), [0], threading.Lock()
    all_done = threading.Event()

    def task():
        with lock:
            count[0] += 1
            if count[0] == 2000:
                all_done.set()

    for _ in range(2000):
        pool.submit(task)
    assert all_done.wait(30), f"only {count[0]} of 2000 tasks ran"


def test_after_a_spike_the_extra_threads_exit_under_steady_load():
    """The last thread to go idle is the next one used, so spare threads can time out
    even while a trickle of work goes on (a queue would keep every one of them warm)."""
    pool, release = Pool("t", linger=0.3), threading.Event()
    for _ in range(5):
        pool.submit(release.wait, 10)
    wait_for(lambda: pool.threads == 5, message="the spike's threads")
    release.set()
    deadline = time.monotonic() + 10
    while pool.threads > 1:
        assert time.monotonic() < deadline, f"{pool.threads} threads still alive under a trickle of work"
        done = threading.Event()
        pool.submit(done.set)
        assert done.wait(10)
        time.sleep(0.05)  # the trickle's pace (one task every 50 ms), not a wait for anything
