"""Where a SharePoint source keeps its state, and the step that moved 0.1's there.

    sources/<name>/sharepoint.sqlite       the index: each library's drive id and state file,
                                           and the site and library lookups (a cache)
    sources/<name>/libraries/<hash>.sqlite one library: delta link, items, retries, ... (`state`)

ingestd 0.1 synced one library per source and kept it all in `sharepoint.sqlite`. Step 2
(`per-library-state`) moves that file to `libraries/` unchanged but for its scope, which
no longer names the site and library (the file is the library's own), and writes the
index, carrying over the resolved ids so the first run after the upgrade looks nothing up
and resumes from the saved delta link.

The step is safe to kill at any instant and to run again: the one file move is a rename,
and the index is rebuilt from the library files' own records in one transaction. A
connector finding a directory the step has not seen yet (a source added by a reload
before the next start) runs it itself, under the job's source lock.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from pathlib import Path

from ingestd.plugin import Step, StepContext
from ingestd.plugin.kit import open_db

INDEX = "sharepoint.sqlite"
LIBRARIES = "libraries"
UNRESOLVED = "legacy-unresolved.sqlite"  # a 0.1 state that never resolved its library: kept, unused

_INDEX_SCHEMA = """
CREATE TABLE IF NOT EXISTS libraries (drive_id TEXT PRIMARY KEY, file TEXT NOT NULL, target TEXT NOT NULL,
    retired INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS lookups (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def library_file(drive_id: str) -> str:
    """A library's state file name: a digest of its drive id, which comes from the server
    and is never used as a path itself."""
    return hashlib.sha256(drive_id.encode()).hexdigest()[:32] + ".sqlite"


def lookup_key(graph_url: str, site_url: str, library: str | None = None) -> str:
    parts = [graph_url.lower(), site_url.lower()] + ([library.casefold()] if library is not None else [])
    return json.dumps(parts)


def open_index(root: Path) -> sqlite3.Connection:
    db = open_db(root / INDEX)
    db.executescript(_INDEX_SCHEMA)
    return db


def ensure(root: Path) -> None:
    """Bring a source directory to this layout (the step, run where it was not)."""
    if _legacy(root / INDEX):
        split(StepContext(root=root, log=None))


def split(ctx: StepContext) -> None:
    root = ctx.root
    legacy = root / INDEX
    if _legacy(legacy):
        _move_legacy(legacy, root)
    _rebuild_index(root)


def _legacy(path: Path) -> bool:
    """0.1's single-library file: the index never has an `items` table."""
    if not path.exists():
        return False
    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='items'").fetchone() is not None
    finally:
        db.close()


def _move_legacy(legacy: Path, root: Path) -> None:
    db = open_db(legacy)
    try:
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        drive_id = meta.get("drive_id") or _cached_target(meta).get("drive_id")
        scope = meta.get("scope")
        if scope:
            key = {k: v for k, v in json.loads(scope).items() if k not in ("site_url", "library")}
            with db:
                db.execute("BEGIN IMMEDIATE")
                db.execute("UPDATE meta SET value=? WHERE key='scope'", (json.dumps(key, sort_keys=True),))
        busy = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        if busy:  # something still reads it: moving it now could leave writes behind in its -wal
            raise RuntimeError(f"{legacy} is in use; stop every ingestd using this state and start again")
    finally:
        db.close()
    if drive_id:
        (root / LIBRARIES).mkdir(exist_ok=True)
        dest = root / LIBRARIES / library_file(drive_id)
    else:
        dest = root / UNRESOLVED
    for suffix in ("-wal", "-shm"):  # emptied by the checkpoint; SQLite recreates them
        Path(f"{legacy}{suffix}").unlink(missing_ok=True)
    os.replace(legacy, dest)
    _sync_dir(dest.parent)
    _sync_dir(root)


def _rebuild_index(root: Path) -> None:
    """Index every library file by the drive id it records, with the lookup it was
    resolved by (0.1 cached the site, library and Graph endpoint with the ids)."""
    folder = root / LIBRARIES
    rows, lookups = [], []
    for path in sorted(folder.glob("*.sqlite")) if folder.is_dir() else []:
        meta = _meta(path)
        target = _cached_target(meta)
        drive_id = meta.get("drive_id") or target.get("drive_id")
        if not drive_id or path.name != library_file(drive_id):
            continue
        rows.append((drive_id, path.name, json.dumps(target)))
        cached = json.loads(meta["target"]) if meta.get("target") else None
        if cached and isinstance(cached.get("key"), list) and len(cached["key"]) == 3:
            site_url, library, graph_url = cached["key"]
            lookups.append((lookup_key(graph_url, site_url, library), json.dumps(target)))
    db = open_index(root)
    try:
        with db:
            db.execute("BEGIN IMMEDIATE")
            db.executemany("INSERT OR IGNORE INTO libraries (drive_id, file, target) VALUES (?,?,?)", rows)
            db.executemany("INSERT OR IGNORE INTO lookups (key, value) VALUES (?,?)", lookups)
    finally:
        db.close()


def _meta(path: Path) -> dict:
    db = sqlite3.connect(path)
    try:
        if db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone() is None:
            return {}
        return dict(db.execute("SELECT key, value FROM meta").fetchall())
    finally:
        db.close()


def _cached_target(meta: dict) -> dict:
    try:
        target = json.loads(meta.get("target") or "{}").get("target") or {}
    except (ValueError, AttributeError):
        return {}
    return target if isinstance(target, dict) else {}


def _sync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


STEPS = (
    Step(2, "per-library-state", "each library keeps its own state file (libraries/), indexed in sharepoint.sqlite; "
         "the 0.1 library's delta link and ids are kept", split, read_safe=True),
)
