"""Keeping a lease while its job runs, and stopping the job the moment it cannot.

Two threads per lease. The heartbeat renews the lease every ttl/3 on a connection of
its own (a new one after an error). The watchdog does not trust the heartbeat to return:
a connection to a database behind a partition (or a proxy that swallows packets) can
hang for as long as TCP cares to wait. When no heartbeat has succeeded for ttl/2, or one
found the lease gone, the watchdog declares it lost: it sets the job's stop event, runs
the `on_lost` callbacks (which cut the job's own database sockets, so a write blocked on
them fails now), and the job ends `failed`/`lease_lost`. The reaper of another instance
can take the source only after the full ttl, so the holder has stopped by then; and were
it still writing, the fence check refuses what it writes.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable

from ingestd._lib import logs
from ingestd.cluster import leases
from ingestd.cluster.leases import Lease, LeaseLost


class Keeper:
    def __init__(self, connect: Callable[[], object], lease: Lease, ttl: float, stop: threading.Event,
                 *, clock: Callable[[], float] = time.monotonic,
                 beat: Callable[[object, Lease, float], None] = leases.heartbeat):
        self.connect = connect
        self.renew = beat  # a source's lease by default; a sink's (`cluster.sinks.heartbeat`) likewise
        self.lease = lease
        self.ttl = ttl
        self.stop = stop  # the job's: set when the lease is lost
        self.clock = clock
        self.lost = threading.Event()
        self.reason = ""
        self.on_lost: list[Callable[[], None]] = []
        self.beats = 0
        self._last_ok = clock()
        self._done = threading.Event()
        self._conn = None
        self._lock = threading.Lock()
        self._log = logs.get("ingestd.cluster", source=lease.source, job_id=lease.job_id)
        self._threads = [threading.Thread(target=self._beat, name=f"lease-{lease.source}", daemon=True),
                         threading.Thread(target=self._watch, name=f"lease-watch-{lease.source}", daemon=True)]

    @property
    def gone(self) -> bool:
        """The lease is lost (true from the first moment: `lost` is set once the callbacks ran)."""
        return bool(self.reason)

    def start(self) -> "Keeper":
        for t in self._threads:
            t.start()
        return self

    def close(self) -> None:
        """The job is over (or lost): stop renewing."""
        self._done.set()
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            cut(conn)
            conn.close()
        for t in self._threads:
            t.join(timeout=5)

    def _beat(self) -> None:
        while not self._done.wait(self.ttl / 3):
            try:
                conn = self._conn
                if conn is None:  # connected outside the lock: a connect may hang as long as its timeout
                    conn = self.connect()
                    with self._lock:
                        self._conn = conn
                    if self._done.is_set():  # closed (or lost) while connecting
                        _close_quietly(conn)
                        return
                self.renew(conn, self.lease, self.ttl)
                self._last_ok = self.clock()
                self.beats += 1
            except LeaseLost as exc:
                self._lose(str(exc))
                return
            except Exception as exc:  # the database unreachable: the watchdog decides
                self._log.warning("lease heartbeat failed", error=str(exc).splitlines()[0] if str(exc) else repr(exc))
                with self._lock:
                    conn, self._conn = self._conn, None
                if conn is not None:
                    _close_quietly(conn)

    def _watch(self) -> None:
        tick = min(1.0, self.ttl / 10)
        while not self._done.wait(tick):
            silent = self.clock() - self._last_ok
            if silent > self.ttl / 2:
                self._lose(f"no heartbeat reached the database for {silent:.1f}s (more than half the "
                           f"{self.ttl:g}s lease)")
                return

    def _lose(self, why: str) -> None:
        """Once (the heartbeat and the watchdog may both get here): stop the job, run the
        callbacks, and only then say `lost`, so whoever waits on it sees their effects."""
        with self._lock:
            if self.reason:
                return
            self.reason = why
        self.stop.set()
        self._log.error("lease lost: stopping the job", reason=why, fence=self.lease.fence)
        for callback in list(self.on_lost):
            try:
                callback()
            except Exception:
                pass
        self.lost.set()
        self._done.set()
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            cut(conn)


def cut(conn) -> None:
    """Shut the connection's socket down under whoever is blocked on it: the blocked call
    wakes with an error at once, whatever the network is doing."""
    try:
        fd = conn.fileno()
    except Exception:
        return
    try:
        with socket.socket(fileno=os.dup(fd)) as sock:
            sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _close_quietly(conn) -> None:
    try:
        cut(conn)
        conn.close()
    except Exception:
        pass
