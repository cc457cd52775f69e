"""At most one job per source, across processes: a one-shot `ingestd ingest` and a
running daemon must never both ingest the same folder at once.

The lock file also names the job running under it. A process that dies mid-job (SIGKILL,
a power cut) cannot clear that name, and the kernel lets its lock go, so the next process
to take the lock learns which job was left `running` and closes it: the one that died can
no longer hold the lock, and one that is alive still does.
"""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path

from ingestd.errors import Code, ConnectorError


class Held:
    """A source's lock, held: `previous` is the job a holder that died left behind."""

    def __init__(self, fd: int):
        self._fd = fd
        self.previous = os.pread(fd, 128, 0).decode("ascii", "replace").strip() or None

    def claim(self, job_id: str) -> None:
        """Name the job now running under the lock (cleared when the lock is let go)."""
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, job_id.encode("ascii") + b"\n", 0)

    def _clear(self) -> None:
        os.ftruncate(self._fd, 0)


@contextmanager
def source_lock(state_dir: Path, source: str):
    lock_dir = state_dir / "locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_dir / f"{source}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConnectorError(
                Code.UNAVAILABLE, f"source {source!r} is busy: another ingestd process is running a job for it"
            ) from None
        held = Held(fd)
        try:
            yield held
        finally:
            held._clear()  # a job that ended, however it ended, is not left behind
    finally:
        os.close(fd)  # closing releases the lock


def held_by_someone(state_dir: Path, source: str) -> bool:
    """Whether any process holds `source`'s lock now, read from the kernel's table
    (/proc/locks) rather than by trying the lock: a try, however brief, would make a
    process starting a job at that instant fail `busy`. Matched by inode number alone
    (a stacked filesystem may report another device than the kernel's table): a rare
    false "held" only makes a watcher wait, as it did before it could tell."""
    try:
        inode = os.stat(state_dir / "locks" / f"{source}.lock").st_ino
    except FileNotFoundError:
        return False
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as table:
            rows = table.read().splitlines()
    except OSError:
        return True  # cannot tell: assume a holder, as before
    for row in rows:
        fields = [f for f in row.split() if f != "->"]  # "->" marks a waiter: someone holds it too
        if len(fields) > 5 and fields[1] == "FLOCK" and fields[5].rpartition(":")[2] == str(inode):
            return True
    return False

