"""The download threads of one job and the window of fetches in flight."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

from ingestd.plugin import Event

from .download import Fetcher
from .objects import Listed

WINDOW_PER_WORKER = 4  # fetches queued per thread: keeps threads busy, bounds the backlog
POLL_SECONDS = 0.2  # how often a wait for downloads looks at the stop flag


class Pool:
    """Runs `Fetcher.fetch` on `workers` threads, at most `workers * WINDOW_PER_WORKER`
    at a time, and hands back their events in completion order.

    Finished fetches arrive on a queue (one put per completion) rather than through
    `concurrent.futures.wait`, which re-registers a waiter on every pending future at
    each call: with thousands of small objects that bookkeeping showed in profiles.
    """

    def __init__(self, fetcher: Fetcher, workers: int, stop: threading.Event):
        self._fetcher = fetcher
        self._stop = stop
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="s3-get")
        self._done: queue.SimpleQueue[Future] = queue.SimpleQueue()
        self._pending = 0
        self._window = workers * WINDOW_PER_WORKER
        self._seq = 0

    def __enter__(self) -> "Pool":
        return self

    def __exit__(self, *exc) -> None:
        """On success everything is done already; otherwise in-flight downloads are told
        to stop and queued ones cancelled, without waiting for a slow socket."""
        clean = self._pending == 0
        self._fetcher.abort()
        self._executor.shutdown(wait=clean, cancel_futures=True)

    def fetch(self, obj: Listed) -> Iterator[Event]:
        """Queue a fetch; when the window is full, first yield what finished."""
        self._seq += 1
        self._pending += 1
        self._executor.submit(self._fetcher.fetch, obj, self._seq).add_done_callback(self._done.put)
        if self._pending >= self._window:
            yield from self.wait()

    def ready(self) -> Iterator[Event]:
        """Events of the fetches finished so far, without blocking."""
        while self._pending:
            try:
                future = self._done.get_nowait()
            except queue.Empty:
                return
            yield from self._take(future)

    def wait(self) -> Iterator[Event]:
        """Block until at least one fetch is done (or the job is stopping)."""
        while self._pending and not self._stop.is_set():
            try:
                future = self._done.get(timeout=POLL_SECONDS)
            except queue.Empty:
                continue
            yield from self._take(future)
            yield from self.ready()
            return

    def drain(self) -> Iterator[Event]:
        while self._pending and not self._stop.is_set():
            yield from self.wait()

    def _take(self, future: Future) -> Iterator[Event]:
        self._pending -= 1
        event = future.result()  # a job-level ConnectorError propagates from here
        if event is not None:
            yield event
