from __future__ import annotations

from typing import Literal

from pydantic import Field

from ingestd.plugin import DEFAULT_IGNORE, ConfigPath, WatchOptions

__all__ = ["DEFAULT_IGNORE", "LocalOptions"]


class LocalOptions(WatchOptions):
    """A drop folder: the watcher's options (poll, settle_seconds, ignore, rescan_seconds,
    batch_max) plus what this connector does with the files."""

    path: ConfigPath
    after: Literal["move", "delete", "keep"] = "move"
    max_file_size: int | None = Field(default=None, gt=0)
    remove_empty_folders: bool = True
    # a file with more than one name may be a name of a file that lives outside the folder
    hard_links: Literal["refuse", "ingest"] = "refuse"
