"""The extraction queue's durable cursor: the highest version rowid below which every row
handed out is done. Rows finish out of order (a slow PDF, a quick text); the cursor only
moves over an unbroken run of finished rows, so a crash redoes at most what was in
flight and never skips a row."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable


class Window:
    def __init__(self, start: int):
        self.low = start  # every row ≤ low is done
        self.high = start  # the last row handed out
        self._issued: deque[int] = deque()
        self._done: set[int] = set()
        self._lock = threading.Lock()

    def issue(self, rowid: int) -> None:
        with self._lock:
            self._issued.append(rowid)
            self.high = max(self.high, rowid)

    def would_be(self, rowids: Iterable[int]) -> int:
        """The cursor once `rowids` are done (nothing changes until `finish`)."""
        with self._lock:
            done = self._done | set(rowids)
            low = self.low
            for rowid in self._issued:
                if rowid not in done:
                    break
                low = rowid
            return low

    def finish(self, rowids: Iterable[int]) -> int:
        with self._lock:
            self._done.update(rowids)
            while self._issued and self._issued[0] in self._done:
                self.low = self._issued.popleft()
                self._done.discard(self.low)
            return self.low

    @property
    def in_flight(self) -> int:
        with self._lock:
            return len(self._issued)
