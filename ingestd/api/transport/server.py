"""The API's listening socket and connections: idle ones parked, busy ones on a few threads.

Why not a thread per connection: with 100 clients polling on keep-alive connections the
daemon ran ~100 threads for its whole life, each with its own stack pages and its own glibc
cache of freed chunks, and those filled slowly for hours (docs/reliability.md, Load). Here a
connection between requests is parked on one selector and costs a file descriptor. When its
next request starts to arrive it takes its turn with the pacer *before* it gets a thread, so
threads are needed only for requests actually being read, answered or written: a handful,
however many clients poll. A client that stalls halfway through a request still ties up one
thread until the socket timeout, as it did before, so it cannot hold up anyone else; the
pool grows for it (up to `max_connections`) and shrinks again when it is gone.
"""

from __future__ import annotations

import heapq
import itertools
import json
import queue
import selectors
import socket
import threading
import time
from http.server import HTTPServer

from ingestd.api.routes import JSON
from ingestd.api.transport.handler import Handler
from ingestd.errors import IngestdError

IDLE_THREAD_LINGER = 30.0  # seconds a spare thread waits for work before it exits
MAX_QUEUED = 8  # requests read or being read and not yet computed; the rest wait parked, threadless
STALL_GRACE = 0.5  # seconds after which a request still being read no longer holds others back
HELD_BACK_POLL = 0.02  # how often requests held back by MAX_QUEUED are looked at again


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


