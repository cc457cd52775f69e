"""One lock per state directory (`SCHEMA.lock`, flock): whoever migrates holds it
exclusively; every process that uses the state (the daemon for its lifetime, a one-shot
or read-only command while it runs) holds it shared. So two processes never migrate at
once, and nothing reads or writes a state while it is being migrated."""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from ingestd._lib import logs
from ingestd.errors import StateBusy

FILE = "SCHEMA.lock"
POLL = 0.1


class StateLock:
    def __init__(self, state_dir: Path):
        self.state_dir = state_dir
        self.fd: int | None = None
        self.log = logs.get("ingestd.state")

    def _open(self) -> int | None:
        """Read-only users (no write permission on the state) lock through a read-only
        descriptor; where there is no lock file they cannot make, no one migrates."""
        path = self.state_dir / FILE
        try:
            return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
        except (PermissionError, FileNotFoundError):
            try:
                return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                return None

    def shared(self) -> None:
        """Waits while a migration runs (it ends; the wait is logged)."""
        self.fd = self._open() if self.fd is None else self.fd
        if self.fd is None:
            return
        try:
            fcntl.flock(self.fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            self.log.warning("waiting for another ingestd process to finish migrating the state",
                             state_dir=str(self.state_dir))
            fcntl.flock(self.fd, fcntl.LOCK_SH)

    def exclusive(self, wait: float) -> None:
        """Waits up to `wait` seconds for the processes using the state to let go."""
        if self.fd is None:  # a migrator must be able to make the lock file: no fallback
            self.fd = os.open(self.state_dir / FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
        deadline = time.monotonic() + wait
        warned = False
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise StateBusy(
                        f"{self.state_dir}: cannot lock the state to migrate it: another ingestd process "
                        "(a running daemon, an `ingestd ingest`) is using it; stop it, then run `ingestd migrate`"
                    ) from None
                if not warned:
                    self.log.warning("waiting for other ingestd processes to release the state before migrating",
                                     state_dir=str(self.state_dir), wait_s=wait)
                    warned = True
                time.sleep(POLL)

    def downgrade(self) -> None:
        """Exclusive to shared, once the migration is done."""
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_SH)

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing releases the lock
            self.fd = None
