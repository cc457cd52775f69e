"""One pacing gate per remote service, shared by every job in the process.

A service that answers 429 or 503 with `Retry-After` is telling the *caller* to slow
down, and for Microsoft Graph and SharePoint the caller is the app in that tenant, not
one connection. So when any job is told to wait, every job talking to the same service
waits with it, instead of each one finding out on its own (and being throttled harder).

Connectors call `gate(key)` with a key naming the budget (e.g. `graph:<tenant>`), then
`wait()` before each request and `defer(seconds)` when the service says so.
"""

from __future__ import annotations

import threading
import time


class Stopped(Exception):
    """The job was asked to stop while waiting for the gate to open."""


class Gate:
    """A point in time before which no request may go out; moved only forward."""

    def __init__(self, key: str, clock=time.monotonic):
        self.key = key
        self._clock = clock
        self._lock = threading.Lock()
        self._open_at = 0.0

    def defer(self, seconds: float) -> float:
        """Keep the gate shut for `seconds` from now (never shortens an earlier wait).

        Returns the monotonic time at which the gate opens.
        """
        with self._lock:
            self._open_at = max(self._open_at, self._clock() + max(0.0, seconds))
            return self._open_at

    def remaining(self) -> float:
        with self._lock:
            return max(0.0, self._open_at - self._clock())

    def wait(self, stop: threading.Event | None = None) -> float:
        """Block until the gate is open; return the seconds waited.

        Raises `Stopped` if `stop` is set meanwhile. Re-checks after each sleep, since
        another job may have pushed the gate further while this one slept.
        """
        waited = 0.0
        while True:
            delay = self.remaining()
            if delay <= 0:
                return waited
            if stop is None:
                time.sleep(delay)
            elif stop.wait(delay):
                raise Stopped(self.key)
            waited += delay


_gates: dict[str, Gate] = {}
_lock = threading.Lock()


def gate(key: str) -> Gate:
    """The process-wide gate for `key`, created on first use."""
    with _lock:
        found = _gates.get(key)
        if found is None:
            found = _gates[key] = Gate(key)
        return found


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header: delta-seconds or an HTTP date.

    None when the header is absent or unreadable, so the caller can fall back to its
    own backoff.
    """
    if value is None:
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)