class Server(HTTPServer):
    """Accepts, parks idle keep-alive connections, paces requests, hands them to the pool."""

    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address, handler, max_connections: int):
        self._slots = threading.BoundedSemaphore(max_connections)
        super().__init__(address, handler)
        self.pool = Pool("http")
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_w.setblocking(False)  # a full pipe already means the loop will wake
        self._back: queue.SimpleQueue = queue.SimpleQueue()  # (handler, ready) from the workers
        self._parked: dict = {}  # handler -> when it is dropped for idling
        self._due: list = []  # heap of (time, n, handler): requests waiting for the pacer
        self._order = itertools.count()
        self._reading: dict = {}  # handler -> when it got its thread, until its request is read
        self._lock = threading.Lock()
        self._running = False
        self._stopping = False  # set once, by shutdown(), even before the loop has started
        self._stopped = threading.Event()
        self._stopped.set()

    # -- the loop ---------------------------------------------------------------------------

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        self._running = True
        self._stopped.clear()
        sel = self._selector
        sel.register(self.socket, selectors.EVENT_READ)
        sel.register(self._wake_r, selectors.EVENT_READ)
        try:
            while not self._stopping:
                for key, _ in sel.select(self._timeout(poll_interval)):
                    if key.fileobj is self.socket:
                        self._handle_request_noblock()
                    elif key.fileobj is self._wake_r:
                        self._wake_r.recv(4096)
                    else:
                        self._unpark(key.data)
                self._take_back()
                self._dispatch_due()
                self._expire_idle()
        finally:
            self._wind_down()

    def _timeout(self, poll_interval: float) -> float:
        now, timeout = time.monotonic(), poll_interval
        if self._due:
            timeout = min(timeout, self._due[0][0] - now if self._admitting() else HELD_BACK_POLL)
        if self._parked:
            timeout = min(timeout, next(iter(self._parked.values())) - now)
        return max(0.0, timeout)

    def process_request(self, request, client_address) -> None:
        if not self._slots.acquire(blocking=False):
            _refuse(request)
            self.shutdown_request(request)
            return
        try:
            handler = self.RequestHandlerClass(request, client_address, self)
        except Exception:
            self._slots.release()
            raise
        self._park(handler)

    def _park(self, handler) -> None:
        """Every connection idles out after the same socket timeout, so `_parked` (a dict
        keeps insertion order) is always in deadline order: the first one expires first."""
        self._parked[handler] = time.monotonic() + handler.timeout
        self._selector.register(handler.connection, selectors.EVENT_READ, handler)

    def _unpark(self, handler) -> None:
        self._selector.unregister(handler.connection)
        del self._parked[handler]
        self._pace(handler)

    def _pace(self, handler) -> None:
        """A request has started to arrive: it is served when the pacer says (the loop
        dispatches what is due at the end of each turn)."""
        heapq.heappush(self._due, (self.api.pacer.reserve(), next(self._order), handler))

    def _dispatch_due(self) -> None:
        now = time.monotonic()
        while self._due and self._due[0][0] <= now and self._admitting():
            handler = heapq.heappop(self._due)[2]
            with self._lock:
                self._reading[handler] = now
            self.pool.submit(self._work, handler)

    def _admitting(self) -> bool:
        """Whether another request may have a thread. Not while enough are already being
        read or waiting for a compute slot: when the CPU is what they wait for, more threads
        only hold more memory. A request still being read after STALL_GRACE stops counting,
        so clients that stall mid-request cannot shut the others out."""
        now = time.monotonic()
        with self._lock:
            reading = sum(1 for since in self._reading.values() if now - since < STALL_GRACE)
        return reading + self.api.queued < MAX_QUEUED

    def request_read(self, handler) -> None:
        """The handler has its whole request and goes on to compute the answer."""
        with self._lock:
            self._reading.pop(handler, None)

    def _take_back(self) -> None:
        while True:
            try:
                handler, ready = self._back.get_nowait()
            except queue.Empty:
                return
            if ready:
                self._pace(handler)  # the next request was already in its read buffer
            else:
                self._park(handler)

    def _expire_idle(self) -> None:
        now = time.monotonic()
        while self._parked:
            handler, deadline = next(iter(self._parked.items()))
            if deadline > now:
                return
            self._selector.unregister(handler.connection)
            del self._parked[handler]
            self._close(handler)

    # -- the workers ------------------------------------------------------------------------

    def _work(self, handler) -> None:
        """One request, on a pool thread; then the connection goes back to the loop."""
        keep = ready = False
        try:
            keep = handler.serve_one()
            ready = keep and handler.has_buffered()
        except OSError:
            keep = False  # the client reset or vanished mid-request: nothing to answer
        except Exception:
            self.handle_error(handler.request, handler.client_address)
            keep = False
        self.request_read(handler)  # if it never got that far
        with self._lock:
            if keep and self._running:
                self._back.put((handler, ready))
                self._wake()
                return
        self._close(handler)

    def _close(self, handler) -> None:
        try:
            handler.close()
        finally:
            self._slots.release()

    # -- stopping ---------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Stop the loop (from another thread) and wait until it has. Requests already
        waiting for the pacer are still answered; idle connections are closed."""
        self._stopping = True
        self._wake()
        self._stopped.wait()

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except OSError:
            pass  # full (the loop has wake-ups pending anyway) or closed (it has stopped)

    def _wind_down(self) -> None:
        with self._lock:
            self._running = False
        self._take_back()
        for _, _, handler in self._due:
            self.pool.submit(self._work, handler)  # they asked first: answer them, then close
        self._due.clear()
        for handler in list(self._parked):
            self._selector.unregister(handler.connection)
            self._close(handler)
        self._parked.clear()
        for key in list(self._selector.get_map().values()):
            self._selector.unregister(key.fileobj)
        self._stopped.set()

    def server_close(self) -> None:
        super().server_close()
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()


_BUSY = json.dumps({"error": "overloaded", "message": "too many connections; try again"}).encode()


def _refuse(request) -> None:
    """Answer a connection over the limit without parking it."""
    head = (f"HTTP/1.1 503 Service Unavailable\r\nContent-Type: {JSON}\r\nContent-Length: {len(_BUSY)}\r\n"
            "Connection: close\r\nRetry-After: 1\r\n\r\n").encode()
    try:
        request.settimeout(1.0)
        request.sendall(head + _BUSY)
    except OSError:
        pass


def bind(host: str, port: int, max_connections: int) -> Server:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    server_class = type("Server6", (Server,), {"address_family": family}) if family == socket.AF_INET6 else Server
    try:
        return server_class((host, port), Handler, max_connections)
    except OSError as exc:
        raise IngestdError(f"http.listen {host}:{port}: cannot listen: {exc.strerror or exc}") from None
