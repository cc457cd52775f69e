"""Room on the state disk: a file that cannot fit is refused before a byte of it is written.

Writing until ENOSPC fills the disk that also holds the records, the manifests and the
logs, and a sparse 2 GiB file can do that again at every retry. So a copy first claims
its size against the free space `statvfs` reports, less a reserve kept for everything
else, less what copies already running have claimed.
"""

from __future__ import annotations

import os
import threading
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


class Space:
    def __init__(self, path: Path, reserve: Reserve = Reserve()):
        self.path = path
        self.reserve = reserve
        self._lock = threading.Lock()
        self._claimed = 0

    def room(self) -> tuple[int, int]:
        """(bytes a new claim may take, the reserve) right now."""
        st = os.statvfs(self.path)
        reserve = self.reserve.of(st.f_blocks * st.f_frsize)
        return st.f_bavail * st.f_frsize - reserve - self._claimed, reserve

    @contextmanager
    def claim(self, size: int):
        """Hold `size` bytes for a copy in progress; NoRoom if they are not there."""
        with self._lock:
            room, reserve = self.room()
            if size > room:
                raise NoRoom(size, room, reserve)
            self._claimed += size
        try:
            yield
        finally:
            with self._lock:
                self._claimed -= size
