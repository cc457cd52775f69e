"""What a drop folder's finished jobs left in place, remembered across restarts.

With `after = "keep"` the originals stay where they are, so every scan finds them again;
a file a job could not move or delete (no write permission on its folder, a tampered
state directory) stays too, and so does a file refused for good in a keep folder.
Without a memory the watcher would queue each of them again, for ever, and each restart
and one-shot run would read and hash the whole folder to learn that nothing changed.

A file is remembered by its relative path with the inode, size and mtime it had when the
job read it, and what became of it: `taken` (ingested or unchanged), `failed` (refused
for good) or `left` (ingested or refused, but it could not be moved or deleted). The same
three values later mean it was not touched (an edit that restores both size and mtime is
not seen, as with rsync's quick check); any change makes it a new candidate. Rows are
written in `finish`, after the job is durable: a crash before that only means a re-read.
This is the only memory of taken files; the watcher asks it through `taken()`.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable
from pathlib import Path

from ingestd.plugin.kit import open_db

FILE = "kept.sqlite"
Snap = tuple[int, int, int]  # inode, size, mtime_ns
TAKEN, FAILED, LEFT = "taken", "failed", "left"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kept (
    path BLOB PRIMARY KEY,
    ino INTEGER NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
"""


class Memory:
    """One connection per connector, shared by the settle thread and job threads."""

    def __init__(self, directory: Path, settings: object = None):
        directory.mkdir(parents=True, exist_ok=True)
        self._db = open_db(directory / FILE, durable=False)
        self._lock = threading.Lock()
        with self._lock:
            self._db.executescript(_SCHEMA)
            self._add_state_column()
            self._forget_failures_if_settings_changed(settings)

    def _add_state_column(self) -> None:
        """A memory written before refusals were remembered (0.1.0) gains its `state` column
        on first use; every row it has was taken. Another process may be doing the same."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(kept)")}
            if "state" not in columns:
                self._db.execute(f"ALTER TABLE kept ADD COLUMN state TEXT NOT NULL DEFAULT '{TAKEN}'")

    def _forget_failures_if_settings_changed(self, settings: object) -> None:
        """A file refused under other settings (a size limit since raised) deserves a new
        look: refusals are remembered only for the settings that made them."""
        text = json.dumps(settings, sort_keys=True, default=str)
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            row = self._db.execute("SELECT value FROM meta WHERE key = 'settings'").fetchone()
            if row is None or row[0] != text:
                self._db.execute("DELETE FROM kept WHERE state != ?", (TAKEN,))
                self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('settings', ?)", (text,))

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def state(self, rel: str, now: Snap | None) -> str | None:
        """What became of the file at `rel`, if it is still as it was then; else None."""
        if now is None:
            return None
        with self._lock:
            row = self._db.execute("SELECT ino, size, mtime_ns, state FROM kept WHERE path = ?",
                                   (_key(rel),)).fetchone()
        return row[3] if row is not None and tuple(row[:3]) == tuple(now) else None

    def remember(self, rows: Iterable[tuple[str, Snap, str]]) -> None:
        rows = [(_key(rel), *snap, state) for rel, snap, state in rows]
        if not rows:
            return
        with self._lock, self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT OR REPLACE INTO kept (path, ino, size, mtime_ns, state) VALUES (?, ?, ?, ?, ?)", rows)

    def forget(self, rels: Iterable[str]) -> None:
        keys = [(_key(rel),) for rel in rels]
        if not keys:
            return
        with self._lock, self._db:
            if self._db.execute("SELECT 1 FROM kept LIMIT 1").fetchone() is None:
                return  # the common case of a folder whose files all leave: nothing to do
            self._db.execute("BEGIN")
            self._db.executemany("DELETE FROM kept WHERE path = ?", keys)


def _key(rel: str) -> bytes:
    """File names are bytes on Linux; keyed as such, an undecodable name is still exact."""
    return os.fsencode(rel)
