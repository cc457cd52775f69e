"""What the accepting loop, every connection and the service share, in one object handed
to the transport (uvicorn's ServerState): the limits, the counters of requests in flight
and waiting, the compute slots, the draining switch, and the two callables the service
plugs in. No part reaches back into another's object: the service never touches a
socket, and the transport knows nothing of routes, tokens or jobs."""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from ingestd.api.transport.http import Request, Response
from ingestd.api.transport.pacer import Pacer


@dataclass(frozen=True)
class Limits:
    idle_timeout: float = 10.0  # a connection with no request started is closed after this
    request_timeout: float = 10.0  # from a request's first byte until it has arrived whole (head and body)
    send_timeout: float = 10.0  # one write to a client that does not read
    max_connections: int = 256  # beyond this, a connection waiting for its request is evicted, or 503
    max_per_client: int = 32  # connections one client address may hold: a small share of the above
    active_requests: int = 2  # answers computed at once; the rest wait without using the CPU
    max_queued: int = 8  # requests on threads waiting for a compute slot; the rest wait parked, threadless
    max_body: int = 4 * 1024  # a trigger is `{"source": "..."}`; nothing legitimate is bigger
    drain_body: int = 64 * 1024  # a refused body up to this is read and dropped, so the client sees its 413
    slow_request: float = 1.0  # seconds; a request slower than this is logged at warning
    held_poll: float = 1.0  # while requests are held (long-polls), `ServerState.poll_held` runs this often
    held_buffer: int = 64 * 1024  # bytes a held request's client may send ahead before it is dropped


@dataclass
class Exchange:
    """One answered request, as the access log and metrics see it."""

    method: str | None
    path: str | None
    status: int
    route: str
    duration: float
    client: str
    held: float = 0.0  # of `duration`, the time the request was held waiting (a long-poll)


class ServerState:
    def __init__(self, limits: Limits, respond: Callable[[Request], Response],
                 finished: Callable[[Exchange], None], pacer: Pacer, log):
        self.limits = limits
        self.log = log  # for what goes wrong inside the transport itself (a bug, not a client)
        self.respond = respond  # the service: computes an answer (inside a slot)
        self.finished = finished  # the service: access log and metrics, once per answer
        self.pacer = pacer
        # the service's look for what held requests wait on that it cannot be told of
        # (another process's commit): called from the loop while any request is held
        self.poll_held: Callable[[], None] = lambda: None
        self.draining = False  # set when the daemon stops: answers close their connections
        self.refused: Counter = Counter()  # connections refused at once, by reason
        self.inflight = 0
        self.queued = 0  # requests handed to threads and not yet computing (the loop holds more back)
        self._idle = threading.Condition()
        self._slots = threading.BoundedSemaphore(limits.active_requests)

    @contextlib.contextmanager
    def tracking(self):
        """Counts a request from being taken up to its last byte written."""
        with self._idle:
            self.inflight += 1
        try:
            yield
        finally:
            with self._idle:
                self.inflight -= 1
                self._idle.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Until no request is being answered, nor handed to a thread and not started yet
        (the loop's last turn hands out what was waiting: held long-polls among them)."""
        with self._idle:
            return self._idle.wait_for(lambda: self.inflight == 0 and self.queued == 0, timeout=timeout)

    def enqueue(self) -> None:
        """A request is handed to a thread (counted from here, so the loop never hands out
        more than `max_queued` before the threads have even started)."""
        with self._idle:
            self.queued += 1

    def dequeue(self) -> None:
        with self._idle:
            self.queued -= 1
            self._idle.notify_all()

    @contextlib.contextmanager
    def slot(self):
        """One of the few places where an answer is computed, taken in turn (by a request
        that was `enqueue`d)."""
        try:
            self._slots.acquire()
        finally:
            self.dequeue()
        try:
            yield
        finally:
            self._slots.release()
