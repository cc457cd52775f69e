"""Sweeping what the daemon keeps only for a while.

Failed jobs' download workspaces are kept for inspection, and drop-folder originals moved
to `processed/` are kept as a convenience copy (their bytes are in the blob store): both
would grow for ever on a daemon that runs for months. The sweep runs at start and then
hourly on the scheduler's thread, never inside a job. Originals under `failed/` are never
swept: they were not ingested, and only an operator should decide they can go.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

INTERVAL = 3600.0


def sweep(state_dir: Path, workspace_retention: float, originals_retention: float) -> dict[str, int]:
    """Remove what has outlived its retention; returns how many job folders went, by area.
    A retention of 0 keeps originals for ever."""
    removed = {"workspace": _sweep_children(state_dir / "workspace", workspace_retention)}
    if originals_retention > 0:
        processed = state_dir / "processed"
        removed["processed"] = sum(_sweep_children(Path(source.path), originals_retention)
                                   for source in _subfolders(processed))
    return removed


def _sweep_children(root: Path, retention_s: float) -> int:
    """Remove the job folders directly under `root` last changed before the cutoff."""
    cutoff = time.time() - retention_s
    removed = 0
    for entry in _subfolders(root):
        try:
            if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                shutil.rmtree(entry.path, ignore_errors=True)
                removed += 1
        except FileNotFoundError:
            continue
    return removed


def _subfolders(root: Path) -> list[os.DirEntry]:
    try:
        return [e for e in os.scandir(root) if e.is_dir(follow_symlinks=False)]
    except (FileNotFoundError, NotADirectoryError):
        return []
