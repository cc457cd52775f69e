"""Sweeping what the daemon keeps only for a while.

Failed jobs' download workspaces are kept for inspection, and drop-folder originals moved
to `processed/` are kept as a convenience copy (their bytes are in the blob store): both
would grow for ever on a daemon that runs for months. The sweep runs at start and then
hourly on the scheduler's thread, never inside a job. Originals under `failed/` are never
swept: they were not ingested, and only an operator should decide they can go.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from ingestd._lib.safefs import Dir

INTERVAL = 3600.0


def sweep(state_dir: Path, workspace_retention: float, originals_retention: float) -> dict[str, int]:
    """Remove what has outlived its retention; returns how many job folders went, by area.
    A retention of 0 keeps originals for ever. Walked from the state directory held open,
    never through a symlink: one planted at `processed/<source>` leads nowhere."""
    removed = {"workspace": 0}
    if originals_retention > 0:
        removed["processed"] = 0
    try:
        state = Dir.open(state_dir)
    except OSError:
        return removed
    with state:
        removed["workspace"] = _sweep_children(state, ["workspace"], workspace_retention)
        if originals_retention > 0:
            removed["processed"] = sum(_sweep_children(state, ["processed", name], originals_retention)
                                       for name in _subfolders(state, ["processed"]))
    return removed


def _sweep_children(state: Dir, parts: list[str], retention_s: float) -> int:
    """Remove the job folders directly under `parts` last changed before the cutoff."""
    cutoff = time.time() - retention_s
    removed = 0
    try:
        folder = state.walk(parts)
    except OSError:
        return 0
    with folder:
        for name in _names_of_folders(folder):
            try:
                if folder.stat(name).st_mtime < cutoff:
                    shutil.rmtree(name, ignore_errors=True, dir_fd=folder.fd)
                    removed += 1
            except FileNotFoundError:
                continue
    return removed


def _subfolders(state: Dir, parts: list[str]) -> list[str]:
    try:
        with state.walk(parts) as folder:
            return _names_of_folders(folder)
    except OSError:
        return []


def _names_of_folders(folder: Dir) -> list[str]:
    try:
        return [name for name, is_dir in folder.entries() if is_dir]
    except OSError:
        return []
