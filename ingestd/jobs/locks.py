"""At most one job per source, across processes: a one-shot `ingestd ingest` and a
running daemon must never both ingest the same folder at once."""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path

from ingestd.errors import Code, ConnectorError


@contextmanager
def source_lock(state_dir: Path, source: str):
    lock_dir = state_dir / "locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_dir / f"{source}.lock", os.O_RDWR | os.O_CREAT, 0o640)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConnectorError(
                Code.UNAVAILABLE, f"source {source!r} is busy: another ingestd process is running a job for it"
            ) from None
        yield
    finally:
        os.close(fd)  # closing releases the lock
