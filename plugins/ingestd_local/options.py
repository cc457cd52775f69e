from __future__ import annotations

import fnmatch
import functools
import re

from typing import Literal

from pydantic import Field

from ingestd.plugin import ConfigPath, Duration, Strict

DEFAULT_IGNORE = [".*", "*.tmp", "*.part", "*.crdownload", "~$*"]


class LocalOptions(Strict):
    path: ConfigPath
    after: Literal["move", "delete", "keep"] = "move"
    ignore: list[str] = Field(default_factory=lambda: list(DEFAULT_IGNORE))
    settle_seconds: Duration = 0.5
    rescan_seconds: Duration = 300.0
    poll: bool = False
    max_file_size: int | None = Field(default=None, gt=0)
    batch_max: int = Field(default=1000, ge=1, le=100_000)
    remove_empty_folders: bool = True

    def ignored(self, name: str) -> bool:
        """Whether a file or folder name matches one of the `ignore` globs."""
        return _matcher(tuple(self.ignore))(name) is not None


@functools.lru_cache(maxsize=64)
def _matcher(patterns: tuple[str, ...]):
    """All globs compiled into one regex: the check runs once per file per scan."""
    if not patterns:
        return lambda name: None
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns), re.DOTALL).match

