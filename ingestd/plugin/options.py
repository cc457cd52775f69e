"""Option groups connectors share, so `every`, `include` or `on_delete` mean the same
thing in every source that accepts them."""

from __future__ import annotations

import fnmatch
import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Annotated, ClassVar, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from ingestd.config import Duration, Strict
from ingestd.plugin import globs


class ScheduleOptions(Strict):
    """When a remote source is polled: `every` or `cron` (UTC), plus random `jitter`."""

    every: Duration | None = None
    cron: str | None = None
    jitter: Duration = 0.0

    @field_validator("every")
    @classmethod
    def _every_floor(cls, value: float | None) -> float | None:
        if value is not None and value < 1:
            raise ValueError("must be at least 1s")
        return value

    @field_validator("cron")
    @classmethod
    def _cron_valid(cls, value: str | None) -> str | None:
        if value is None:
            return value
        from apscheduler.triggers.cron import CronTrigger

        try:
            CronTrigger.from_crontab(value, timezone="UTC")
        except ValueError as exc:
            raise ValueError(f"invalid cron expression {value!r}: {exc}; write e.g. '*/5 * * * *'") from None
        return value

    @model_validator(mode="after")
    def _one_schedule(self):
        if self.every is not None and self.cron is not None:
            raise ValueError("set either 'every' or 'cron', not both")
        return self

    def schedule_text(self) -> str:
        if self.cron:
            return f"cron {self.cron}"
        return f"every {int(self.every or DEFAULT_EVERY)}s"


DEFAULT_EVERY = 900.0


def _glob(pattern: str) -> str:
    problem = globs.problem(pattern)
    if problem:
        raise ValueError(f"{pattern!r}: {problem}")
    return pattern


Glob = Annotated[str, AfterValidator(_glob)]


class FilterOptions(Strict):
    """Which items of a source are taken: `include` and `exclude` globs on the item's path
    relative to the source, in gitignore's dialect (`ingestd.plugin.globs`).

    Case sensitivity belongs to the source, not the operator: S3 keys are case-sensitive,
    SharePoint names are not, so a connector whose names ignore case sets
    `glob_ignore_case = True` on its options class.
    """

    glob_ignore_case: ClassVar[bool] = False

    include: list[Glob] = Field(default_factory=lambda: ["**"])
    exclude: list[Glob] = Field(default_factory=list)

    def wanted(self, relpath: str) -> bool:
        """Whether the item at `relpath` is taken; a folder's path ends in `/`."""
        return self._filters.wanted(relpath)

    @cached_property
    def _filters(self) -> "_Filters":
        """Compiled on first use, once per options object: this runs for every listed item."""
        return _Filters(globs.compile_patterns(self.include, self.glob_ignore_case),
                        globs.compile_patterns(self.exclude, self.glob_ignore_case))


@dataclass(frozen=True)
class _Filters:
    included: Callable[[str], bool]
    excluded: Callable[[str], bool]

    def wanted(self, relpath: str) -> bool:
        return self.included(relpath) and not self.excluded(relpath)


class DeleteOptions(Strict):
    """What a source does when an item it delivered earlier disappears."""

    on_delete: Literal["tombstone", "ignore"] = "tombstone"
    max_delete_fraction: float = Field(default=0.5, ge=0.0, le=1.0)


DEFAULT_IGNORE = [".*", "*.tmp", "*.part", "*.crdownload", "~$*"]


class WatchOptions(Strict):
    """Everything the drop-folder watcher reads from a watched source's options: a watched
    connector's `Options` subclass this (checked when the plugin loads)."""

    poll: bool = False  # poll instead of inotify (network mounts)
    settle_seconds: Duration = 0.5  # a file must be quiet this long before it is taken
    ignore: list[str] = Field(default_factory=lambda: list(DEFAULT_IGNORE))  # globs on each name in a path
    rescan_seconds: Duration = 300.0  # full rescan interval, for what events missed
    batch_max: int = Field(default=1000, ge=1, le=100_000)  # most files one watch-triggered job takes

    def ignored(self, name: str) -> bool:
        """Whether a file or folder name matches one of the `ignore` globs."""
        return _matcher(tuple(self.ignore))(name) is not None


@functools.lru_cache(maxsize=64)
def _matcher(patterns: tuple[str, ...]):
    """All globs compiled into one regex: the check runs once per file per scan."""
    if not patterns:
        return lambda name: None
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns), re.DOTALL).match
