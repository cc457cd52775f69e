"""Running a job's downloads side by side, handing their events back in plan order.

Order matters more than it seems: core records outcomes in the order events arrive, so
yielding in completion order would make the items file, the manifest's error list and
which item fails first depend on network timing. Here a finished download waits (on
disk, as a file in the workspace; only its event is in memory) until those planned
before it are handed back, and a window bounds how far ahead the threads may run.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as NotYet

from ingestd.plugin.kit.throttle import Stopped

WINDOW_PER_WORKER = 4  # tasks started and not yet handed back, per thread
POLL_SECONDS = 0.2  # how often a wait for the next result looks at the stop flag


class InOrder:
    """Runs `work(task)` on `workers` threads; `run(tasks)` yields the results in the
    order of `tasks`.

    `halt` is the event the work stops on (the download threads' requests and waits
    watch it). It is set when the job stops, when a task raises (the error is raised
    from `run` at once, whatever its place in the order: the other downloads are called
    off, not waited for), and when the consumer stops reading early.
    """

    def __init__(self, work: Callable, workers: int, *, stop: threading.Event, halt: threading.Event,
                 name: str = "sharepoint-get"):
        self._work = work
        self._workers = workers
        self._stop = stop
        self.halt = halt
        self._name = name
        self._lock = threading.Lock()
        self._failure: BaseException | None = None  # the first exception a task raised

    def run(self, tasks: Iterable) -> Iterator:
        pending: deque[Future] = deque()
        window = self._workers * WINDOW_PER_WORKER
        executor = ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix=self._name)
        finished = False
        try:
            for task in tasks:
                pending.append(executor.submit(self._guarded, task))
                while len(pending) >= window or (pending and pending[0].done()):
                    yield self._next(pending.popleft())
            while pending:
                yield self._next(pending.popleft())
            finished = True
        finally:
            if not finished:
                self.halt.set()
            # on the way out early, a thread stuck in a socket read is not waited for:
            # its request stops at the next chunk or timeout, and it deletes its file
            executor.shutdown(wait=finished, cancel_futures=True)

    def _guarded(self, task):
        """Run one task; the first exception also calls off the others."""
        if self.halt.is_set():
            raise Stopped("called off")
        try:
            return self._work(task)
        except BaseException as exc:
            with self._lock:
                if self._failure is None and not self.halt.is_set():
                    self._failure = exc
            self.halt.set()
            raise

    def _next(self, future: Future):
        """The result of the task at the head of the order, or the first failure of
        any task, or `Stopped` once the job is asked to stop."""
        while True:
            if self._failure is not None:
                raise self._failure
            if self._stop.is_set():
                raise Stopped("stopping")
            try:
                return future.result(timeout=POLL_SECONDS)
            except NotYet:
                continue
            except BaseException:
                if self._failure is not None:
                    raise self._failure from None
                raise
