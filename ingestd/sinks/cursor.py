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
