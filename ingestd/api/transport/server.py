"""The API's listening socket and its one accepting loop; answers on a few pool threads.

The loop owns every connection that is not being answered: it accepts, reads requests
into each connection's buffer (connection.py), drops those whose deadline passed, and
hands whole requests to the pool in the pacer's order. Threads exist only for answers
being computed or written, so neither 100 idle pollers nor 256 slow-drip attackers hold
one. Connection slots are shared fairly: one client address holds at most
`max_per_client` of them, and when all are taken a newcomer displaces a connection that
is only waiting (idle, or still dripping its request) from the address holding the most,
so an attack spread over many addresses evicts itself rather than everyone else.

A request the service cannot answer yet (a long-poll: `Response.hold_until`) is *held*:
its connection goes back to the loop, without a thread or a compute slot, until the
service wakes held requests (`wake_held`, e.g. when a change commits) or its time comes;
then it is answered like any other. Held requests never expire as idle, are never
evicted, and count against the connection limits like any open connection.
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
from collections import Counter

from ingestd.api.transport.connection import Connection, Pending
from ingestd.api.transport.http import JSON
from ingestd.api.transport.pool import Pool
from ingestd.api.transport.state import ServerState
from ingestd.errors import IngestdError

ACCEPTS_PER_TURN = 64  # a burst of connections is taken in a few turns, not one per turn
HELD_BACK_POLL = 0.02  # how often requests held back by `max_queued` are looked at again
BACKLOG = 128
LINGER = 2.0  # seconds a closed connection's late bytes are read and dropped (see _linger)
_LINGERING = object()  # selector data of a lingering socket


class _Held:
    """Selector data of a held request's connection: (the request, until when)."""

    __slots__ = ("conn", "pending", "until", "since")

    def __init__(self, conn: Connection, pending: Pending, until: float):
        self.conn, self.pending, self.until = conn, pending, until
        self.since = time.monotonic()


