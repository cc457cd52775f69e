"""What a `keep` drop folder has already given us, remembered across restarts.

With `after = "keep"` the originals stay where they are, so every scan finds them again.
Without a memory, each restart (and each one-shot run) would read and hash the whole
folder just to learn that nothing changed. A file is remembered by its relative path with
the inode, size and mtime it had when it was staged; the same three values later mean it
was not touched, so it is not read again (a change of any of them means it is). Rows are
written in `finish`, after the job is durable: a crash before that only means a re-read.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from ingestd.plugin.kit import open_db

FILE = "kept.sqlite"
Snap = tuple[int, int, int]  # inode, size, mtime_ns

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kept (
    path BLOB PRIMARY KEY,
    ino INTEGER NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL
) WITHOUT ROWID;
"""


def snap(path: str) -> Snap | None:
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


class Kept:
    def __init__(self, directory: Path):
        self._db = open_db(directory / FILE, durable=False)
        self._db.executescript(_SCHEMA)

    def __enter__(self) -> "Kept":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()

    def unchanged(self, rel: str, now: Snap | None) -> bool:
        row = self._db.execute("SELECT ino, size, mtime_ns FROM kept WHERE path = ?", (_key(rel),)).fetchone()
        return now is not None and row == now

    def remember(self, taken: Iterable[tuple[str, Snap]]) -> None:
        rows = [(_key(rel), *s) for rel, s in taken]
        if not rows:
            return
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR REPLACE INTO kept (path, ino, size, mtime_ns) VALUES (?, ?, ?, ?)", rows)


def _key(rel: str) -> bytes:
    """File names are bytes on Linux; keyed as such, an undecodable name is still exact."""
    return os.fsencode(rel)
