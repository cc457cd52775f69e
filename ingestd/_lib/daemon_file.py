"""`daemon.json`: how a command learns that a daemon runs on a state directory (its pid,
where its API listens). A daemon killed outright cannot remove the file, so a reader
trusts it only while the pid it names is alive."""

from __future__ import annotations

import json
import os
from pathlib import Path


def live_daemon(state_dir: Path) -> dict | None:
    """The running daemon's `daemon.json` (with `pid` an int), or None if none runs."""
    try:
        info = json.loads((Path(state_dir) / "daemon.json").read_bytes())
        info["pid"] = int(info["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        os.kill(info["pid"], 0)
    except PermissionError:
        pass  # alive: another user's
    except OSError:
        return None  # a stale file: the daemon died without removing it
    return info
