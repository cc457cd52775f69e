"""Helpers plugins share, so a connector never reaches into core for them: safe names
and paths for remote items, operations confined to a tree others can write (`Dir`,
`walk_files`), atomic writes and a SQLite opener for its own state files, and
`mask_secret` for a secret a connector obtains itself (a token, keys from a default
chain), so log and error messages mask it as they mask the registry's secrets.
Request pacing for throttled services is `ingestd.plugin.kit.throttle`."""

from ingestd._lib.atomic import write_bytes, write_json
from ingestd._lib.files import unlink_quietly
from ingestd._lib.paths import MAX_DEPTH, display, file_uri, safe_join, safe_name, safe_parts
from ingestd._lib.redact import remember as mask_secret
from ingestd._lib.safefs import (
    EMPTY, Dir, Folders, Identity, TooDeep, copy_into, identity, lstat_below, open_below, walk_files,
)
from ingestd._lib.sqlite import open_db

__all__ = [
    "EMPTY", "MAX_DEPTH", "Dir", "Folders", "Identity", "TooDeep", "copy_into", "display", "file_uri", "identity",
    "lstat_below", "mask_secret", "open_below", "open_db", "safe_join", "safe_name", "safe_parts", "unlink_quietly",
    "walk_files", "write_bytes", "write_json",
]
