from __future__ import annotations

from typing import Literal

from pydantic import Field

from ingestd.config import ConfigPath, Duration, Strict

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

    def ignored(self, name: str) -> bool:
        from fnmatch import fnmatchcase

        return any(fnmatchcase(name, pattern) for pattern in self.ignore)

