"""Room on the state disk: a file that cannot fit is refused before a byte of it is written.

Writing until ENOSPC fills the disk that also holds the records, the manifests and the
logs, and a sparse 2 GiB file can do that again at every retry. So a copy first claims
its size against the free space `statvfs` reports, less a reserve kept for everything
else, less what copies already running have claimed. `statvfs` costs ~10 µs, as much as
storing a tiny file, so its answer is reused for a moment, less everything claimed since.
"""

from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ingestd.errors import Code, StoreError


class NoRoom(StoreError):
    """A file that would eat into the reserve; nothing of it was written."""

    def __init__(self, size: int, room: int, reserve: int):
        self.size, self.room, self.reserve = size, room, reserve
        super().__init__(
            f"needs {size:,} bytes but the state disk has {max(0, room):,} free above its reserve of "
            f"{reserve:,} bytes (daemon.min_free_bytes / min_free_percent); it is retried when space returns",
            Code.DISK_FULL,
        )


@dataclass(frozen=True)
class Reserve:
    """What must stay free: the larger of a byte count and a share of the filesystem."""

    min_free_bytes: int = 0
    min_free_percent: float = 0.0

    def of(self, total: int) -> int:
        return max(self.min_free_bytes, int(total * self.min_free_percent / 100))


STAT_SECONDS = 0.2  # how long one statvfs answer stands in, less what was claimed since


class Space:
    def __init__(self, path: Path, reserve: Reserve = Reserve()):
        self.path = path
        self.reserve = reserve
        self._lock = threading.Lock()
        self._inflight = 0  # claims of copies still running
        self._since = 0  # claims of copies finished since the last statvfs (it may not show them yet)
        self._stat: tuple[float, int, int] = (float("-inf"), 0, 0)  # (when, free, reserve)

    def room(self, fresh: bool = False) -> tuple[int, int]:
        """(bytes a new claim may take, the reserve). Call with the lock held."""
        when, free, reserve = self._stat
        if fresh or time.monotonic() - when > STAT_SECONDS:
            st = os.statvfs(self.path)
            when, free, reserve = time.monotonic(), st.f_bavail * st.f_frsize, self.reserve.of(st.f_blocks * st.f_frsize)
            self._stat, self._since = (when, free, reserve), 0
        return free - reserve - self._inflight - self._since, reserve

    def take(self, size: int) -> None:
        """Hold `size` bytes for a copy about to start; NoRoom if they are not there.
        Every `take` is followed by one `give_back` of the same size when the copy ends."""
        with self._lock:
            room, reserve = self.room()
            if size > room:
                room, reserve = self.room(fresh=True)  # space may have come back since
                if size > room:
                    raise NoRoom(size, room, reserve)
            self._inflight += size

    def give_back(self, size: int) -> None:
        with self._lock:
            self._inflight -= size
            self._since += size

    @contextmanager
    def claim(self, size: int):
        """`take` for the length of a `with` block."""
        self.take(size)
        try:
            yield
        finally:
            self.give_back(size)