class Server:
    def __init__(self, address: tuple[str, int], family: socket.AddressFamily, state: ServerState):
        self.state = state
        self.limits = state.limits
        self.socket = socket.create_server(address, family=family, backlog=BACKLOG)
        self.socket.setblocking(False)
        self.server_address = self.socket.getsockname()
        self.pool = Pool("http")
        self._selector = selectors.DefaultSelector()
        self._fds: dict[socket.socket, tuple[int, object]] = {}  # each registered socket: (its number, its data)
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_w.setblocking(False)  # a full pipe already means the loop will wake
        self._back: queue.SimpleQueue = queue.SimpleQueue()  # (connection, keep) from the workers
        self._open: set[Connection] = set()
        self._clients: Counter = Counter()  # address → connections open
        self._parked: set[Connection] = set()  # waiting in the loop for (the rest of) a request
        self._deadlines: list = []  # heap of (deadline, n, connection); stale entries are skipped
        self._due: list = []  # heap of (time, n, connection, pending): requests waiting for the pacer
        self._lingering: dict[socket.socket, float] = {}  # closing sockets → when they are closed for good
        self._held: dict[Connection, _Held] = {}  # requests held unanswered (long-polls)
        self._held_until: list = []  # heap of (until, n, held); stale entries are skipped
        self._wake_all = False  # set by wake_held (any thread): answer every held request again
        self._next_poll = 0.0  # when poll_held is next due while requests are held
        self._order = itertools.count()
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
                        self._accept()
                    elif key.fileobj is self._wake_r:
                        self._wake_r.recv(4096)
                    elif self._fds.get(key.fileobj, (None, None))[1] is not key.data:
                        continue  # let go (or re-registered) earlier in this turn, say evicted: stale
                    elif key.data is _LINGERING:
                        self._drop_late_bytes(key.fileobj)
                    elif isinstance(key.data, _Held):
                        self._held_readable(key.data)
                    else:
                        self._readable(key.data)
                self._take_back()
                self._release_held()
                self._dispatch_due()
                self._expire()
        finally:
            self._wind_down()

    def _timeout(self, poll_interval: float) -> float:
        now, timeout = time.monotonic(), poll_interval
        if self._due:
            timeout = min(timeout, self._due[0][0] - now if self._admitting() else HELD_BACK_POLL)
        if self._deadlines:
            timeout = min(timeout, self._deadlines[0][0] - now)
        if self._lingering:
            timeout = min(timeout, next(iter(self._lingering.values())) - now)
        if self._held:
            timeout = min(timeout, self._next_poll - now)
            if self._held_until:
                timeout = min(timeout, self._held_until[0][0] - now)
        return max(0.0, timeout)

    # -- accepting --------------------------------------------------------------------------

    def _accept(self) -> None:
        for _ in range(ACCEPTS_PER_TURN):
            try:
                sock, address = self.socket.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # out of file descriptors: the backlog waits for the next turn
                return
            self._admit(sock, address[0])

    def _admit(self, sock: socket.socket, client: str) -> None:
        with self._lock:
            if self._clients[client] >= self.limits.max_per_client:
                return self._refuse(sock, "per_client")
        if len(self._open) >= self.limits.max_connections and not self._evict():
            return self._refuse(sock, "full")
        conn = Connection(sock, client, self.state)
        with self._lock:
            self._open.add(conn)
            self._clients[client] += 1
        self._park(conn)

    def _evict(self) -> bool:
        """Make room by closing a connection that is only waiting: from the address that
        holds the most connections, its longest-waiting one. False if every slot is busy
        with a request being answered."""
        if not self._parked:
            return False
        victim = min(self._parked, key=lambda c: (-self._clients[c.client], c.opened))
        self._unpark(victim)
        self._close(victim)
        self.state.refused["evicted"] += 1
        return True

    def _refuse(self, sock: socket.socket, reason: str) -> None:
        """Answer a connection over a limit at once, without a thread, and close it."""
        self.state.refused[reason] += 1
        try:
            sock.setblocking(False)
            sock.send(_BUSY)
        except OSError:
            pass
        self._linger(sock)

    def _linger(self, sock: socket.socket) -> None:
        """Close our half, then read and drop what the client still sends until it closes
        too (or LINGER passes). Closing with its request unread would make the kernel
        answer with a reset, and the client would lose the answer we just sent it."""
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            sock.close()
            return
        if len(self._lingering) >= self.limits.max_connections:
            sock.close()  # under a flood the reset is the lesser evil
            return
        sock.setblocking(False)
        self._lingering[sock] = time.monotonic() + LINGER
        self._register(sock, _LINGERING)

    def _drop_late_bytes(self, sock: socket.socket) -> None:
        try:
            while sock.recv(65536):
                pass
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            pass
        self._end_linger(sock)

    def _end_linger(self, sock: socket.socket) -> None:
        self._unregister(sock)
        del self._lingering[sock]
        sock.close()

    # -- reading ----------------------------------------------------------------------------

    def _register(self, sock: socket.socket, data) -> None:
        self._fds[sock] = (sock.fileno(), data)
        self._selector.register(sock, selectors.EVENT_READ, data)

    def _unregister(self, sock: socket.socket) -> None:
        """By the number the socket had when registered: one closed meanwhile (fileno -1)
        made `unregister` raise in the loop, and left its number in the selector's map,
        where the next connection given that number would be refused as registered."""
        self._selector.unregister(self._fds.pop(sock)[0])

    def _park(self, conn: Connection) -> None:
        self._parked.add(conn)
        self._register(conn.sock, conn)
        self._watch(conn)

    def _watch(self, conn: Connection) -> None:
        heapq.heappush(self._deadlines, (conn.deadline(), next(self._order), conn))

    def _unpark(self, conn: Connection) -> None:
        self._parked.discard(conn)
        self._unregister(conn.sock)

    def _readable(self, conn: Connection) -> None:
        waiting = conn.started is None
        pending = self._take(conn) if conn.receive() else False
        if pending is False:  # the client closed, or reading its request failed
            self._unpark(conn)
            self._close(conn)
            return
        if pending is None:
            if waiting and conn.started is not None:
                self._watch(conn)  # a request has begun: its own deadline now applies
            return
        self._unpark(conn)
        self._pace(conn, pending)

    def _take(self, conn: Connection) -> Pending | None | bool:
        """The connection's next request if it has arrived whole; False if taking it failed
        (a bug, logged: the loop must survive it)."""
        try:
            return conn.take()
        except Exception:
            self.state.log.exception("http connection failed", client=conn.client)
            return False

    def _expire(self) -> None:
        now = time.monotonic()
        while self._deadlines and self._deadlines[0][0] <= now:
            deadline, _, conn = heapq.heappop(self._deadlines)
            if conn not in self._parked or conn.deadline() != deadline:
                continue  # answered, closed, or its deadline moved since
            self._unpark(conn)
            conn.expire()
            self._close(conn)
        while self._lingering:
            sock, until = next(iter(self._lingering.items()))  # all linger alike: the first ends first
            if until > now:
                break
            self._end_linger(sock)

    # -- answering --------------------------------------------------------------------------

    def _pace(self, conn: Connection, pending: Pending) -> None:
        heapq.heappush(self._due, (self.state.pacer.reserve(), next(self._order), conn, pending))

    def _dispatch_due(self) -> None:
        now = time.monotonic()
        while self._due and self._due[0][0] <= now and self._admitting():
            _, _, conn, pending = heapq.heappop(self._due)
            self.state.enqueue()
            self.pool.submit(self._work, conn, pending)

    def _admitting(self) -> bool:
        """Not while enough requests already wait for a compute slot: when the CPU is what
        they wait for, more threads only hold more memory."""
        return self.state.queued < self.limits.max_queued

    def _work(self, conn: Connection, pending: Pending) -> None:
        """One request, on a pool thread; then the connection goes back to the loop (with
        its request, when the answer is to hold it)."""
        keep: bool | float = False
        try:
            keep = conn.serve(pending)
        except Exception:
            self.state.log.exception("http connection failed", client=conn.client)
        with self._lock:
            if self._running:
                self._back.put((conn, keep, pending))
                self._wake()
                return
        conn.close()  # the loop has stopped: nobody lingers

    def _take_back(self) -> None:
        while True:
            try:
                conn, keep, pending = self._back.get_nowait()
            except queue.Empty:
                return
            if not keep:
                self._close(conn)
                continue
            conn.sock.setblocking(False)
            if isinstance(keep, float):
                self._hold(conn, pending, keep)
                continue
            pending = self._take(conn)  # the client may have pipelined its next request
            if pending is False:
                self._close(conn)
            elif pending is None:
                self._park(conn)
            else:
                self._pace(conn, pending)

    # -- held requests (long-polls) ---------------------------------------------------------

    def wake_held(self) -> None:
        """Ask every held request again (from any thread): what it waited for may have come."""
        self._wake_all = True
        self._wake()

    @property
    def held(self) -> int:
        return len(self._held)

    def _hold(self, conn: Connection, pending: Pending, until: float) -> None:
        held = _Held(conn, pending, until)
        if not self._held:
            self._next_poll = time.monotonic() + self.limits.held_poll
        self._held[conn] = held
        heapq.heappush(self._held_until, (until, next(self._order), held))
        self._register(conn.sock, held)

    def _held_readable(self, held: _Held) -> None:
        """The client of a held request closed (or sent more): close, or keep what it sent
        (a pipelined request, answered after this one) up to a limit."""
        conn = held.conn
        if not conn.receive() or len(conn.buf) > self.limits.held_buffer:
            self._unhold(held)
            self._close(conn)

    def _unhold(self, held: _Held) -> None:
        self._unregister(held.conn.sock)
        del self._held[held.conn]

    def _release_held(self) -> None:
        """Answer the held requests that were woken or whose time has come; while any
        are held, let the service look for what it cannot be told of (poll_held)."""
        now = time.monotonic()
        if self._wake_all:
            self._wake_all = False
            for held in list(self._held.values()):
                self._resume(held)
        while self._held_until and self._held_until[0][0] <= now:
            held = heapq.heappop(self._held_until)[2]
            if self._held.get(held.conn) is held:
                self._resume(held)
        if not self._held:
            self._held_until.clear()
        elif now >= self._next_poll:
            self._next_poll = now + self.limits.held_poll
            try:
                self.state.poll_held()  # may call wake_held: seen at the next turn
            except Exception:
                self.state.log.exception("polling for held requests failed")

    def _resume(self, held: _Held) -> None:
        """Back to the queue of requests to answer: not through the pacer, which let it in
        when it arrived (a wake-up of a hundred long-polls is one event, not a flood)."""
        self._unhold(held)
        now = time.monotonic()
        held.conn.held_s += now - held.since
        heapq.heappush(self._due, (now, next(self._order), held.conn, held.pending))

    def _close(self, conn: Connection) -> None:
        """Free the connection's slot at once; its socket lingers a moment (on the loop)."""
        with self._lock:
            if conn in self._open:
                self._open.discard(conn)
                self._clients[conn.client] -= 1
                if not self._clients[conn.client]:
                    del self._clients[conn.client]
        self._linger(conn.sock)

    @property
    def connections(self) -> int:
        return len(self._open)

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
        for held in list(self._held.values()):
            self._resume(held)
        for _, _, conn, pending in self._due:
            self.state.enqueue()
            self.pool.submit(self._work, conn, pending)  # they asked first: answer them, then close
        self._due.clear()
        for conn in list(self._parked):
            self._unpark(conn)
            conn.close()
        self._parked.clear()
        for sock in list(self._lingering):
            self._end_linger(sock)
        for key in list(self._selector.get_map().values()):
            self._selector.unregister(key.fileobj)
        self._stopped.set()

    def server_close(self) -> None:
        self.socket.close()
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()


_BUSY_BODY = json.dumps({"error": "overloaded", "message": "too many connections; try again"}).encode()
_BUSY = (f"HTTP/1.1 503 Service Unavailable\r\nContent-Type: {JSON}\r\nContent-Length: {len(_BUSY_BODY)}\r\n"
         "Connection: close\r\nRetry-After: 1\r\n\r\n").encode() + _BUSY_BODY


def bind(host: str, port: int, state: ServerState) -> Server:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return Server((host, port), family, state)
    except OSError as exc:
        raise IngestdError(f"http.listen {host}:{port}: cannot listen: {exc.strerror or exc}") from None
