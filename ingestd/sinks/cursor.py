"""A sink's durable cursor: the last change it delivered, one small file per sink in
`<state_dir>/sinks/`, replaced atomically (fsynced) after each accepted batch.

Written only after downstream accepted the batch, so a crash between the two means that
batch comes again (a duplicate), never that a change is skipped (a gap).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from ingestd._lib.atomic import write_json
from ingestd._lib.times import now_iso
from ingestd.errors import UsageError
from ingestd.store.feed import FIRST, parse_cursor

DIRECTORY = "sinks"
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")  # a sink's name, as the config allows it


def path(state_dir: Path, name: str) -> Path:
    if not _NAME.match(name):  # config validation guarantees it; never build a path from anything else
        raise ValueError(f"not a sink name: {name!r}")
    return Path(state_dir) / DIRECTORY / f"{name}.json"


def load(state_dir: Path, name: str) -> str:
    """The sink's cursor; FIRST for a sink that never delivered (a new sink replays the
    whole feed, so its downstream starts complete). A damaged file is an error, not a
    silent restart from the beginning or the end."""
    file = path(state_dir, name)
    try:
        data = json.loads(file.read_bytes())
    except FileNotFoundError:
        return FIRST
    except (OSError, ValueError) as exc:
        raise ValueError(f"{file}: unreadable sink cursor ({exc}); fix or remove it "
                         "(`ingestd sinks reset NAME --to CURSOR` writes a new one)") from None
    cursor = data.get("cursor") if isinstance(data, dict) else None
    try:
        parse_cursor(cursor)
    except UsageError:
        raise ValueError(f"{file}: no valid `cursor` in it; `ingestd sinks reset NAME --to CURSOR` "
                         "writes a new one") from None
    return cursor


def save(state_dir: Path, name: str, cursor: str, *, durable: bool = True) -> None:
    """`durable=False` for a cursor moved past changes the sink filters out: losing that
    write in a crash costs a second look at them, never a delivery."""
    write_json(path(state_dir, name), {"sink": name, "cursor": cursor, "saved_at": now_iso()}, durable=durable)


class CursorMoved(Exception):
    """The stored cursor was reset elsewhere (another instance's API or CLI) since this
    runner read it: the batch in flight must not move it; deliver again from `cursor`."""

    def __init__(self, cursor: str):
        super().__init__(f"the sink's cursor was reset to {cursor}")
        self.cursor = cursor


class NotHolder(Exception):
    """This runner no longer holds the sink (its lease went to another instance): it must
    stop and never write the cursor again."""


class FileCursors:
    """Where an embedded daemon's sinks keep their cursors: the files above. The cluster's
    equivalent (`ingestd.cluster.sinks`) keeps them in PostgreSQL, fenced; a SinkRunner
    talks to either through these three calls."""

    def __init__(self, state_dir: Path):
        self.state_dir = state_dir

    def load(self, name: str) -> str:
        return load(self.state_dir, name)

    def save(self, name: str, cursor: str, *, durable: bool = True) -> None:
        save(self.state_dir, name, cursor, durable=durable)

    def moved(self, name: str) -> str | None:
        """A cursor set by someone else since the last load/save (never, for a file only
        this daemon writes)."""
        return None

    def note(self, name: str, status) -> None:
        """What the sink is doing, for whoever asks another instance (nobody, embedded)."""
