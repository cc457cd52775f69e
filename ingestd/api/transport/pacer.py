"""Request pacing: the rate at which requests are let in to be answered."""

from __future__ import annotations

import threading
import time


class Pacer:
    """Spaces requests out to at most `rate` a second (with a short burst allowance).

    Under the GIL, every busy handler thread takes CPU from ingestion in proportion to
    their number, whatever else limits them; a request waiting its turn here stays parked
    without a thread and costs nothing. So 100 clients in a tight loop slow each other
    down, not the daemon.
    """

    BURST = 0.25  # seconds' worth of requests served without waiting

    def __init__(self, rate: float):
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self._next = 0.0
        self._lock = threading.Lock()

    def reserve(self) -> float:
        """The monotonic time at which the next request may be served."""
        now = time.monotonic()
        if not self.interval:
            return now
        with self._lock:
            slot = max(self._next, now - self.BURST)
            self._next = slot + self.interval
        return max(slot, now)
