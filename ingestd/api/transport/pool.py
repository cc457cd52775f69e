"""The thread pool answers are computed on: threads made on demand, let go when idle."""

from __future__ import annotations

import itertools
import threading

IDLE_THREAD_LINGER = 30.0  # seconds a spare thread waits for work before it exits


class Pool:
    """Threads made on demand and let go when idle: as many as requests in progress.

    The thread that went idle last gets the next task (a stack, not a queue), so when a
    spike has passed the extra threads are the ones left waiting, and they exit."""

    def __init__(self, name: str, linger: float = IDLE_THREAD_LINGER):
        self.name, self.linger = name, linger
        self._lock = threading.Lock()
        self._idle: list[_Idle] = []  # most recently idle last
        self._numbers = itertools.count(1)
        self.threads = 0

    def submit(self, task, *args) -> None:
        with self._lock:
            if self._idle:
                self._idle.pop().give((task, args))
                return
            self.threads += 1
        threading.Thread(target=self._run, args=((task, args),), name=f"{self.name}-{next(self._numbers)}",
                         daemon=True).start()

    def _run(self, work) -> None:
        me = _Idle()
        while work is not None:
            task, args = work
            task(*args)
            with self._lock:
                self._idle.append(me)
            work = self._next(me)

    def _next(self, me: _Idle):
        """An idle thread's next task, or None once it has waited `linger` for nothing."""
        if not me.given.acquire(timeout=self.linger):
            with self._lock:
                if me.work is None:  # still on the idle stack: nobody is about to give
                    self._idle.remove(me)
                    self.threads -= 1
                    return None
            me.given.acquire()  # given just as the wait ran out: it was released already
        work, me.work = me.work, None
        return work

    @property
    def idle(self) -> int:
        return len(self._idle)


class _Idle:
    """One idle thread's mailbox."""

    def __init__(self):
        self.work = None
        self.given = threading.Semaphore(0)

    def give(self, work) -> None:
        self.work = work
        self.given.release()
